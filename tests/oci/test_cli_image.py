"""``berth image``: the commands run as a user runs them, against a real registry."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.oci.archive import OCIArchive
from runners.oci.layout import OCILayout
from tests.oci.conftest import USERS, RunningRegistry
from tests.oci.images import blob_digests, make_image

pytestmark = pytest.mark.integration


def berth(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
    # HOME points at the test directory: no ~/.docker/config.json of the machine leaks in.
    env = {**os.environ, "HOME": str(cwd), "DOCKER_CONFIG": str(cwd / ".docker")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "image", *args],
        cwd=cwd,
        env=env,
        input=stdin.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_push_tags_inspect_pull(registry: RunningRegistry, tmp_path: Path) -> None:
    image = make_image(tmp_path / "src", "v1", [{"a": b"alpha"}, {"b": b"beta"}])
    ref = f"{registry.host}/cli/app"

    pushed = ok(berth(tmp_path, "push", image.location, f"{ref}:v1"))
    assert pushed.splitlines()[-1] == f"{ref}:v1@{image.manifest.digest}"
    assert "transferred" in pushed
    again = json.loads(ok(berth(tmp_path, "push", image.location, f"docker://{ref}:v2", "--json")))
    assert again["digest"] == str(image.manifest.digest)
    assert {b["state"] for b in again["blobs"]} == {"exists"}
    assert again["uploadedBytes"] == 0

    assert ok(berth(tmp_path, "tags", ref)).split() == ["v1", "v2"]
    assert json.loads(ok(berth(tmp_path, "tags", ref, "--json"))) == {
        "repository": ref,
        "tags": ["v1", "v2"],
    }

    text = ok(berth(tmp_path, "inspect", f"{ref}:v1"))
    assert f"Digest:     {image.manifest.digest}" in text
    assert "Platform:   linux/amd64" in text
    for layer in image.manifest.layers:
        assert str(layer.digest) in text
    raw = berth(tmp_path, "inspect", f"{ref}:v1", "--raw")
    assert raw.returncode == 0
    assert raw.stdout == image.manifest.raw
    data = json.loads(ok(berth(tmp_path, "inspect", f"{ref}:v1", "--json")))
    assert data["config"]["entrypoint"] == ["/bin/sh"]
    assert [layer["digest"] for layer in data["layers"]] == [
        str(layer.digest) for layer in image.manifest.layers
    ]

    ok(berth(tmp_path, "pull", f"{ref}:v1", "--output", "oci:out:copy", "--quiet"))
    out = OCILayout.open(tmp_path / "out")
    assert out.resolve("copy").digest == image.manifest.digest
    assert blob_digests(out) == blob_digests(image.layout)

    default = ok(berth(tmp_path, "pull", f"{ref}:v2"))
    assert default.splitlines()[-1].endswith("-> oci:app:v2")
    assert OCILayout.open(tmp_path / "app").resolve("v2").digest == image.manifest.digest

    local = json.loads(ok(berth(tmp_path, "inspect", "oci:out:copy", "--json")))
    assert local["digest"] == str(image.manifest.digest)


def test_archives_go_both_ways(registry: RunningRegistry, tmp_path: Path) -> None:
    image = make_image(tmp_path / "src")
    ref = f"{registry.host}/cli/archive"
    ok(berth(tmp_path, "push", image.location, f"{ref}:v1", "-q"))
    pulled = json.loads(
        ok(berth(tmp_path, "pull", f"{ref}:v1", "-o", "oci-archive:img.tar", "--json"))
    )
    assert pulled["output"] == "oci-archive:img.tar:v1"
    archive = OCIArchive.open(tmp_path / "img.tar")
    assert archive.resolve("v1").digest == image.manifest.digest
    pushed = ok(berth(tmp_path, "push", "oci-archive:img.tar:v1", f"{ref}:from-archive", "-q"))
    assert pushed.strip() == f"{ref}:from-archive@{image.manifest.digest}"


def test_credentials_on_the_command_line(auth_registry: RunningRegistry, tmp_path: Path) -> None:
    image = make_image(tmp_path / "src")
    ref = f"{auth_registry.host}/cli/auth:v1"

    refused = berth(tmp_path, "push", image.location, ref)
    assert refused.returncode == 1
    message = refused.stderr.decode()
    assert f"error: registry {auth_registry.host} requires authentication" in message
    assert "pass --creds USER:PASS or log in" in message
    assert "Traceback" not in message

    ok(berth(tmp_path, "push", image.location, ref, "--creds", f"alice:{USERS['alice']}", "-q"))
    tags = berth(
        tmp_path,
        "tags",
        ref,
        "--username",
        "alice",
        "--password-stdin",
        stdin=USERS["alice"] + "\n",
    )
    assert ok(tags).split() == ["v1"]
    wrong = berth(tmp_path, "tags", ref, "--creds", "alice:wrong")
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr.decode()


def test_docker_config_is_read(auth_registry: RunningRegistry, tmp_path: Path) -> None:
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    token = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    image = make_image(tmp_path / "src")
    ok(berth(tmp_path, "push", image.location, f"{auth_registry.host}/cli/cfg:v1", "-q"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["push", "127.0.0.1:1/a:v1", "oci:x"], 2, "is not oci:DIR[:TAG]"),
        (["push", "oci:x", "oci:y"], 2, "is a local image; this needs a registry reference"),
        (["tags", "127.0.0.1:1/a", "--password-stdin"], 2, "--password-stdin needs --username"),
        (["tags", "127.0.0.1:1/UPPER"], 1, "must be lower-case"),
        (["push", "oci:missing-dir", "127.0.0.1:1/a:v1"], 1, "not an OCI image layout"),
        (["pull", "127.0.0.1:1/a:v1", "--platform", "linux"], 1, "expected OS/ARCH"),
    ],
)
def test_mistakes_exit_with_a_message(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = berth(tmp_path, *args)
    assert result.returncode == code
    assert message in result.stderr.decode()
    assert not (tmp_path / "a").exists()


def test_failed_pull_leaves_no_directory(registry: RunningRegistry, tmp_path: Path) -> None:
    result = berth(tmp_path, "pull", f"{registry.host}/never/pushed:v1", "-o", "oci:target")
    assert result.returncode == 1
    assert "not found" in result.stderr.decode()
    assert not (tmp_path / "target").exists()
