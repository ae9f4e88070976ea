"""The fork server: supervisors forked from one helper, any command standing in for runc."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.errors import RuntimeFailure
from runners.runtime import forkserver, shim
from runners.runtime.bundle import ContainerDir, ExitRecord
from runners.runtime.supervisors import ForkServer, SpawnedSupervisors
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[ForkServer]:
    made = ForkServer()
    try:
        yield made
    finally:
        made.close()


def _bundle(tmp_path: Path, name: str = "c") -> ContainerDir:
    bundle = ContainerDir(tmp_path / name)
    bundle.path.mkdir()
    return bundle


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _finished(bundle: ContainerDir) -> ExitRecord:
    wait_until(lambda: bundle.read_exit() is not None, timeout=30)
    record = bundle.read_exit()
    assert record is not None
    return record


def test_a_forked_supervisor_records_exit_code_and_output(
    tmp_path: Path, server: ForkServer
) -> None:
    bundle = _bundle(tmp_path)
    pid = server.launch(bundle, ["sh", "-c", "echo out; echo err >&2; exit 3"], 1 << 20)
    assert int(bundle.shim_pid.read_text().split()[0]) == pid
    assert _finished(bundle) == ExitRecord(code=3, started=False)
    assert bundle.stdout_log.read_text() == "out\n"
    assert bundle.stderr_log.read_text() == "err\n"


def test_the_supervisor_is_nobodys_child_and_outlives_the_server(
    tmp_path: Path, server: ForkServer
) -> None:
    bundle = _bundle(tmp_path)
    release = tmp_path / "release"
    script = f"while [ ! -e {release} ]; do sleep 0.02; done; exit 4"
    pid = server.launch(bundle, ["sh", "-c", script], 1 << 20)
    helper = server.pid
    assert helper is not None
    # double-forked: neither the server nor we are its parent, so neither ending matters
    assert _parent(pid) not in (os.getpid(), helper)
    assert os.getsid(pid) not in (os.getsid(0), os.getsid(helper))
    server.close()
    assert server.pid is None
    assert shim.is_supervisor(bundle.shim_pid)
    release.touch()
    assert _finished(bundle).code == 4
    wait_until(lambda: not shim.is_supervisor(bundle.shim_pid), timeout=30)


def test_a_missing_runtime_is_recorded_not_raised(tmp_path: Path, server: ForkServer) -> None:
    bundle = _bundle(tmp_path)
    server.launch(bundle, [str(tmp_path / "no-such-runtime")], 1 << 20)
    record = _finished(bundle)
    assert (record.code, record.started) == (127, False)
    assert "no-such-runtime" in record.error


def test_a_supervisor_that_cannot_start_is_an_error(tmp_path: Path, server: ForkServer) -> None:
    # no container directory: the supervisor cannot even write its pid file
    missing = ContainerDir(tmp_path / "absent")
    with pytest.raises(RuntimeFailure, match="the supervisor did not start"):
        server.launch(missing, ["true"], 1 << 20)
    # the server is still in step and serves the next request
    bundle = _bundle(tmp_path)
    server.launch(bundle, ["true"], 1 << 20)
    assert _finished(bundle).code == 0


def test_a_killed_server_is_started_again(tmp_path: Path, server: ForkServer) -> None:
    server.start()
    first = server.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: server.pid is None, timeout=10)
    bundle = _bundle(tmp_path)
    server.launch(bundle, ["sh", "-c", "exit 6"], 1 << 20)
    assert server.pid not in (None, first)
    assert _finished(bundle).code == 6


def test_malformed_requests_get_an_error_reply() -> None:
    lines = b'{"dir": "/x"}\nnot json\n{"dir": "/x", "argv": [], "max_log_bytes": 1}\n'
    done = subprocess.run(
        [sys.executable, "-m", forkserver.MODULE], input=lines, capture_output=True, timeout=30
    )
    replies = done.stdout.decode().splitlines()
    assert done.returncode == 0
    assert len(replies) == 3
    assert all('"error"' in reply for reply in replies)
    assert "needs a runtime argv" in replies[2]


def test_both_launchers_leave_the_same_files(tmp_path: Path, server: ForkServer) -> None:
    forked, spawned = _bundle(tmp_path, "forked"), _bundle(tmp_path, "spawned")
    command = ["sh", "-c", "echo same; exit 2"]
    server.launch(forked, command, 1 << 20)
    SpawnedSupervisors().launch(spawned, command, 1 << 20)
    assert _finished(forked) == _finished(spawned) == ExitRecord(code=2, started=False)
    names = {p.name for p in forked.path.iterdir()}
    assert names == {p.name for p in spawned.path.iterdir()}
    assert forked.stdout_log.read_text() == spawned.stdout_log.read_text() == "same\n"


def test_a_reused_pid_is_not_taken_for_the_supervisor(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    # our own pid with a start time that is not ours: a pid reused by another process
    start = shim.process_start_time(os.getpid())
    assert start is not None
    bundle.shim_pid.write_text(f"{os.getpid()} {start + 1}\n")
    assert not shim.is_supervisor(bundle.shim_pid)
    bundle.shim_pid.write_text(f"{os.getpid()} {start}\n")
    assert shim.is_supervisor(bundle.shim_pid)


def _spares(server: ForkServer) -> list[int]:
    """Processes forked by the server that wait for a request (same command, own session,
    stdio detached, no container's log yet)."""
    helper = server.pid
    assert helper is not None
    command = Path(f"/proc/{helper}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == helper:
            continue
        try:
            same = (entry / "cmdline").read_bytes() == command
            if same and os.getsid(int(entry.name)) != os.getsid(helper):
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    # a supervisor of a finished request has the same command line: keep the waiting one
    return [pid for pid in found if _waits_on_a_pipe(pid)]


def _waits_on_a_pipe(pid: int) -> bool:
    try:
        stdin = os.readlink(f"/proc/{pid}/fd/0")
        return stdin == "/dev/null" and not Path(f"/proc/{pid}/fd/2").resolve().name.endswith(
            ".log"
        )
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_spare_supervisor_takes_the_next_request(tmp_path: Path, server: ForkServer) -> None:
    first = _bundle(tmp_path, "first")
    server.launch(first, ["sh", "-c", "exit 0"], 1 << 20)
    wait_until(lambda: len(_spares(server)) == 1, timeout=30)
    (spare,) = _spares(server)
    second = _bundle(tmp_path, "second")
    assert server.launch(second, ["sh", "-c", "echo spare; exit 5"], 1 << 20) == spare
    assert _finished(second) == ExitRecord(code=5, started=False)
    assert second.stdout_log.read_text() == "spare\n"
    # and another one waits for the request after that
    wait_until(lambda: _spares(server) not in ([], [spare]), timeout=30)


def test_a_spare_that_died_waiting_is_replaced(tmp_path: Path, server: ForkServer) -> None:
    server.launch(_bundle(tmp_path, "first"), ["true"], 1 << 20)
    wait_until(lambda: len(_spares(server)) == 1, timeout=30)
    (spare,) = _spares(server)
    os.kill(spare, signal.SIGKILL)
    bundle = _bundle(tmp_path, "second")
    assert server.launch(bundle, ["sh", "-c", "exit 7"], 1 << 20) != spare
    assert _finished(bundle).code == 7


def test_a_spare_leaves_with_the_server(tmp_path: Path, server: ForkServer) -> None:
    server.launch(_bundle(tmp_path), ["true"], 1 << 20)
    wait_until(lambda: len(_spares(server)) == 1, timeout=30)
    (spare,) = _spares(server)
    server.close()
    wait_until(lambda: not Path(f"/proc/{spare}").exists(), timeout=30)


def test_a_renewed_runtime_binary_is_not_run_by_an_older_spare(
    tmp_path: Path, server: ForkServer
) -> None:
    # the spare was forked before the copy of the changed binary was made: it cannot
    # execute it, so the request is served by a supervisor forked for it
    runtime = tmp_path / "runtime"
    shutil.copy2(str(shutil.which("sh")), runtime)
    server.launch(_bundle(tmp_path, "first"), [str(runtime), "-c", "exit 0"], 1 << 20)
    wait_until(lambda: len(_spares(server)) == 1, timeout=30)
    (spare,) = _spares(server)
    with runtime.open("ab") as upgraded:
        upgraded.write(b"\0" * 64)
    bundle = _bundle(tmp_path, "second")
    assert server.launch(bundle, [str(runtime), "-c", "echo new; exit 3"], 1 << 20) != spare
    assert _finished(bundle).code == 3
    assert bundle.stdout_log.read_text() == "new\n"
    wait_until(lambda: not Path(f"/proc/{spare}").exists(), timeout=30)
