"""Real builds: RUN in runc over overlayfs, COPY, cache hits, failures; checked with umoci."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from runners.runtime.unpack import unpack_layer
from tests.build.conftest import Berth, write_context

pytestmark = pytest.mark.privileged

DOCKERFILE = """\
FROM busybox
RUN echo hi > /a && rm /etc/group && mkdir -p /srv && echo data > /srv/data
COPY --chown=1000:1001 --chmod=0640 f /b
COPY dir/ /app/
RUN ["/bin/sh", "-c", "echo exec-form > /c"]
WORKDIR /app
USER nobody
CMD ["cat", "/a"]
"""


def _unpack(layout: Path, tag: str, bundle: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def test_build_unpacks_with_umoci_and_matches_the_dockerfile(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        DOCKERFILE,
        {"f": "hello\n", "dir/x.txt": "x\n", "dir/sub/y.txt": "y\n"},
    )
    os.symlink("/etc/shadow", context / "dir" / "outside")
    result = berth.build(context, "-t", "example.test/app:1", "--output", f"oci:{tmp_path / 'out'}")
    assert [s["state"] for s in result["steps"] if s["state"] != "config"] == ["built"] * 4
    rootfs = _unpack(tmp_path / "out", "1", tmp_path / "bundle")
    assert (rootfs / "a").read_text() == "hi\n"
    assert (rootfs / "c").read_text() == "exec-form\n"
    assert not (rootfs / "etc" / "group").exists()  # deleted by RUN: a whiteout
    assert (rootfs / "etc" / "passwd").exists()
    info = os.stat(rootfs / "b")
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1000, 1001, 0o640)
    assert (rootfs / "app" / "sub" / "y.txt").read_text() == "y\n"
    assert os.readlink(rootfs / "app" / "outside") == "/etc/shadow"  # copied as a link
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["process"]["cwd"] == "/app"
    assert config["process"]["user"]["uid"] == 65534
    layout = tmp_path / "out"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(
        (layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text()
    )
    image_config = json.loads(
        (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text()
    )
    assert len(image_config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 5
    empty = [h["created_by"] for h in image_config["history"] if h.get("empty_layer")]
    assert empty == ["WORKDIR /app", "USER nobody", 'CMD ["cat", "/a"]']
    assert manifest["annotations"]["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"


def test_one_file_change_rebuilds_only_from_its_step(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\nRUN echo one > /1\nCOPY f /f\nRUN cat /f > /copy\nCOPY g /g\n",
        {"f": "f1\n", "g": "g\n"},
    )
    first = berth.build(context)
    # the RUN steps' cgroups went with their containers, in every controller
    assert not list(Path("/sys/fs/cgroup").glob("*/berth-build*"))
    again = berth.build(context)
    assert again["digest"] == first["digest"]
    assert [s["state"] for s in again["steps"]] == ["cached"] * 4
    (context / "f").write_text("f2\n")
    changed = berth.build(context)
    assert [s["state"] for s in changed["steps"]] == ["cached", "built", "built", "built"]
    assert changed["layers"][1] == first["layers"][1]
    assert changed["layers"][2] != first["layers"][2]
    # the mtime alone does not count
    os.utime(context / "g", (2_000_000_000, 2_000_000_000))
    assert [s["state"] for s in berth.build(context)["steps"]] == ["cached"] * 4


def test_a_rebuilt_copy_that_writes_the_same_tar_reuses_its_blob(
    berth: Berth, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox\nCOPY f /f\nCOPY big /data/big\n",
        {"f": "f1\n", "big": os.urandom(256 * 1024)},
    )
    first = berth.build(context)
    blobs = berth.cache_dir / "images" / "blobs" / "sha256"
    before = set(os.listdir(blobs))
    big_blob = blobs / first["layers"][2]["digest"].split(":")[1]
    big_inode = big_blob.stat().st_ino
    (context / "f").write_text("f2\n")
    changed = berth.build(context)
    # the step below changed, so COPY big is rebuilt, yet it writes the very same layer
    assert [s["state"] for s in changed["steps"]] == ["built", "built"]
    assert changed["layers"][1] != first["layers"][1]
    assert changed["layers"][2] == first["layers"][2]
    new_blobs = set(os.listdir(blobs)) - before
    assert changed["layers"][1]["digest"].split(":")[1] in new_blobs
    assert changed["layers"][2]["digest"].split(":")[1] not in new_blobs
    assert big_blob.stat().st_ino == big_inode  # not written again


def _tree(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        body = path.read_bytes().hex() if stat.S_ISREG(info.st_mode) else ""
        found[str(path.relative_to(root))] = (
            info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns, body
        )  # fmt: skip
    return found


def test_a_rebuilt_copy_links_its_unchanged_files_from_the_last_version(
    berth: Berth, tmp_path: Path
) -> None:
    files = {f"src/file{i}.txt": f"file {i}\n" for i in range(40)}
    context = write_context(
        tmp_path / "ctx", "FROM busybox\nCOPY src/ /app/\nRUN ls /app > /listing\n", files
    )
    first = berth.build(context)
    (context / "src" / "file7.txt").write_text("changed\n")
    (context / "src" / "file9.txt").chmod(0o600)  # same bytes, another mode
    second = berth.build(context)
    assert [s["state"] for s in second["steps"]] == ["built", "built"]
    unpacked = berth.cache_dir / "unpacked" / "layers" / "sha256"
    old_dir = unpacked / first["layers"][1]["digest"].split(":")[1] / "app"
    new_dir = unpacked / second["layers"][1]["digest"].split(":")[1] / "app"
    for name in ("file0.txt", "file39.txt"):
        assert (new_dir / name).stat().st_ino == (old_dir / name).stat().st_ino, name
    for name in ("file7.txt", "file9.txt"):
        assert (new_dir / name).stat().st_ino != (old_dir / name).stat().st_ino, name
    assert (new_dir / "file7.txt").read_text() == "changed\n"
    assert stat.S_IMODE((new_dir / "file9.txt").stat().st_mode) == 0o600
    # what the next RUN stands on is exactly the layer as pushed
    blob = berth.cache_dir / "images" / "blobs" / "sha256"
    with open(blob / second["layers"][1]["digest"].split(":")[1], "rb") as stream:
        from_blob = unpack_layer(stream, tmp_path / "from-blob").path
    assert _tree(new_dir.parent) == _tree(from_blob)
    # a donor whose files were tampered with (another mode) lends nothing
    os.chmod(new_dir / "file0.txt", 0o640)
    (context / "src" / "file8.txt").write_text("changed too\n")
    third = berth.build(context)
    newest = unpacked / third["layers"][1]["digest"].split(":")[1] / "app"
    assert (newest / "file0.txt").stat().st_ino != (new_dir / "file0.txt").stat().st_ino
    assert stat.S_IMODE((newest / "file0.txt").stat().st_mode) == 0o644
    assert (newest / "file1.txt").stat().st_ino == (new_dir / "file1.txt").stat().st_ino


def test_a_copy_whose_parent_directory_changed_writes_a_new_layer(
    berth: Berth, tmp_path: Path
) -> None:
    # COPY repeats the metadata of existing parent directories: a different mode below
    # must give a different layer even though the copied bytes are the same
    dockerfile = "FROM busybox\nRUN mkdir -p /dst && chmod {mode} /dst\nCOPY f /dst/f\n"
    context = write_context(tmp_path / "ctx", dockerfile.format(mode="700"), {"f": "same\n"})
    first = berth.build(context)
    (context / "Dockerfile").write_text(dockerfile.format(mode="755"))
    second = berth.build(context)
    assert [s["state"] for s in second["steps"]] == ["built", "built"]
    assert second["layers"][2] != first["layers"][2]


def test_failing_run_names_line_command_and_output_and_caches_nothing(
    berth: Berth, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "ctx", "FROM busybox\nRUN echo ok > /ok\nRUN echo doom && exit 3\n", {}
    )
    err = berth.fail(context)
    assert "Dockerfile:3: RUN echo doom && exit 3: exited with 3" in err
    assert "doom" in err
    steps = list((berth.cache_dir / "steps").glob("*.json"))
    assert len(steps) == 1  # only the step that succeeded


def test_hanging_run_times_out(berth: Berth, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", "FROM busybox\nRUN sleep 60\n", {})
    err = berth.fail(context, "--run-timeout", "1")
    assert "Dockerfile:2: RUN sleep 60: timed out" in err
    assert not list((berth.cache_dir / "steps").glob("*.json"))


def test_run_has_no_network_by_default(berth: Berth, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", "FROM busybox\nRUN ls /sys/class/net > /ifaces\n", {})
    berth.build(context, "--output", f"oci:{tmp_path / 'out'}:t")
    rootfs = _unpack(tmp_path / "out", "t", tmp_path / "bundle")
    assert (rootfs / "ifaces").read_text().split() == ["lo"]


def test_run_filling_its_disk_fails_and_caches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.build.baseimage import make_busybox_image
    from pipeline.build.cache import BuildCache

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        make_busybox_image(
            BuildCache(small), Path("/bin/busybox"), "docker.io/library/busybox:latest"
        )
        berth = Berth(small, capsys)
        context = write_context(
            tmp_path / "ctx", "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=64\n", {}
        )
        err = berth.fail(context)
        assert "Dockerfile:2: RUN dd" in err
        assert "No space left on device" in err
        assert not list((small / "steps").glob("*.json"))
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_multi_stage_copy_from_and_target(berth: Berth, tmp_path: Path) -> None:
    context = write_context(
        tmp_path / "ctx",
        "FROM busybox AS build\nRUN echo built > /artifact\n"
        "FROM scratch AS final\nCOPY --from=build /artifact /bin/busybox /\n",
        {},
    )
    berth.build(context, "--output", f"oci:{tmp_path / 'out'}:final")
    rootfs = _unpack(tmp_path / "out", "final", tmp_path / "bundle")
    assert sorted(os.listdir(rootfs)) == ["artifact", "busybox"]
    only_build = berth.build(context, "--target", "build")
    assert len(only_build["layers"]) == 2


def test_a_relative_cache_dir_works_for_run_steps(
    berth: Berth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = write_context(tmp_path / "ctx", "FROM busybox\nRUN echo hi > /a\n", {})
    monkeypatch.chdir(berth.cache_dir.parent)
    code, out, err = berth("build", str(context), "--cache-dir", berth.cache_dir.name, "--json")
    assert code == 0, err
    assert [s["state"] for s in json.loads(out)["steps"]] == ["built"]
