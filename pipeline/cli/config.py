"""``berth config``: check a service config and app specs, write their JSON Schemas.

``berth config check [SERVICE_CONFIG] [--app PATH/berth.yml] [--json]`` loads the
documents exactly as ``berth serve`` and the build pipeline do. Valid: exit 0 with a
short summary. Invalid: every problem, one per line with its path, and exit 1.

``berth config schema [--out DIR]`` writes ``service.schema.json`` and
``app.schema.json`` (editors use them for completion and inline checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.cli.context import emit_json, json_option
from pipeline.errors import BerthError, ConfigError, ConfigProblem

DEFAULT_SERVICE_CONFIG = Path("config") / "berth.yml"
DEFAULT_SCHEMA_DIR = Path("config") / "schema"
SCHEMA_FILES = {"service": "service.schema.json", "app": "app.schema.json"}


@click.group("config")
def config() -> None:
    """Check service configs and app specs; write their JSON Schemas."""


@config.command("check")
@click.argument("service_config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--app",
    "app_spec",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check this app spec (an app repository's berth.yml).",
)
@json_option
def check(service_config: Path | None, app_spec: Path | None, as_json: bool) -> None:
    """Check SERVICE_CONFIG (default: config/berth.yml) and, with --app, an app spec.

    Given only --app, only the app spec is checked. Exit 0 when valid, 1 listing every
    problem with its path.
    """
    from pipeline.appspec import AppSpec, load_appspec
    from pipeline.settings import Settings, load_settings

    if service_config is None and app_spec is None:
        service_config = DEFAULT_SERVICE_CONFIG
    problems: list[ConfigProblem] = []
    settings: Settings | None = None
    spec: AppSpec | None = None
    if service_config is not None:
        _require_file(service_config, "service config")
        try:
            settings = load_settings(service_config)
        except ConfigError as exc:
            problems += exc.problems
    if app_spec is not None:
        _require_file(app_spec, "app spec")
        try:
            spec = load_appspec(app_spec, settings=settings)
        except ConfigError as exc:
            problems += exc.problems

    if problems:
        if as_json:
            emit_json({"ok": False, "problems": [_problem_json(p) for p in problems]})
        else:
            for problem in problems:
                click.echo(str(problem), err=True)
        count = len(problems)
        files = sorted({p.source for p in problems})
        # A BerthError (not click's Exit) so that the exit code is 1 however the CLI runs.
        raise BerthError(
            f"{count} problem{'s' if count > 1 else ''} in {', '.join(files)}; "
            f"fix {'them' if count > 1 else 'it'} and run berth config check again"
        )

    summary: dict[str, Any] = {"ok": True}
    if settings is not None and service_config is not None:
        summary["service_config"] = {"file": str(service_config), **_settings_summary(settings)}
    if spec is not None and app_spec is not None:
        summary["app_spec"] = {"file": str(app_spec), **_appspec_summary(spec)}
    if as_json:
        emit_json(summary)
        return
    for section in ("service_config", "app_spec"):
        if section in summary:
            _echo_summary(summary[section])


@config.command("schema")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SCHEMA_DIR,
    show_default=True,
    help="Directory to write service.schema.json and app.schema.json into.",
)
@json_option
def schema(out_dir: Path, as_json: bool) -> None:
    """Write the JSON Schemas of the service config and the app spec."""
    written = [str(path) for path in write_schemas(out_dir)]
    if as_json:
        emit_json({"written": written})
    else:
        for path in written:
            click.echo(f"wrote {path}")


def schema_texts() -> dict[str, str]:
    """File name -> content of each JSON Schema, as ``berth config schema`` writes them."""
    from pipeline.appspec import appspec_json_schema
    from pipeline.configmodel import render_schema
    from pipeline.settings import settings_json_schema

    return {
        SCHEMA_FILES["service"]: render_schema(settings_json_schema()),
        SCHEMA_FILES["app"]: render_schema(appspec_json_schema()),
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write both schemas into ``out_dir`` (created if missing); return the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in schema_texts().items():
            path = out_dir / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise BerthError(f"cannot write the schemas into {out_dir}: {exc.strerror}") from exc
    return written


def _require_file(path: Path, what: str) -> None:
    if path.exists():
        return
    hint = (
        "pass its path (berth config check PATH) or run from the directory that holds config/"
        if path == DEFAULT_SERVICE_CONFIG
        else "check the path"
    )
    raise ConfigError([ConfigProblem(str(path), "", f"no such file (the {what}); {hint}")])


def _problem_json(problem: ConfigProblem) -> dict[str, Any]:
    return {
        "source": problem.source,
        "path": problem.path,
        "message": problem.message,
        "line": problem.line,
        "column": problem.column,
        "text": str(problem),
    }


def _settings_summary(settings: Any) -> dict[str, Any]:
    if settings.hosts is not None:
        hosts: dict[str, Any] = {
            "kind": "agents",
            "hosts": [{"name": h.name, "address": h.address} for h in settings.hosts],
        }
    else:
        hosts = {"kind": "cluster", "count": settings.cluster.hosts}
    return {
        "environments": [
            {
                "name": e.name,
                "replicas": e.replicas,
                "gate": e.gate,
                "auto_promote": e.auto_promote,
            }
            for e in settings.environments
        ],
        "apps": [
            {"name": a.name, "source": a.repo or str(a.path), "branch": a.branch}
            for a in settings.apps
        ],
        "hosts": hosts,
        "registry": "embedded" if settings.registry.embedded else settings.registry.url,
        "store": settings.store_url,
        "listen": [str(address) for address in settings.listen],
    }


def _appspec_summary(spec: Any) -> dict[str, Any]:
    health = spec.run.health
    return {
        "dockerfile": spec.build.dockerfile,
        "port": spec.run.port,
        "health": None if health is None else health.kind,
        "tests": [name for name in ("functional", "perf") if getattr(spec.tests, name)],
        "rollout_override": spec.rollout is not None,
    }


def _echo_summary(summary: dict[str, Any]) -> None:
    click.echo(f"{summary['file']}: valid")
    rows: list[tuple[str, str]] = []
    if "environments" in summary:
        chain = " -> ".join(
            f"{e['name']} ({e['replicas']}x, gate {e['gate']})" for e in summary["environments"]
        )
        hosts = summary["hosts"]
        rows += [
            ("environments", chain),
            (
                "apps",
                ", ".join(f"{a['name']} ({a['source']} @ {a['branch']})" for a in summary["apps"])
                or "none",
            ),
            (
                "hosts",
                f"simulated cluster of {hosts['count']}"
                if hosts["kind"] == "cluster"
                else ", ".join(f"{h['name']} ({h['address']})" for h in hosts["hosts"]),
            ),
            ("registry", summary["registry"]),
            ("store", summary["store"]),
            ("listen", ", ".join(summary["listen"])),
        ]
    else:
        rows += [
            ("build", summary["dockerfile"]),
            ("port", str(summary["port"] or "none")),
            ("health", summary["health"] or "none (running = healthy)"),
            ("tests", ", ".join(summary["tests"]) or "none"),
            ("rollout", "own steps" if summary["rollout_override"] else "the environments'"),
        ]
    for key, value in rows:
        click.echo(f"  {key:<13} {value}")
