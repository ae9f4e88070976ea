"""berth builds its own image with berth and runs it on a simulated host.

The base, debian:bookworm, comes from ``deploy/base-image.sh`` (debootstrap from
Debian's mirror, packed as an OCI archive). It is kept between runs in
``$BERTH_TEST_CACHE`` (default: /var/tmp/berth-test-cache, which outlives reboots and
fresh clones); without it the test makes it from scratch. Python packages come from a
wheelhouse that ``pip wheel`` makes of a copy of this checkout, so the image holds the
code under test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers.hostnet import traversable_tempdir
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
BERTH = [sys.executable, "-m", "pipeline.cli.main"]
LINK = "10.236.0.0/24"
POOL = "10.237.0.0/16"
GATEWAY = "10.236.0.1"
SOURCES = ("pyproject.toml", "README.md", "pipeline", "runners")


def _base_cache() -> Path:
    return Path(os.environ.get("BERTH_TEST_CACHE") or "/var/tmp/berth-test-cache")


def _run(argv: list[str], *, timeout: float, cwd: Path | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout[-3000:]}"
        f"\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture
def workdir() -> Iterator[Path]:
    with traversable_tempdir("berth-test-") as root:
        yield root


def _context(root: Path) -> Path:
    """The build context: config/ and a wheelhouse of berth (from a copy) and its deps."""
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    context = root / "context"
    shutil.copytree(REPO / "config", context / "config", ignore=ignore)
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheels"),
         str(source)],
        timeout=600,
    )  # fmt: skip
    return context


# debootstrap (when the base is not cached), two apt-get steps and ~200 MiB of layers
# compressed, pushed, pulled and unpacked on a 2-core machine: minutes, not seconds
@pytest.mark.timeout(600)
def test_berth_builds_its_image_and_runs_it_on_a_host(
    workdir: Path, launcher: ProcessLauncher
) -> None:
    cache = workdir / "build-cache"
    berth_command = Path(sys.executable).with_name("berth")
    env_script = ["env", f"BERTH={berth_command}", "bash", str(REPO / "deploy" / "base-image.sh")]
    archive = _run([*env_script, str(_base_cache()), str(cache)], timeout=600).splitlines()[-1]
    assert archive.endswith("debian-bookworm.oci.tar")
    context = _context(workdir)

    name = "sb" + uuid.uuid4().hex[:6]
    cluster_dir = workdir / "cluster"
    port = free_port()
    registry = f"{GATEWAY}:{port}"
    agent = (
        "{python} -m runners.agent --data {data} --listen unix:{socket}"
        " --listen tcp://{address}:{port} --token-file {token_file}"
        f" --insecure-registry {registry}"
    )
    _run(
        [*BERTH, "cluster", "up", "--hosts", "1", "--name", name, "--data", str(cluster_dir),
         "--subnet", LINK, "--container-subnet", POOL, "--agent-command", agent],
        timeout=120,
    )  # fmt: skip
    try:
        proc = launcher.start(
            [*BERTH, "registry", "serve", "--listen", registry,
             "--root", str(workdir / "registry"), "--insecure"],
            name="registry",
        )  # fmt: skip
        wait_for_port(GATEWAY, port, timeout=30, proc=proc)

        image = f"{registry}/berth/berth:selfbuild"
        built = _run(
            [*BERTH, "build", "-f", str(REPO / "deploy" / "Dockerfile"), "-t", image,
             "--push", "--insecure", "--network", "host", "--build-arg", "WHEELHOUSE=wheels",
             "--cache-dir", str(cache), "--json", str(context)],
            timeout=900,
        )  # fmt: skip
        digest = json.loads(built)["digest"]
        assert digest.startswith("sha256:")
        # run exactly what was built and pushed: the agent pulls it by digest
        image = f"{registry}/berth/berth@{digest}"

        host = ["--host", "h1", "--cluster", name, "--cluster-data", str(cluster_dir)]
        out = _run([*BERTH, "run", "--rm", *host, image, "version", "--json"], timeout=300)
        assert f'"berth": "{metadata.version("berth")}"' in out
        assert '"python": "3.11.' in out
        # the image's own config files are there too, and valid for its berth
        checked = _run(
            [*BERTH, "run", "--rm", *host, image,
             "config", "check", "/usr/share/berth/config/berth.yml", "--json"],
            timeout=300,
        )  # fmt: skip
        assert '"ok": true' in checked
    finally:
        launcher.stop_all()
        _run([*BERTH, "cluster", "down", "--name", name, "--data", str(cluster_dir)], timeout=120)
