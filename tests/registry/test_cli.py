from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.registry.clock import ManualClock
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.manifests import parse_manifest
from runners.oci.digest import Digest
from tests.registry.support import OCI_MANIFEST, image_manifest

pytestmark = pytest.mark.unit

DAY = 86400.0


def _image(storage: FilesystemRegistryStorage, repo: str, tag: str | None, layer: bytes) -> Digest:
    for blob in (b"{}", layer):
        state = storage.create_upload(repo)
        writer = storage.open_upload(repo, state.upload_id, 0)
        writer.write(blob)
        writer.finish()
        storage.complete_upload(repo, state.upload_id, Digest.of(blob))
    data = image_manifest(b"{}", [layer])
    storage.put_manifest(repo, data, parse_manifest(data, OCI_MANIFEST), Digest.of(data), tag)
    return Digest.of(data)


@pytest.fixture
def old_registry(tmp_path: Path) -> tuple[Path, Digest, Digest]:
    """A registry written two days ago: one tagged and one untagged image."""
    root = tmp_path / "registry"
    storage = FilesystemRegistryStorage(root, clock=ManualClock(time.time() - 2 * DAY))
    tagged = _image(storage, "app", "v1", b"tagged layer")
    untagged = _image(storage, "app", None, b"untagged layer")
    return root, tagged, untagged


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gc_dry_run_then_for_real(
    old_registry: tuple[Path, Digest, Digest], capsys: pytest.CaptureFixture[str]
) -> None:
    root, tagged, untagged = old_registry
    code, out, _ = _run(capsys, "registry", "gc", "--root", str(root), "--dry-run", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["dry_run"] is True
    assert report["plan"]["manifests"] == [{"repository": "app", "digest": str(untagged)}]
    assert {b["digest"] for b in report["plan"]["blobs"]} == {
        str(untagged),
        str(Digest.of(b"untagged layer")),
    }
    storage = FilesystemRegistryStorage(root)
    assert storage.get_manifest("app", untagged) is not None

    code, out, _ = _run(capsys, "registry", "gc", "--root", str(root))
    assert code == 0
    assert out.startswith("deleted 1 manifests, 2 blob links and 2 blobs")
    assert storage.get_manifest("app", untagged) is None
    assert storage.get_manifest("app", tagged) is not None
    assert storage.blob_size("app", Digest.of(b"tagged layer")) == 12


def test_gc_grace_protects_recent_content(
    old_registry: tuple[Path, Digest, Digest], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, untagged = old_registry
    code, out, _ = _run(capsys, "registry", "gc", "--root", str(root), "--grace", "3d", "--json")
    assert code == 0
    assert json.loads(out)["result"]["deleted_manifests"] == 0
    assert FilesystemRegistryStorage(root).get_manifest("app", untagged) is not None


def test_pin_protects_from_gc(
    old_registry: tuple[Path, Digest, Digest], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, untagged = old_registry
    code, out, _ = _run(
        capsys, "registry", "pin", "--root", str(root), "app", str(untagged), "--reason", "prod"
    )
    assert (code, out.strip()) == (0, f"pinned app@{untagged}")
    code, out, _ = _run(capsys, "registry", "pins", "--root", str(root), "--json")
    assert [(p["repository"], p["digest"], p["reason"]) for p in json.loads(out)] == [
        ("app", str(untagged), "prod")
    ]
    _run(capsys, "registry", "gc", "--root", str(root))
    assert FilesystemRegistryStorage(root).get_manifest("app", untagged) is not None
    assert _run(capsys, "registry", "unpin", "--root", str(root), "app", str(untagged))[0] == 0
    code, _, err = _run(capsys, "registry", "unpin", "--root", str(root), "app", str(untagged))
    assert code == 1
    assert "is not pinned" in err
    _run(capsys, "registry", "gc", "--root", str(root))
    assert FilesystemRegistryStorage(root).get_manifest("app", untagged) is None


def test_pin_validates_its_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "registry", "pin", "--root", str(tmp_path), "Bad", "sha256:" + "a" * 64
    )
    assert code == 2
    assert "not a valid repository name" in err
    code, _, err = _run(capsys, "registry", "pin", "--root", str(tmp_path), "app", "sha256:xyz")
    assert code == 2
    assert "invalid sha256 digest" in err


def test_serve_refuses_unsafe_or_broken_setups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "r")
    code, _, err = _run(capsys, "registry", "serve", "--root", root, "--listen", "0.0.0.0:5999")
    assert code == 2
    assert "--auth none" in err
    code, _, err = _run(capsys, "registry", "serve", "--root", root, "--listen", "nonsense")
    assert code == 2
    assert "HOST:PORT" in err
    code, _, err = _run(capsys, "registry", "serve", "--root", root, "--auth", "basic")
    assert code == 1
    assert "needs --htpasswd" in err
    code, _, err = _run(capsys, "registry", "serve", "--root", root, "--allow", "x:pull")
    assert code == 1
    assert "IDENTITY:GLOB" in err
    code, _, err = _run(capsys, "registry", "serve", "--root", root, "--upload-ttl", "soon")
    assert code == 2
    assert "must be a duration like 90s" in err


def test_serve_reports_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = _run(
            capsys,
            "registry",
            "serve",
            "--root",
            str(tmp_path / "r"),
            "--listen",
            f"127.0.0.1:{port}",
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
