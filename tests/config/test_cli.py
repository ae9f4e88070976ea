from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.config import schema_texts
from pipeline.cli.main import main

pytestmark = pytest.mark.unit

SERVICE = """\
data_dir: state
cluster: {hosts: 2}
apps:
  - {name: web, path: ../web}
  - {name: db, path: ../db}
"""
APP = "run:\n  port: 8080\n  health: {http: /healthz}\n  replicas: {prod: 3}\n  depends_on: [db]\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "berth.yml").write_text(SERVICE)
    (tmp_path / "app.yml").write_text(APP)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_defaults_to_config_berth_yml(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "config/berth.yml: valid"
    assert "dev (1x, gate none) -> functional-test (1x, gate functional)" in out
    assert "simulated cluster of 2" in out
    assert f"sqlite:///{workdir / 'config' / 'state' / 'berth.db'}" in out


def test_check_json_summary(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "config/berth.yml", "--app", "app.yml", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True
    service = summary["service_config"]
    assert [e["name"] for e in service["environments"]] == [
        "dev",
        "functional-test",
        "perf-test",
        "pre-prod",
        "prod",
    ]
    assert service["hosts"] == {"kind": "cluster", "count": 2}
    assert [a["name"] for a in service["apps"]] == ["web", "db"]
    assert summary["app_spec"] == {
        "file": "app.yml",
        "dockerfile": "Dockerfile",
        "port": 8080,
        "health": "http",
        "tests": [],
        "rollout_override": False,
    }


def test_check_app_alone(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "config" / "berth.yml").write_text("not: [valid\n")
    # Only the app spec is read when --app comes without a service config.
    assert main(["config", "check", "--app", "app.yml"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "app.yml: valid"
    assert "config/berth.yml" not in out


def test_check_lists_every_problem_and_exits_1(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "config" / "berth.yml").write_text(
        SERVICE + "environments:\n  - {name: dev, replicas: -1, gate: later}\n"
    )
    (workdir / "app.yml").write_text("run:\n  port: 8080\n  health: {http: healthz}\n")
    assert main(["config", "check", "config/berth.yml", "--app", "app.yml"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "config/berth.yml: environments/dev/replicas: must be at least 1 (got -1)",
        'config/berth.yml: environments/dev/gate: must be one of "none", "functional", "perf" '
        'or "approval" (got "later")',
        'app.yml: run/health/http: must start with "/" (got "healthz")',
        "error: 3 problems in app.yml, config/berth.yml; fix them and run berth config check again",
    ]


def test_check_json_problems(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "app.yml").write_text("run:\n  port: 8080\n  health: {http: healthz}\n")
    assert main(["config", "check", "--app", "app.yml", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "ok": False,
        "problems": [
            {
                "source": "app.yml",
                "path": "run/health/http",
                "message": 'must start with "/" (got "healthz")',
                "line": 3,
                "column": 18,
                "text": 'app.yml: run/health/http: must start with "/" (got "healthz")',
            }
        ],
    }


def test_app_checked_against_the_service_config(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "app.yml").write_text("run: {replicas: {staging: 1}}\n")
    assert main(["config", "check", "config/berth.yml", "--app", "app.yml"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        'app.yml: run/replicas/staging: no environment "staging" in config/berth.yml '
        "(it has dev, functional-test, perf-test, pre-prod, prod)"
    )


def test_syntax_errors_show_line_and_column(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "bad.yml").write_text("cluster:\n  hosts: [2\n")
    assert main(["config", "check", "bad.yml"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "bad.yml:3:1: not valid YAML: did not find expected ',' or ']'"
    )


def test_missing_files_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 1
    assert capsys.readouterr().err == (
        "error: config/berth.yml: no such file (the service config); pass its path "
        "(berth config check PATH) or run from the directory that holds config/\n"
    )
    assert main(["config", "check", "--app", "nowhere/berth.yml"]) == 1
    assert capsys.readouterr().err == (
        "error: nowhere/berth.yml: no such file (the app spec); check the path\n"
    )


def test_usage_errors_exit_2(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "No such option" in err
    assert "--frobnicate" in err


def test_schema_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schemas" / "nested"
    assert main(["config", "schema", "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert sorted(Path(p).name for p in written) == ["app.schema.json", "service.schema.json"]
    for name, text in schema_texts().items():
        assert (out / name).read_text(encoding="utf-8") == text
        assert json.loads(text)["title"].startswith("berth ")


def test_schema_into_an_unwritable_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["config", "schema", "--out", str(blocker / "sub")]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: cannot write the schemas into {blocker / 'sub'}"
    )
