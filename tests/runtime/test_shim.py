"""The supervisor on its own: any command stands in for the runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runners.runtime.bundle import ContainerDir, ExitRecord
from runners.runtime.shim import MODULE, CappedLog
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.integration


def _supervise(directory: Path, *command: str, max_log_bytes: int = 1 << 20) -> ExitRecord:
    bundle = ContainerDir(directory)
    directory.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", MODULE, "--dir", str(directory)]
    argv += ["--max-log-bytes", str(max_log_bytes), "--", *command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    supervisor = int(result.stdout)
    assert supervisor == int(bundle.shim_pid.read_text().split()[0])
    wait_until(lambda: bundle.read_exit() is not None, timeout=30)
    record = bundle.read_exit()
    assert record is not None
    return record


def test_exit_code_and_both_streams_are_recorded(tmp_path: Path) -> None:
    record = _supervise(tmp_path / "c", "sh", "-c", "echo out; echo err >&2; exit 5")
    # no pid file was written: the "runtime" never reported a running container
    assert record == ExitRecord(code=5, started=False)
    assert (tmp_path / "c/stdout.log").read_text() == "out\n"
    assert (tmp_path / "c/stderr.log").read_text() == "err\n"


def test_a_missing_runtime_is_recorded_not_raised(tmp_path: Path) -> None:
    record = _supervise(tmp_path / "c", str(tmp_path / "no-such-runtime"))
    assert record.code == 127
    assert not record.started
    assert "no-such-runtime" in record.error


def test_logs_are_rotated_at_the_cap(tmp_path: Path) -> None:
    script = "for i in $(seq 1 40); do printf '%099d\\n' $i; done"
    _supervise(tmp_path / "c", "sh", "-c", script, max_log_bytes=1000)
    current = (tmp_path / "c/stdout.log").read_bytes()
    previous = (tmp_path / "c/stdout.log.1").read_bytes()
    everything = b"".join(b"%099d\n" % i for i in range(1, 41))
    assert 0 < len(current) <= 1000
    assert 0 < len(previous) <= 1000
    # the two files hold the end of the output, in order, with nothing lost between them
    assert everything.endswith(previous + current)


def test_a_write_larger_than_the_cap_keeps_its_end(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "log", max_bytes=4)
    log.write(b"0123456789")
    log.close()
    assert (tmp_path / "log").read_bytes() == b"89"
    assert (tmp_path / "log.1").read_bytes() == b"4567"


def test_capped_log_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"x" * 8)
    log = CappedLog(path, max_bytes=10)
    log.write(b"abc")
    log.close()
    assert path.read_bytes() == b"abc"
    assert (tmp_path / "log.1").read_bytes() == b"x" * 8
