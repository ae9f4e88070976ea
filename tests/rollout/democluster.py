"""A real simulated cluster with the demo app, for the engine's tests and benchmark.

:class:`DemoCluster` brings up ``cluster_up`` hosts running the real agent, a
``berth registry serve`` process on the cluster bridge (the agents live in their own
namespaces, so the registry cannot be on loopback) and busybox httpd images that serve
their version at ``/``. Releases:

- ``good(n)``: ``/`` and ``/version`` answer ``vN``;
- ``unhealthy``: its health path is missing, so its instances never become healthy;
- ``erroring``: healthy, but ``/`` answers 500 (a CGI script), for analyses to fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from pathlib import Path

import yaml

from pipeline.appspec import parse_appspec
from pipeline.rollout.analysis import Analyser
from pipeline.rollout.entry import EntryAddresses
from pipeline.rollout.hosts import HostDirectory
from pipeline.rollout.nftrouter import NftRouter
from pipeline.rollout.service import RolloutService
from pipeline.settings import Settings, parse_settings, resolve_secrets
from pipeline.store import Store
from pipeline.store.releases import Release
from runners.cluster import cluster_down, cluster_up, default_agent_argv, spawn_in_netns
from runners.clusterstate import (
    HOSTS_FILE,
    ClusterState,
    HostSpec,
    plan_cluster,
    save_state,
)
from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference
from runners.oci.session import RegistryOptions
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import free_port, wait_for_port, wait_until

APP_PORT = 8080
# A shell as PID 1 that ends on SIGTERM: httpd as PID 1 would ignore it, and every stop
# would wait for the agent's stop timeout.
COMMAND = [
    "/bin/sh",
    "-c",
    "/bin/busybox chmod 755 /www/cgi-bin/index.cgi 2>/dev/null;"
    " httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait",
]
ERROR_CGI = b'#!/bin/sh\necho "Status: 500 Internal Server Error"\necho\necho broken\n'


def appspec(health_path: str = "/version") -> dict[str, object]:
    text = yaml.safe_dump(
        {
            "run": {
                "port": APP_PORT,
                "command": COMMAND,
                "health": {"http": health_path, "interval": "100ms", "timeout": "100ms"},
            }
        }
    )
    return parse_appspec(text).model_dump(mode="json")


def settings_text(data_dir: Path, hosts: int, environments: list[dict[str, object]]) -> str:
    doc = {"data_dir": str(data_dir), "cluster": {"hosts": hosts}, "environments": environments}
    return yaml.safe_dump(doc)


@dataclass
class DemoCluster:
    """The cluster, the registry and the demo images (see the module docstring)."""

    root: Path
    state: ClusterState
    registry: str
    registry_proc: subprocess.Popen[bytes]
    digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def up(cls, hosts: int, link: str, pool: str) -> DemoCluster:
        root = Path(tempfile.mkdtemp(prefix="berth-rollout-"))
        os.chmod(root, 0o711)  # noqa: S103 -- the shifted container root must traverse it
        name = "r" + uuid.uuid4().hex[:7]
        plan = plan_cluster(name, hosts, root / "cluster", link=link, pool=pool)
        gateway = plan.gateway.ip
        # the bridge address exists only once the cluster is up; a port free on loopback
        # is free there too (nothing else listens on that fresh address)
        port = free_port()
        registry = f"{gateway}:{port}"

        def argv(host: HostSpec) -> list[str]:
            return [*default_agent_argv(host), "--insecure-registry", registry]

        state = cluster_up(plan, agent_argv=argv, ready_timeout=30)
        log = open(root / "registry.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "registry", "serve",
             "--listen", registry, "--root", str(root / "registry"),
             # no auth: the bridge address is reachable only from this cluster
             "--insecure"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        demo = cls(root, state, registry, proc)
        try:
            wait_for_port(str(gateway), port, timeout=30, proc=proc)
            demo._push_images()
        except BaseException:
            demo.down()
            raise
        return demo

    def _push_images(self) -> None:
        images: dict[str, dict[str, bytes]] = {
            "v1": {"www/index.html": b"v1\n", "www/version": b"v1\n"},
            "v2": {"www/index.html": b"v2\n", "www/version": b"v2\n"},
            "v3": {"www/index.html": b"v3\n", "www/version": b"v3\n"},
            "erroring": {"www/version": b"erroring\n", "www/cgi-bin/index.cgi": ERROR_CGI},
        }
        options = RegistryOptions(insecure_hosts=frozenset({self.registry}))
        with RegistryClient(options) as client:
            for tag, files in images.items():
                layout = self.root / "images" / tag
                self.digests[tag] = write_oci_layout(layout, tag, files=files, busybox=True)
                ref = Reference.parse(f"{self.registry}/demo:{tag}")
                client.push_image(OCILayout.open(layout), ref, tag=tag)

    def down(self) -> None:
        if self.registry_proc.poll() is None:
            self.registry_proc.send_signal(signal.SIGTERM)
            try:
                self.registry_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.registry_proc.kill()
                self.registry_proc.wait(timeout=10)
        cluster_down(self.state.plan.data_dir)
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Namespaces, mounts and processes of this cluster still present."""
        prefix = self.state.plan.netns_prefix
        run = Path("/run/netns")
        found = [p.name for p in run.iterdir() if p.name.startswith(prefix)] if run.is_dir() else []
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        found += [line.split()[1] for line in mounts if str(self.root) in line]
        return found

    @property
    def cluster_dir(self) -> Path:
        return self.state.plan.data_dir

    def image_reference(self, release: Release) -> str:
        return f"{self.registry}/demo@{release.digest}"

    def restart_agent(self, host: str) -> None:
        """Start ``host``'s agent again (it adopts the containers it left)."""
        spec = next(h for h in self.state.plan.hosts if h.name == host)
        argv = [*default_agent_argv(spec), "--insecure-registry", self.registry]
        record = spawn_in_netns(argv, spec.netns, spec.log_file)
        self.state = self.state.with_agent(replace(record, host=host))
        save_state(self.state)

    def kill_agent(self, host: str) -> None:
        record = self.state.agent(host)
        assert record is not None
        os.kill(record.pid, signal.SIGKILL)


@dataclass
class Deployment:
    """One app's store, settings and rollout service on a :class:`DemoCluster`."""

    cluster: DemoCluster
    app: str
    store: Store
    settings: Settings
    service: RolloutService
    hosts: HostDirectory
    releases: dict[str, int]
    config: Path
    store_url: str

    @classmethod
    def create(
        cls,
        cluster: DemoCluster,
        app: str,
        environments: list[dict[str, object]],
        *,
        analyser: Analyser | None = None,
        standby: float = 0.0,
        environ: Mapping[str, str] | None = None,
    ) -> Deployment:
        """``environ`` stands in for ``berth serve``'s environment when the environments
        name secrets ``{env: VAR}``; ``standby`` as :class:`RolloutService` takes it."""
        work = cluster.root / app
        work.mkdir()
        config = work / "berth.yml"
        config.write_text(settings_text(work, len(cluster.state.plan.hosts), environments))
        settings = parse_settings(config.read_text())
        secrets = resolve_secrets(settings, environ or {})
        store_url = f"sqlite:///{work / 'berth.db'}"
        store = Store.open(store_url)
        store.upsert_app(app, f"file://{work}/repo", "main")
        releases = {}
        for n, tag in enumerate(("v1", "v2", "v3", "erroring")):
            spec = appspec("/missing" if tag == "v3" else "/version")
            release, _ = store.create_release(app, f"{n + 1:040x}", cluster.digests[tag], spec)
            releases[tag] = release.id
        hosts = HostDirectory.from_hosts_file(cluster.cluster_dir / HOSTS_FILE)
        service = RolloutService(
            store,
            settings,
            hosts,
            NftRouter(),
            image_reference=cluster.image_reference,
            entries=EntryAddresses.for_cluster(cluster.cluster_dir),
            analyser=analyser,
            drain=0.1,
            secrets=secrets,
            standby=standby,
        )
        return cls(cluster, app, store, settings, service, hosts, releases, config, store_url)

    def close(self) -> None:
        self.service.stop()
        for environment in self.settings.environments:
            self.service.retire(self.app, environment.name)
        self.hosts.close()
        self.store.close()

    def entry(self, env: str) -> tuple[IPv4Address, int]:
        url = self.service.url(self.app, env)
        assert url is not None
        host, _, port = url.removeprefix("http://").rpartition(":")
        return IPv4Address(host), int(port)

    def phase(self, env: str) -> str:
        rollout = self.store.get_current_rollout(self.app, env)
        return "" if rollout is None else rollout.phase

    def wait_finished(self, env: str, timeout: float = 60) -> str:
        def finished() -> bool:
            rollout = self.store.get_current_rollout(self.app, env)
            return rollout is not None and not rollout.active

        wait_until(finished, timeout=timeout, interval=0.05)
        return self.phase(env)

    def instances(self, env: str) -> list[tuple[str, str, int, bool]]:
        """(host, id, release, healthy) of the environment's instances on live hosts."""
        found = []
        for name, snap in self.hosts.poll().items():
            for item in snap.instances or ():
                labels = item.get("labels") or {}
                if labels.get("berth.app") == self.app and labels.get("berth.env") == env:
                    healthy = item["state"] == "running" and item["health"] == "healthy"
                    found.append((name, item["id"], int(labels["berth.release"]), healthy))
        return sorted(found)


def fetch(address: IPv4Address, port: int, count: int, *, deadline: float = 60.0) -> Counter[str]:
    """``count`` GET / requests, each on a new connection; answers by body ("error" for
    a refused, reset or non-200 request). Bounded by ``count`` and ``deadline`` seconds."""
    answers: Counter[str] = Counter()
    stop = time.monotonic() + deadline
    for _ in range(count):
        if time.monotonic() > stop:
            break
        answers[_get(address, port)] += 1
    return answers


def _get(address: IPv4Address, port: int) -> str:
    try:
        with socket.create_connection((str(address), port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
    except OSError:
        return "error"
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        return "error"
    return body.decode(errors="replace").strip()


def share(answers: Counter[str], version: str) -> float:
    total = sum(answers.values())
    return 100.0 * answers[version] / total if total else 0.0
