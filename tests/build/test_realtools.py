"""Built images against real tools: berth's registry, skopeo, podman; reproducibility."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.build.baseimage import make_busybox_image
from pipeline.build.cache import BuildCache
from runners.oci.digest import Digest
from runners.oci.manifest import ImageManifest, parse_manifest
from runners.runtime.layers import LayerStore
from runners.runtime.unpack import unpack_layer
from tests.bench.build import make_contexts
from tests.build.conftest import BUSYBOX, Berth, write_context
from tests.helpers.gitrepo import GitRepo, git
from tests.helpers.procs import ProcessLauncher, wait_for_port

pytestmark = [pytest.mark.privileged, pytest.mark.integration]

BERTH = str(Path(sys.executable).with_name("berth"))
PEERS_DOCKERFILE = 'FROM busybox\nRUN echo hi > /a\nCOPY f /b\nCMD ["cat", "/a", "/b"]\n'


@pytest.fixture
def registry(launcher: ProcessLauncher, tmp_path: Path, port: int) -> str:
    proc = launcher.start(
        [
            BERTH,
            "registry",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--root",
            str(tmp_path / "reg"),
        ],
        name="registry",
    )
    wait_for_port("127.0.0.1", port, proc=proc)
    return f"127.0.0.1:{port}"


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    # podman refuses run roots longer than 50 characters; tmp_path's can be longer
    short = Path(tempfile.mkdtemp(prefix="bp-"))
    conf = tmp_path / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits=["nofile=20000:20000","nproc=4096:4096"]\n'
        '[engine]\nruntime="runc"\ncgroup_manager="cgroupfs"\nevents_logger="file"\n'
    )
    os.environ["CONTAINERS_CONF"] = str(conf)
    argv = ["podman", "--root", str(tmp_path / "proot"), "--runroot", str(short)]
    try:
        yield argv
    finally:
        subprocess.run([*argv, "system", "reset", "-f"], capture_output=True, check=False)
        os.environ.pop("CONTAINERS_CONF", None)
        shutil.rmtree(short, ignore_errors=True)


def test_push_inspect_with_skopeo_and_run_with_podman(
    berth: Berth, registry: str, tmp_path: Path, podman: list[str]
) -> None:
    context = write_context(tmp_path / "ctx", PEERS_DOCKERFILE, {"f": "from f\n"})
    archive = tmp_path / "image.tar"
    result = berth.build(
        context, "-t", f"{registry}/demo/app:v1", "--push", "--output", f"oci-archive:{archive}"
    )
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/demo/app:v1"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(inspect.stdout)
    assert data["Digest"] == result["digest"]
    assert data["Layers"] == [layer["digest"] for layer in result["layers"]]
    assert result["pushedBytes"] > 0
    again = berth.build(context, "-t", f"{registry}/demo/app:v1", "--push")
    assert again["pushedBytes"] == 0  # every blob was there already
    run = subprocess.run(
        [*podman, "run", "--rm", "--network", "none", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hi\nfrom f\n"


def test_both_benchmark_dockerfiles_build_and_push(
    berth: Berth, registry: str, tmp_path: Path
) -> None:
    (tmp_path / "bench").mkdir()
    contexts = make_contexts(tmp_path / "bench")
    for name, layers in (("small", 3), ("large", 5)):
        out = tmp_path / f"{name}-out"
        result = berth.build(
            contexts[name], "-t", f"{registry}/bench/{name}:v1", "--push", "--output", f"oci:{out}"
        )
        inspect = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/bench/{name}:v1"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(inspect.stdout)["Digest"] == result["digest"]
        assert len(result["layers"]) == layers
    # the large one's last RUN counted the 2,000 copied files
    top = result["layers"][-1]["digest"].split(":")[1]
    with open(tmp_path / "large-out" / "blobs" / "sha256" / top, "rb") as stream:
        made = unpack_layer(stream, tmp_path / "top").path
    assert (made / "count").read_text().strip() == "2000"


def test_same_commit_twice_cold_in_other_directories_gives_the_same_digest(
    git_repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = git_repo.commit(
        {"Dockerfile": PEERS_DOCKERFILE + "COPY dir /dir\n", "f": "f\n", "dir/x": "x\n"},
        date="2024-05-01T12:00:00Z",
    )
    digests = []
    for name in ("first", "second"):
        checkout = tmp_path / name
        git(tmp_path, "clone", "-q", str(git_repo.origin), str(checkout))
        os.utime(checkout / "f", None)  # a fresh, different mtime
        cache = tmp_path / f"cache-{name}"
        make_busybox_image(BuildCache(cache), Path("/bin/busybox"), BUSYBOX)
        result = Berth(cache, capsys).build(checkout, "--output", f"oci:{tmp_path / name}-out:t")
        assert result["cachedSteps"] == 0
        digests.append(result["digest"])
    assert digests[0] == digests[1]
    layout = tmp_path / "first-out"
    blob = layout / "blobs" / "sha256" / digests[0].split(":")[1]
    annotations = json.loads(blob.read_text())["annotations"]
    assert annotations["org.opencontainers.image.revision"] == sha
    assert annotations["org.opencontainers.image.created"] == "2024-05-01T12:00:00Z"


def test_unknown_base_image_names_reference_and_registry(
    berth: Berth, registry: str, tmp_path: Path
) -> None:
    context = write_context(tmp_path / "ctx", f"FROM {registry}/no/such:1\nRUN true\n", {})
    err = berth.fail(context)
    assert f"base image {registry}/no/such:1 not found on registry {registry}" in err


def test_import_docker_archive_and_build_from_it(
    berth: Berth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = write_context(tmp_path / "ctx", PEERS_DOCKERFILE, {"f": "f\n"})
    berth.build(context, "--output", f"oci:{tmp_path / 'out'}:v1")
    archive = tmp_path / "docker.tar"
    subprocess.run(
        ["skopeo", "copy", f"oci:{tmp_path / 'out'}:v1", f"docker-archive:{archive}:mine/app:v1"],
        capture_output=True,
        check=True,
    )
    fresh = Berth(tmp_path / "fresh-cache", capsys)
    code, out, err = fresh("image", "import", str(archive), "--cache-dir", str(fresh.cache_dir))
    assert code == 0, err
    assert out.startswith("docker.io/mine/app:v1 sha256:")
    # its layers are unpacked at once, as a pull does for buildah and podman
    imported = Digest.parse(out.split()[1])
    manifest = parse_manifest(BuildCache(fresh.cache_dir).images.read_blob(imported))
    assert isinstance(manifest, ImageManifest)
    store = LayerStore(BuildCache(fresh.cache_dir).layers_root)
    assert store.digests() == sorted({layer.digest for layer in manifest.layers})
    child = write_context(tmp_path / "child", "FROM mine/app:v1\nRUN cat /a /b > /both\n", {})
    result = fresh.build(child, "--output", f"oci:{tmp_path / 'child-out'}:c")
    assert [s["state"] for s in result["steps"]] == ["built"]
    assert len(result["layers"]) == 4


def test_a_made_base_image_is_unpacked_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = Berth(tmp_path / "fresh-cache", capsys)
    code, out, err = fresh(
        "image", "base", "busybox", "-t", "mybase", "--cache-dir", str(fresh.cache_dir)
    )
    assert code == 0, err
    made = Digest.parse(out.split()[1])
    manifest = parse_manifest(BuildCache(fresh.cache_dir).images.read_blob(made))
    assert isinstance(manifest, ImageManifest)
    store = LayerStore(BuildCache(fresh.cache_dir).layers_root)
    assert store.digests() == [layer.digest for layer in manifest.layers]
    assert (store.path_of(manifest.layers[0].digest) / "bin" / "busybox").is_file()


def test_large_context_is_streamed(berth: Berth, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", "FROM busybox\nCOPY big /big\n", {})
    with open(context / "big", "wb") as sparse:
        sparse.truncate(512 * 1024 * 1024)
    # A child's peak RSS counts the memory of the process it was forked from (pytest's,
    # hundreds of MiB late in a run): berth is started from a small Python process
    # that reports the peak of its children only.
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    argv = [BERTH, "build", str(context), "--cache-dir", str(berth.cache_dir), "-q"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split()[-1])
    assert peak < 200 * 1024  # KiB: far below the 512 MiB file
