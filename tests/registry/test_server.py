"""The registry as a real process: disconnects, kill -9, memory, shutdown, raw paths."""

from __future__ import annotations

import hashlib
import http.client
import random
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.procs import ProcessLauncher, free_port, wait_until
from tests.registry.conftest import RegistryProcess, start_registry
from tests.registry.support import error_codes, push_blob, sha

pytestmark = pytest.mark.integration

MiB = 1 << 20


def _blob_files(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def _upload_bytes_on_disk(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "uploads").rglob("data"))


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def _send_half(server: RegistryProcess, path: str, declared: int, sent: bytes) -> socket.socket:
    host, port = server.host_port.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = f"{path} HTTP/1.1\r\nHost: {server.host_port}\r\nContent-Length: {declared}\r\n"
    sock.sendall((head + "Content-Type: application/octet-stream\r\n\r\n").encode() + sent)
    return sock


@pytest.fixture
def server(launcher: ProcessLauncher, tmp_path: Path, port: int) -> RegistryProcess:
    return start_registry(launcher, tmp_path / "root", port)


def test_client_disconnect_mid_upload_leaves_no_blob(server: RegistryProcess) -> None:
    data = random.Random(1).randbytes(4 * MiB)
    digest = sha(data)
    sock = _send_half(
        server, f"POST /v2/app/blobs/uploads/?digest={digest}", len(data), data[: 2 * MiB]
    )
    wait_until(lambda: _upload_bytes_on_disk(server.root) > 0, timeout=10)
    sock.close()
    # the transient session of the monolithic upload is removed with its bytes
    wait_until(lambda: not any((server.root / "uploads").iterdir()), timeout=10)
    assert _blob_files(server.root) == []
    with server.client() as client:
        assert client.head(f"/v2/app/blobs/{digest}").status_code == 404
        # a chunked session keeps what earlier requests stored, not the cut-off chunk
        location = client.post("/v2/app/blobs/uploads/").headers["Location"]
        assert client.patch(location, content=data[:MiB]).status_code == 202
        sock = _send_half(server, f"PATCH {location}", 3 * MiB, data[MiB : 2 * MiB])
        wait_until(lambda: _upload_bytes_on_disk(server.root) > MiB, timeout=10)
        sock.close()
        wait_until(lambda: client.get(location).headers.get("Range") == f"0-{MiB - 1}", timeout=10)
        assert client.patch(location, content=data[MiB:]).status_code == 202
        assert client.put(location, params={"digest": digest}).status_code == 201
        assert client.get(f"/v2/app/blobs/{digest}").content == data


def test_kill_9_mid_upload_then_restart(
    launcher: ProcessLauncher, tmp_path: Path, port: int
) -> None:
    root = tmp_path / "root"
    first = start_registry(launcher, root, port, "--upload-ttl", "1s")
    data = random.Random(2).randbytes(3 * MiB)
    digest = sha(data)
    sock = _send_half(
        first, f"POST /v2/app/blobs/uploads/?digest={digest}", len(data), data[: 2 * MiB]
    )
    try:
        wait_until(lambda: _upload_bytes_on_disk(root) > 0, timeout=10)
        launcher.kill(launcher.procs[-1], signal.SIGKILL)
    finally:
        sock.close()
    assert _blob_files(root) == []
    assert _upload_bytes_on_disk(root) > 0  # the partial bytes stayed in their session

    time.sleep(1.2)  # let the session's 1 s TTL pass; the restarted server sweeps it
    second = start_registry(launcher, root, free_port(), "--upload-ttl", "1s")
    with second.client() as client:
        assert client.head(f"/v2/app/blobs/{digest}").status_code == 404
        missing = client.get(f"/v2/app/blobs/{digest}")
        assert missing.status_code == 404
        assert error_codes(missing) == ["BLOB_UNKNOWN"]
        wait_until(lambda: not any((root / "uploads").iterdir()), timeout=10)
        assert push_blob(client, "app", data) == digest
        assert client.get(f"/v2/app/blobs/{digest}").content == data
    assert len(_blob_files(root)) == 1


def _pattern_chunks(count: int) -> Iterator[bytes]:
    block = random.Random(3).randbytes(MiB)
    for i in range(count):
        yield i.to_bytes(8, "big") + block[8:]


def test_memory_stays_flat_while_streaming_a_big_blob(server: RegistryProcess) -> None:
    count = 256  # MiB
    hasher = hashlib.sha256()
    for chunk in _pattern_chunks(count):
        hasher.update(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    with server.client() as client:
        push_blob(client, "warm", b"warm up the code paths")
        client.get(f"/v2/warm/blobs/{sha(b'warm up the code paths')}")
        baseline = _rss_kib(server.pid, "VmRSS")
        response = client.post(
            "/v2/big/blobs/uploads/", params={"digest": digest}, content=_pattern_chunks(count)
        )
        assert response.status_code == 201, response.text
        after_upload = _rss_kib(server.pid, "VmHWM")
        download = hashlib.sha256()
        with client.stream("GET", f"/v2/big/blobs/{digest}") as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_bytes(MiB):
                download.update(chunk)
        assert f"sha256:{download.hexdigest()}" == digest
        after_download = _rss_kib(server.pid, "VmHWM")
    growth_mib = (max(after_upload, after_download) - baseline) / 1024
    assert growth_mib < 64, f"server peak RSS grew by {growth_mib:.0f} MiB for a {count} MiB blob"


def test_sigterm_lets_a_running_upload_finish_then_exits_0(
    launcher: ProcessLauncher, server: RegistryProcess
) -> None:
    proc = launcher.procs[-1]
    data = random.Random(4).randbytes(2 * MiB)
    digest = sha(data)
    sock = _send_half(server, f"POST /v2/app/blobs/uploads/?digest={digest}", len(data), data[:MiB])
    try:
        wait_until(lambda: _upload_bytes_on_disk(server.root) > 0, timeout=10)
        proc.send_signal(signal.SIGTERM)
        # the listener closes at once; the request in flight is allowed to finish
        wait_until(lambda: not _accepts(server), timeout=10)
        assert proc.poll() is None
        sock.sendall(data[MiB:])
        reply = sock.recv(4096)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 201 ")
    assert proc.wait(timeout=20) == 0
    assert [p.name for p in _blob_files(server.root)] == [digest.split(":")[1]]


def _accepts(server: RegistryProcess) -> bool:
    host, port = server.host_port.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/v2/../../etc/passwd/blobs/uploads/", (400, 404)),
        ("/v2/app/../../../etc/blobs/uploads/", (400,)),
        ("/v2/app/blobs/sha256:../../../../etc/passwd", (404,)),
        ("/v2/app/manifests/..%2F..%2Fetc%2Fpasswd", (404,)),
        ("/v2/UPPER/tags/list", (400,)),
    ],
)
def test_raw_traversal_paths_are_refused(
    server: RegistryProcess, path: str, statuses: tuple[int, ...]
) -> None:
    host, port = server.host_port.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST" if path.endswith("uploads/") else "GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status in statuses
    assert b"root:" not in body
    assert response.getheader("Docker-Distribution-API-Version") == "registry/2.0"
    assert not any((server.root / "repositories").iterdir())
