"""``berth serve`` as a real process: health, metrics, the embedded registry, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port

pytestmark = pytest.mark.integration

BERTH = str(Path(sys.executable).with_name("berth"))


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    config = tmp_path / "berth.yml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"listen: [127.0.0.1:{port}]\n"
        "cluster: {hosts: 1}\n" + extra
    )
    return config


def test_serve_answers_health_metrics_and_registry(
    tmp_path: Path, launcher: ProcessLauncher
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    proc = launcher.start([BERTH, "serve", "--config", str(config)], name="serve")
    wait_for_port("127.0.0.1", port, proc=proc)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["registry"] == "embedded"
        assert "berth_store_up 1.0" in client.get("/metrics").text
        base = client.get("/v2/")
        assert base.status_code == 200
        assert base.headers["docker-distribution-api-version"] == "registry/2.0"
        assert client.get("/v2/_catalog").json() == {"repositories": []}
    assert (tmp_path / "data" / "berth.db").is_file()
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_serve_refuses_to_start_with_an_unset_secret(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        "api_tokens:\n  - name: ci\n    token: {env: BERTH_TEST_UNSET_TOKEN}\n    scopes: [read]\n",
    )
    env = {k: v for k, v in os.environ.items() if k != "BERTH_TEST_UNSET_TOKEN"}
    result = subprocess.run(
        [BERTH, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "api_tokens/ci/token" in result.stderr
    assert "BERTH_TEST_UNSET_TOKEN" in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may be created before the config is valid"


def test_serve_with_a_broken_config_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "berth.yml"
    config.write_text("listen: [nowhere]\nenvironments: []\nbogus: 1\n")
    result = subprocess.run(
        [BERTH, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "bogus: unknown key" in result.stderr
    assert "listen/0" in result.stderr


def test_serve_names_an_address_in_use(tmp_path: Path, launcher: ProcessLauncher) -> None:
    port = free_port()
    first = launcher.start(
        [BERTH, "serve", "--config", str(write_config(tmp_path, port))], name="first"
    )
    wait_for_port("127.0.0.1", port, proc=first)
    other = tmp_path / "other"
    other.mkdir()
    result = subprocess.run(
        [BERTH, "serve", "--config", str(write_config(other, port))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
