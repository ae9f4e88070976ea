"""berth's registry against real clients: skopeo (no auth, Basic, token) and podman."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.registry.htpasswd import Htpasswd
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import ProcessLauncher
from tests.registry.conftest import start_registry

pytestmark = pytest.mark.integration

USERS = {"ci": "ci-secret", "hosts": "hosts-secret"}
RULES = ("--allow", "ci:**:pull,push,delete,catalog", "--allow", "hosts:apps/**:pull")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; these interop tests need it (apt-get install {name})"
        )
    return path


def run(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    directory = tmp_path / "layout"
    write_oci_layout(directory, "v1", files={"etc/motd": b"built by the test\n"}, busybox=True)
    return directory


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    for i, (user, password) in enumerate(USERS.items()):
        run([tool("htpasswd"), "-Bb" + ("c" if i == 0 else ""), str(path), user, password])
    return path


def test_apache_htpasswd_file_is_accepted(htpasswd: Path) -> None:
    assert all(line.split(":", 1)[1].startswith("$2y$") for line in htpasswd.read_text().split())
    users = Htpasswd(htpasswd)
    assert users.verify("ci", "ci-secret")
    assert not users.verify("ci", "hosts-secret")


class Skopeo:
    def __init__(self, policy: Path) -> None:
        self.binary = tool("skopeo")
        self.policy = policy

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.binary, "--policy", str(self.policy), *args], check=check)

    def copy(
        self, source: str, dest: str, *creds: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *creds,
            source,
            dest,
            check=check,
        )

    def inspect(self, ref: str, *creds: str) -> dict[str, object]:
        result = self("inspect", "--tls-verify=false", *creds, ref)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def diff_ids(self, ref: str, *creds: str) -> list[str]:
        """The uncompressed layer digests: unchanged when skopeo compresses layers on push."""
        config = json.loads(self("inspect", "--config", "--tls-verify=false", *creds, ref).stdout)
        return config["rootfs"]["diff_ids"]  # type: ignore[no-any-return]

    def tags(self, ref: str, *creds: str) -> list[str]:
        return json.loads(self("list-tags", "--tls-verify=false", *creds, ref).stdout)["Tags"]  # type: ignore[no-any-return]


@pytest.fixture
def skopeo(policy: Path) -> Skopeo:
    return Skopeo(policy)


def _blob_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "blobs").rglob("*") if p.is_file())


def test_skopeo_without_auth(
    skopeo: Skopeo, layout: Path, tmp_path: Path, launcher: ProcessLauncher, port: int
) -> None:
    server = start_registry(launcher, tmp_path / "root", port)
    ref = f"docker://{server.host_port}/apps/demo"
    skopeo.copy(f"oci:{layout}:v1", f"{ref}:v1")
    skopeo.copy(f"oci:{layout}:v1", f"{ref}:v2")
    source = skopeo.diff_ids(f"oci:{layout}:v1")
    assert len(source) == 2
    assert skopeo.diff_ids(f"{ref}:v1") == source
    pushed = skopeo.inspect(f"{ref}:v1")
    assert skopeo.tags(ref) == ["v1", "v2"]

    skopeo.copy(f"{ref}:v1", f"oci:{tmp_path / 'back'}:v1")
    back = skopeo.inspect(f"oci:{tmp_path / 'back'}:v1")
    assert back["Layers"] == pushed["Layers"]
    assert back["Digest"] == pushed["Digest"]
    assert skopeo.diff_ids(f"oci:{tmp_path / 'back'}:v1") == source

    # registry to registry: skopeo mounts the layers from apps/demo instead of re-sending them
    files_before = _blob_files(server.root)
    skopeo.copy(f"{ref}:v1", f"docker://{server.host_port}/apps/copy:v1")
    assert _blob_files(server.root) == files_before
    assert skopeo.inspect(f"docker://{server.host_port}/apps/copy:v1")["Digest"] == pushed["Digest"]


def test_skopeo_with_basic_auth(
    skopeo: Skopeo,
    layout: Path,
    htpasswd: Path,
    tmp_path: Path,
    launcher: ProcessLauncher,
    port: int,
) -> None:
    server = start_registry(launcher, tmp_path / "root", port, "--htpasswd", str(htpasswd), *RULES)
    ref = f"docker://{server.host_port}/apps/demo"
    anonymous = skopeo.copy(f"oci:{layout}:v1", f"{ref}:v1", check=False)
    assert anonymous.returncode != 0
    assert (
        "unauthorized" in anonymous.stderr.lower() or "authentication required" in anonymous.stderr
    )
    skopeo.copy(f"oci:{layout}:v1", f"{ref}:v1", "--dest-creds", "ci:ci-secret")
    assert skopeo.tags(ref, "--creds", "hosts:hosts-secret") == ["v1"]
    skopeo.copy(f"{ref}:v1", f"oci:{tmp_path / 'back'}:v1", "--src-creds", "hosts:hosts-secret")
    denied = skopeo.copy(
        f"oci:{layout}:v1", f"{ref}:v2", "--dest-creds", "hosts:hosts-secret", check=False
    )
    assert denied.returncode != 0
    assert "denied" in denied.stderr
    assert skopeo.tags(ref, "--creds", "ci:ci-secret") == ["v1"]


def test_skopeo_with_token_auth(
    skopeo: Skopeo,
    layout: Path,
    htpasswd: Path,
    tmp_path: Path,
    launcher: ProcessLauncher,
    port: int,
) -> None:
    server = start_registry(
        launcher, tmp_path / "root", port, "--auth", "token", "--htpasswd", str(htpasswd), *RULES
    )
    assert (server.root / "token.key").stat().st_mode & 0o777 == 0o600
    ref = f"docker://{server.host_port}/apps/demo"
    skopeo.copy(f"oci:{layout}:v1", f"{ref}:v1", "--dest-creds", "ci:ci-secret")
    pulled = skopeo.diff_ids(f"{ref}:v1", "--creds", "hosts:hosts-secret")
    assert pulled == skopeo.diff_ids(f"oci:{layout}:v1")
    assert skopeo.tags(ref, "--creds", "hosts:hosts-secret") == ["v1"]
    denied = skopeo.copy(
        f"oci:{layout}:v1", f"{ref}:v2", "--dest-creds", "hosts:hosts-secret", check=False
    )
    assert denied.returncode != 0
    assert "denied" in denied.stderr
    wrong = skopeo("inspect", "--tls-verify=false", "--creds", "ci:wrong", f"{ref}:v1", check=False)
    assert wrong.returncode != 0


@pytest.fixture
def podman_env(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], Path]]:
    base = tmp_path / "podman"
    base.mkdir()
    # podman refuses a runroot longer than 50 characters, which tmp_path easily is
    runroot = Path(tempfile.mkdtemp(prefix="berth-podman-"))
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{base / "events.log"}"\n'
        f'tmp_dir = "{base / "tmp"}"\n'
    )
    podman = [
        tool("podman"),
        "--root", str(base / "root"),
        "--runroot", str(runroot),
        "--storage-driver", "vfs",
    ]  # fmt: skip
    env = {
        "CONTAINERS_CONF": str(conf),
        "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
    }
    try:
        yield podman, env, base
    finally:
        run([*podman, "rm", "-a", "-f"], env, check=False)
        run([*podman, "rmi", "-a", "-f"], env, check=False)
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        left = [m for m in mounts if m.startswith((str(base), str(runroot)))]
        for mount in sorted(left, reverse=True):
            run(["umount", mount], check=False)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)
        assert left == [], f"podman left mounts behind: {left}"


def test_podman_pulls_and_runs_an_image(
    skopeo: Skopeo,
    layout: Path,
    tmp_path: Path,
    launcher: ProcessLauncher,
    port: int,
    podman_env: tuple[list[str], dict[str, str], Path],
) -> None:
    podman, env, base = podman_env
    server = start_registry(launcher, tmp_path / "root", port)
    (base / "registries.conf").write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{server.host_port}"\ninsecure = true\n'
    )
    image = f"{server.host_port}/apps/busybox:v1"
    skopeo.copy(f"oci:{layout}:v1", f"docker://{image}")
    run([*podman, "pull", "-q", image], env)
    result = run(
        [*podman, "run", "--rm", "--network", "none", image, "/bin/busybox", "echo", "hello"], env
    )
    assert result.stdout.strip() == "hello"
    motd = run([*podman, "run", "--rm", "--network", "none", image, "/bin/cat", "/etc/motd"], env)
    assert motd.stdout == "built by the test\n"
