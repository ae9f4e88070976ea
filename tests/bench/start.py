"""Benchmark: starting a busybox httpd — berth agent vs podman run vs docker run vs bare runc.

    .venv/bin/python -m tests.bench.start [--count 50] [--no-docker] [--runtime auto|runc|crun]

For each tool: time from request to process running, and to healthy (the httpd answers
on its published port), for COUNT sequential starts (tools alternating, A B A B) and
COUNT concurrent ones; medians and ratios against berth. Also the agent's RSS idle and
with COUNT containers. berth is asked as the control plane asks, with the image's
digest (so no tag is resolved at the registry per start). docker is measured with a
private ``dockerd`` (own data root, socket and bridge, no iptables) when one is
installed. The floors are bare ``runc run -d`` and, where installed, bare ``crun run -d``
of one prepared bundle; the agent uses the runtime ``--runtime`` names (its own default,
``auto``, is crun where installed). Everything runs on this machine; servers listen on
127.0.0.1 or inside namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runners import network as net
from runners.agent.client import AgentClient
from runners.agent.launch import resolve_runtime
from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference
from runners.runtime import hybrid
from runners.runtime.host import is_hybrid_cgroup_host, remove_cgroup_tree, remove_empty_cgroup
from tests.bench.common import Samples, compile_bytecode, print_table, rss_kib, run
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import free_port, wait_for_port, wait_until

HTTPD = ["httpd", "-f", "-p", "8080"]
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


def answers(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until an HTTP GET on host:port gets a status line (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 1) as conn:
            conn.sendall(b"GET /etc/passwd HTTP/1.0\r\n\r\n")
            if conn.recv(16).startswith(b"HTTP/1."):
                return
        time.sleep(0.002)
    raise TimeoutError(f"nothing answered HTTP on {host}:{port} within {timeout}s")


class Berth:
    """An agent process with a bridge network; instances started over its unix socket."""

    name = "berth"

    def __init__(self, root: Path, image: str, runtime: str) -> None:
        self.root = root
        self.image = image
        self.digest = ""
        tag = secrets.token_hex(3)
        self.host_name, self.bridge, self.table = f"bench{tag}", f"bb{tag}", f"bb_{tag}"
        self.subnet = "10.77.0.0/22"
        self.socket = root / "agent.sock"
        argv = [
            sys.executable, "-m", "runners.agent", "--data", str(root / "data"),
            "--listen", f"unix:{self.socket}", "--host-name", self.host_name,
            "--subnet", self.subnet, "--bridge", self.bridge, "--nft-table", self.table,
            "--runtime", runtime,
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.socket.exists, timeout=30)
        self.client = AgentClient(f"unix:{self.socket}")
        self.digest = str(self.client.pull(image)["digest"])
        self.ids: list[str] = []

    def start(self, index: int, port: int) -> tuple[float, float]:
        instance = f"b{index}-{secrets.token_hex(2)}"
        spec = {
            "image": self.image,
            "digest": self.digest,
            "command": HTTPD,
            "ports": [{"host": port, "container": 8080}],
            "stop_timeout": 1,
        }
        began = time.perf_counter()
        view = self.client.put_instance(instance, spec)
        running = time.perf_counter() - began
        self.ids.append(instance)  # removed by clear() even when what follows fails
        assert view["state"] == "running", view
        answers("127.0.0.1", port)  # published on loopback too, as podman and docker do
        return running, time.perf_counter() - began

    def clear(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.client.delete_instance, self.ids))
        self.ids.clear()

    def close(self) -> None:
        self.clear()
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        with contextlib.suppress(Exception):
            net.teardown_host_network(net.load_host_network(self.root / "data" / "host.json"))
        # the last containers' cgroups empty a moment after their processes are gone
        deadline = time.monotonic() + 10
        while remove_cgroup_tree(f"berth/{self.host_name}") and time.monotonic() < deadline:
            time.sleep(0.05)
        remove_empty_cgroup("berth")


class Podman:
    """``podman run -d`` on its bridge network with a published port, own root and config."""

    name = "podman"

    def __init__(self, root: Path, layout: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.base = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run")]
        run([*self.base, "pull", "-q", f"oci:{layout}:v1"], env=self.env)
        listing = run([*self.base, "images", "--format", "{{.ID}}"], env=self.env)
        self.image = listing.stdout.decode().split()[0]
        self.names: list[str] = []

    def start(self, index: int, port: int) -> tuple[float, float]:
        name = f"p{index}-{secrets.token_hex(2)}"
        argv = [*self.base, "run", "-d", "--name", name, "--network", "bridge",
                "-p", f"127.0.0.1:{port}:8080", self.image, *HTTPD]  # fmt: skip
        began = time.perf_counter()
        run(argv, env=self.env)
        running = time.perf_counter() - began
        self.names.append(name)
        answers("127.0.0.1", port)
        return running, time.perf_counter() - began

    def clear(self) -> None:
        if self.names:
            run([*self.base, "rm", "-f", "-t", "0", *self.names], env=self.env)
        self.names.clear()

    def close(self) -> None:
        self.clear()
        subprocess.run(
            [*self.base, "system", "reset", "-f"], env=self.env, capture_output=True, check=False
        )


class Docker:
    """``docker run -d`` against a private dockerd, on its bridge with a published port.

    The daemon gets its own data root, exec root, socket and bridge address (inside
    10.x, clear of berth's); its ``docker0`` bridge is deleted when it is done.
    """

    name = "docker"
    BIP = "10.231.0.1/24"

    def __init__(self, root: Path, layout: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        sock = root / "docker.sock"
        self.base = ["/usr/bin/docker", "-H", f"unix://{sock}"]
        self.log = open(root / "dockerd.log", "wb")  # noqa: SIM115 -- closed in close()
        argv = ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                "-H", f"unix://{sock}", "--pidfile", str(root / "dockerd.pid"),
                "--iptables=false", "--ip-forward=false", "--bip", self.BIP,
                "--default-ulimit", "nofile=20000:20000"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.names: list[str] = []

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}; see dockerd.log")
            probe = subprocess.run([*self.base, "version"], capture_output=True, check=False)
            return probe.returncode == 0

        wait_until(ready, timeout=60)
        archive = root / "busybox.tar"
        run(["skopeo", "copy", f"oci:{layout}:v1",
             f"docker-archive:{archive}:bench/busybox:v1"])  # fmt: skip
        run([*self.base, "load", "-i", str(archive)])
        self.image = "bench/busybox:v1"

    def start(self, index: int, port: int) -> tuple[float, float]:
        name = f"d{index}-{secrets.token_hex(2)}"
        argv = [*self.base, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                self.image, *HTTPD]  # fmt: skip
        began = time.perf_counter()
        run(argv)
        running = time.perf_counter() - began
        self.names.append(name)
        answers("127.0.0.1", port)
        return running, time.perf_counter() - began

    def clear(self) -> None:
        if self.names:
            run([*self.base, "rm", "-f", *self.names])
        self.names.clear()

    def close(self) -> None:
        try:
            self.clear()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.log.close()
            with contextlib.suppress(Exception):
                net.delete_link("docker0")
            subprocess.run(["umount", "-R", "-l", str(self.root / "exec")],
                           capture_output=True, check=False)  # fmt: skip
            subprocess.run(["umount", "-R", "-l", str(self.root / "data")],
                           capture_output=True, check=False)  # fmt: skip


class BareRunc:
    """``runc run -d`` of one prepared bundle (own netns, no network): the floor."""

    name = "runc"
    binary = "runc"
    hide_unified_cgroup = False

    def __init__(self, root: Path, layout: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        bundle = root / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        run(["umoci", "unpack", "--image", f"{layout}:v1", str(root / "unpacked")])
        shutil.rmtree(bundle)
        shutil.copytree(root / "unpacked", bundle, symlinks=True)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"] = HTTPD
        config["process"]["terminal"] = False
        config["process"]["rlimits"] = []
        (bundle / "config.json").write_text(json.dumps(config))
        self.bundle = bundle
        self.ids: list[str] = []

    def start(self, index: int, port: int) -> tuple[float, float]:
        cid = f"r{index}-{secrets.token_hex(2)}"
        argv = [self.binary, "--root", str(self.root / "state"), "run", "-d", "--bundle",
                str(self.bundle), cid]  # fmt: skip
        hide = hybrid.hide_unified_cgroup if self.hide_unified_cgroup else None
        began = time.perf_counter()
        # the detached container inherits stdio: pipes would never reach EOF
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False,
                              preexec_fn=hide)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}")
        running = time.perf_counter() - began
        self.ids.append(cid)
        return running, float("nan")

    def clear(self) -> None:
        for cid in self.ids:
            subprocess.run([self.binary, "--root", str(self.root / "state"), "delete", "-f", cid],
                           capture_output=True, check=False)  # fmt: skip
        self.ids.clear()

    def close(self) -> None:
        self.clear()


class BareCrun(BareRunc):
    """``crun run -d`` of the same bundle, without the host's cgroup2 mount where hybrid."""

    name = "crun"
    binary = "crun"
    hide_unified_cgroup = is_hybrid_cgroup_host()


Tool = Berth | Podman | Docker | BareRunc


def sequential(tools: list[Tool], count: int, ports: Iterator[int]) -> tuple[Samples, Samples]:
    running, healthy = Samples(), Samples()
    for index in range(count):
        for tool in tools if index % 2 == 0 else list(reversed(tools)):
            up, ok = tool.start(index, next(ports))
            running.add(tool.name, up)
            healthy.add(tool.name, ok)
    for tool in tools:
        tool.clear()
    return running, healthy


def concurrent(tools: list[Tool], count: int, ports: Iterator[int]) -> tuple[Samples, Samples]:
    running, healthy = Samples(), Samples()
    for tool in tools:
        jobs = [(i, next(ports)) for i in range(count)]
        with ThreadPoolExecutor(max_workers=count) as pool:
            for up, ok in pool.map(lambda job, t=tool: t.start(*job), jobs):
                running.add(tool.name, up)
                healthy.add(tool.name, ok)
        if isinstance(tool, Berth):
            print(f"agent RSS with {count} containers: {rss_kib(tool.proc.pid)} KiB")
        tool.clear()
    return running, healthy


def report(title: str, samples: Samples, names: list[str]) -> None:
    berth = samples.median("berth")
    rows = []
    for name in names:
        median = samples.median(name)
        ratio = "-" if median != median else f"{berth / median:.2f}"
        rows.append((name, f"{median * 1000:.1f}", ratio))
    print_table(title, ("tool", "median ms", "berth / tool"), rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--no-docker", action="store_true", help="Do not measure docker.")
    parser.add_argument(
        "--runtime", choices=("auto", "runc", "crun"), default="auto", help="The agent's runtime."
    )
    args = parser.parse_args()
    compile_bytecode()
    root = Path(tempfile.mkdtemp(prefix="berth-bench-start-"))
    os.chmod(root, 0o711)  # noqa: S103 -- the shifted container root traverses it
    registry_port = free_port()
    registry = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "registry", "serve",
         "--listen", f"127.0.0.1:{registry_port}", "--root", str(root / "registry")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tools: list[Tool] = []
    try:
        wait_for_port("127.0.0.1", registry_port, timeout=30)
        layout = root / "layout"
        write_oci_layout(layout, "v1", busybox=True)
        ref = Reference.parse(f"127.0.0.1:{registry_port}/bench/busybox:v1")
        with RegistryClient() as client:
            client.push_image(OCILayout.open(layout), ref, tag="v1")
        (root / "berth").mkdir(mode=0o711)
        berth = Berth(root / "berth", str(ref), args.runtime)
        print(f"berth agent runtime: {resolve_runtime(args.runtime)}")
        tools.append(berth)
        print(f"agent RSS idle: {rss_kib(berth.proc.pid)} KiB")
        tools.append(Podman(root / "podman", layout))
        if args.no_docker:
            print("docker: not measured (--no-docker)")
        elif shutil.which("dockerd") is None or not Path("/usr/bin/docker").exists():
            print("docker: no dockerd installed here (apt-get install docker.io); not measured")
        elif net.link_exists("docker0"):
            print("docker: a docker0 bridge exists already (another dockerd?); not measured")
        else:
            tools.append(Docker(root / "docker", layout))
        tools.append(BareRunc(root / "runc", layout))
        if shutil.which("crun"):
            tools.append(BareCrun(root / "crun", layout))
        ports = iter(range(21000, 65000))
        names = [tool.name for tool in tools]
        running, healthy = sequential(tools, args.count, ports)
        report(f"{args.count} sequential starts: request -> running", running, names)
        answering = [name for name in names if name not in ("runc", "crun")]
        report(f"{args.count} sequential starts: request -> answering", healthy, answering)
        running, healthy = concurrent(tools, args.count, ports)
        report(f"{args.count} concurrent starts: request -> running", running, names)
        report(f"{args.count} concurrent starts: request -> answering", healthy, answering)
    finally:
        for tool in reversed(tools):
            with contextlib.suppress(Exception):
                tool.close()
        registry.terminate()
        registry.wait(timeout=10)
        for leftover in sorted(root.rglob("rootfs"), reverse=True):
            subprocess.run(["umount", "-l", str(leftover)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
