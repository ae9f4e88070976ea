"""Five simulated hosts with the real agent, driven through the CLI as a new user would:
``berth cluster up --hosts 5``, then ``berth run`` on every host; a container on one host
reaches a container on another by address, and a published port answers from another
host. ``berth cluster down`` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.hostnet import traversable_tempdir
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port

pytestmark = [pytest.mark.privileged, pytest.mark.integration]

BERTH = [sys.executable, "-m", "pipeline.cli.main"]
LINK = "10.232.0.0/24"
POOL = "10.233.0.0/16"
GATEWAY = "10.232.0.1"
HOSTS = 5


def berth(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [*BERTH, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"berth {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture
def workdir() -> Iterator[Path]:
    with traversable_tempdir("berth-test-") as root:
        yield root


def test_containers_on_five_hosts_reach_each_other_and_published_ports(
    workdir: Path, launcher: ProcessLauncher, no_leaks: None
) -> None:
    name = "e2e" + uuid.uuid4().hex[:5]
    data = workdir / "cluster"
    port = free_port()
    registry = f"{GATEWAY}:{port}"
    agent = (
        "{python} -m runners.agent --data {data} --listen unix:{socket}"
        " --listen tcp://{address}:{port} --token-file {token_file}"
        f" --insecure-registry {registry}"
    )
    berth(
        "cluster", "up", "--hosts", str(HOSTS), "--name", name, "--data", str(data),
        "--subnet", LINK, "--container-subnet", POOL, "--agent-command", agent,
    )  # fmt: skip
    try:
        status = json.loads(
            berth("cluster", "status", "--name", name, "--data", str(data), "--json")
        )
        hosts = {h["name"]: h for h in status["hosts"]}
        assert len(hosts) == HOSTS

        proc = launcher.start(
            [*BERTH, "registry", "serve", "--listen", registry,
             "--root", str(workdir / "registry"), "--insecure"],
            name="registry",
        )  # fmt: skip
        wait_for_port(GATEWAY, port, timeout=30, proc=proc)
        layout = workdir / "image"
        write_oci_layout(layout, "1", busybox=True)
        image = f"{registry}/e2e/busybox:1"
        berth("image", "push", "--insecure", "-q", f"oci:{layout}:1", image)

        where = ["--cluster", name, "--cluster-data", str(data)]
        for n in range(1, HOSTS + 1):
            serve = f"busybox mkdir -p /www && echo hello from h{n} > /www/index.html && exec httpd -f -p 8080 -h /www"
            publish = ["-p", "18080:8080"] if n == 3 else []
            berth(
                "run", "-d", "--name", f"web-h{n}", "--host", f"h{n}", *where, *publish,
                image, "/bin/sh", "-c", serve,
            )  # fmt: skip
        addresses = {}
        for n in range(1, HOSTS + 1):
            listed = json.loads(berth("ps", "--host", f"h{n}", *where, "--json"))
            (mine,) = [i for i in listed if i["id"] == f"web-h{n}"]
            assert mine["state"] == "running"
            addresses[n] = mine["address"]
        assert len(set(addresses.values())) == HOSTS  # one address per container

        def fetch(source: int, url: str) -> str:
            return berth(
                "exec", "--timeout", "30", "--host", f"h{source}", *where, f"web-h{source}",
                "wget", "-qO-", url,
            ).strip()  # fmt: skip

        # a container on host 1 reaches the one on host 3, and host 5's reaches host 2's
        assert fetch(1, f"http://{addresses[3]}:8080/") == "hello from h3"
        assert fetch(5, f"http://{addresses[2]}:8080/") == "hello from h2"
        # host 3's published port answers on host 3's address, from a container on host 4
        host3 = hosts["h3"]["address"].split("/")[0]
        assert fetch(4, f"http://{host3}:18080/") == "hello from h3"
    finally:
        launcher.stop_all()
        berth("cluster", "down", "--name", name, "--data", str(data))
    # the containers were still running: cluster down removed their cgroups too
    left = [
        str(path)
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        for index in range(1, HOSTS + 1)
        for path in [hierarchy / "berth" / f"h{index}" / f"web-h{index}"]
        if path.exists()
    ]
    assert left == []
