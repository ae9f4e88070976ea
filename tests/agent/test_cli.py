"""``berth run``, ``berth ps``, ``berth exec`` and instance logs against a real agent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.agent.conftest import RunningAgent

pytestmark = pytest.mark.privileged


def _berth(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_run_ps_exec_and_logs(shared_agent: RunningAgent, busybox_ref: str) -> None:
    host = str(shared_agent.socket)
    attached = _berth("run", "--host", host, "--name", "cli-once", "--rm", busybox_ref,
                      "sh", "-c", "echo hello from $(busybox hostname); exit 4")  # fmt: skip
    assert attached.returncode == 4, attached.stderr
    assert attached.stdout == "hello from cli-once\n"

    started = _berth("run", "--host", host, "--name", "cli-bg", "-d", "-e", "GREETING=hi", "--stop-timeout", "0.2",
                     busybox_ref, "sh", "-c", "echo $GREETING; exec sleep 600")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "cli-bg"

    listed = _berth("ps", "--host", host, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {item["id"]: item for item in json.loads(listed.stdout)}
    assert rows["cli-bg"]["state"] == "running"
    assert "cli-once" not in rows  # --rm deleted it
    table = _berth("ps", "--host", host)
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "STATE", "HEALTH"]

    inside = _berth("exec", "--host", host, "cli-bg", "sh", "-c", "echo $$ $(id -u); exit 7")
    assert inside.returncode == 7
    pid, uid = inside.stdout.split()
    assert uid == "0"
    assert pid != "1"

    from pipeline.cli.containers import show_instance_logs

    with shared_agent.client() as client:
        assert client.logs("cli-bg") == b"hi\n"
    logs = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pipeline.cli.containers import show_instance_logs as s;"
         f" s('cli-bg', host={host!r})"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert logs.stdout == "hi\n", logs.stderr
    assert callable(show_instance_logs)
    # the same command as for a build's log: an id that is not b-N is an instance
    shown = _berth("logs", "--host", host, "cli-bg")
    assert (shown.returncode, shown.stdout) == (0, "hi\n"), shown.stderr
    missing = _berth("logs", "--host", host, "no-such-instance")
    assert missing.returncode == 1
    assert "no-such-instance" in missing.stderr
    assert "not a build id" in missing.stderr

    unknown = _berth("exec", "--host", host, "no-such", "true")
    assert unknown.returncode == 1
    assert "no-such" in unknown.stderr
    with shared_agent.client() as client:
        client.delete_instance("cli-bg")
