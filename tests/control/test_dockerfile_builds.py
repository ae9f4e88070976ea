"""The control plane with the real Dockerfile builder: a busybox app is built, pushed and
released; a broken Dockerfile fails with its line in the log and changes no release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.queue.dockerfile import DockerfileImageBuilder
from pipeline.store import BuildState
from runners.oci.client import RegistryClient
from runners.oci.reference import Reference
from tests.control.conftest import MakeHarness
from tests.control.support import PUSH_PAYLOADS, TOKENS, signed

pytestmark = pytest.mark.privileged

BERTH = str(Path(sys.executable).with_name("berth"))
DOCKERFILE = "FROM busybox\nRUN echo built > /built.txt\nCOPY index.html /www/index.html\n"


def make_base(cache: Path) -> None:
    subprocess.run(
        [BERTH, "image", "base", "busybox", "-t", "busybox", "--cache-dir", str(cache)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_dockerfile_app_is_released_and_a_broken_one_fails_with_its_line(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    make_base(cache)

    def builder(client: RegistryClient, data: Path) -> DockerfileImageBuilder:
        return DockerfileImageBuilder(client, cache_dir=cache)

    harness = make_harness(builder=builder)
    good = harness.repo.commit(
        {"Dockerfile": DOCKERFILE, "index.html": "<h1>v1</h1>\n", "berth.yml": "run: {port: 80}\n"},
        "v1",
    )
    with harness.server.client() as http:
        body, headers = signed("github", PUSH_PAYLOADS["github"](harness.repo.url, good))
        assert http.post("/hooks/github", content=body, headers=headers).status_code == 202
    build = harness.wait_finished(good, timeout=120)
    assert build.state is BuildState.SUCCEEDED, build.reason
    assert build.digest is not None
    # the image is in the embedded registry, tagged with the commit
    ref = Reference.parse(f"{harness.server.url.removeprefix('http://')}/berth/demo:{good}")
    assert str(harness.client.get_manifest(ref).digest) == build.digest

    broken = harness.repo.commit(
        {"Dockerfile": "FROM busybox\nRUN echo fine\nFROBNICATE everything\n"}, "oops"
    )
    with harness.server.client() as http:
        body, headers = signed("github", PUSH_PAYLOADS["github"](harness.repo.url, broken))
        assert http.post("/hooks/github", content=body, headers=headers).status_code == 202
    failed = harness.wait_finished(broken, timeout=120)
    assert failed.state is BuildState.FAILED
    assert "Dockerfile:3" in failed.reason
    with harness.server.client(TOKENS["reader"]) as http:
        log = http.get(f"/api/v1/builds/{failed.id}/logs").text
        app = http.get("/api/v1/apps/demo").json()
    assert "Dockerfile:3" in log
    assert "FROBNICATE" in log.upper()
    assert app["latest_release"]["commit"] == good
    assert app["latest_build"]["state"] == "failed"
    assert [r.commit for r in harness.store.list_releases("demo")] == [good]
