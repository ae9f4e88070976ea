"""The app spec: ``berth.yml`` at the root of an app's repository.

It says how to build the image (``build``), how to run and probe it (``run``), how to
test it in the functional and perf environments (``tests``) and, optionally, different
rollout steps (``rollout``). Like the service config it is parsed once into frozen
models, unknown keys are errors and every problem is reported with its path:
``berth.yml: run/health/http: must start with "/" (got "health")``.

Given the service config too (:func:`appspec_from_document` with ``settings``), the
spec is also checked against it: environments it names must exist, apps it depends on
must be watched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, field_validator, model_validator

from pipeline.configmodel import (
    Bool,
    ConfigModel,
    Cpu,
    Name,
    NonEmpty,
    PercentField,
    PositiveDuration,
    RelativePath,
    Size,
    Str,
    Variables,
    json_schema,
    validate_document,
)
from pipeline.errors import ConfigError
from pipeline.rolloutspec import RolloutStep, check_steps
from pipeline.settings import Settings
from pipeline.units import show_value
from pipeline.yamldoc import KeyPath, YamlDocument, load_yaml, read_yaml

__all__ = [
    "AppRollout",
    "AppSpec",
    "Build",
    "FunctionalTests",
    "Health",
    "PerfTests",
    "Resources",
    "Run",
    "Tests",
    "appspec_from_document",
    "appspec_json_schema",
    "load_appspec",
    "parse_appspec",
]

Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f'must start with "/" (got {show_value(value)})')
    return value


class Build(ConfigModel):
    """How the image is built from the repository."""

    dockerfile: RelativePath = "Dockerfile"
    """Path of the Dockerfile, relative to the repository root."""
    context: RelativePath = "."
    """The build context directory, relative to the repository root."""
    args: Variables = Field(default_factory=dict)
    """Build arguments (ARG NAME) and their values."""
    target: Str | None = None
    """The stage of a multi-stage Dockerfile to build (default: the last)."""


class Health(ConfigModel):
    """How an instance is probed: exactly one of http, tcp or exec."""

    http: Str | None = None
    """GET this path on run.port; a 2xx or 3xx answer is healthy."""
    tcp: Bool | None = None
    """true: a TCP connection to run.port succeeding is healthy."""
    exec: Annotated[tuple[Str, ...], NonEmpty] | None = None
    """Run this command in the container; exit code 0 is healthy."""
    interval: PositiveDuration = Field(default="10s")  # type: ignore[assignment]
    """Time between probes."""
    timeout: PositiveDuration = Field(default="2s")  # type: ignore[assignment]
    """How long one probe may take."""
    start_period: PositiveDuration | None = None
    """Grace time after start during which failed probes do not count."""
    healthy_threshold: PositiveInt = 1
    """Consecutive successes that make an instance healthy."""
    unhealthy_threshold: PositiveInt = 3
    """Consecutive failures that make an instance unhealthy."""

    @field_validator("http")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return None if value is None else _url_path(value)

    @model_validator(mode="after")
    def _one_probe(self) -> Health:
        chosen = [k for k in ("http", "tcp", "exec") if getattr(self, k) not in (None, False)]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"give exactly one probe: http, tcp or exec (got {got})")
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        return self

    @property
    def kind(self) -> Literal["http", "tcp", "exec"]:
        """Which probe this is."""
        if self.http is not None:
            return "http"
        return "tcp" if self.tcp else "exec"


class Resources(ConfigModel):
    """Limits of each instance (unset: no limit)."""

    memory: Size | None = None
    """Memory limit, like 256Mi or 1Gi."""
    cpu: Cpu | None = None
    """CPU limit in cores (0.5) or millicores (500m)."""
    pids: PositiveInt | None = None
    """Most processes and threads the container may have."""


class Run(ConfigModel):
    """How instances run."""

    port: Port | None = None
    """The port the app listens on; the router sends traffic there."""
    command: Annotated[tuple[Str, ...], NonEmpty] | None = None
    """Override the image's command (a list of arguments, no shell)."""
    health: Health | None = None
    """The health probe; without one an instance is healthy while it runs."""
    resources: Resources = Field(default_factory=Resources)
    """Limits of each instance."""
    replicas: Mapping[Name, PositiveInt] = Field(default_factory=dict)
    """Instances per environment, overriding the environment's replicas."""
    variables: Mapping[Name, Variables] = Field(default_factory=dict)
    """Environment variables per environment, over the environment's own."""
    depends_on: tuple[Name, ...] = ()
    """Apps that must run before this one starts (names of watched apps)."""

    @model_validator(mode="after")
    def _port_for_probe(self) -> Run:
        if self.health is not None and self.health.kind in ("http", "tcp") and self.port is None:
            raise ValueError(f"a {self.health.kind} health probe needs run/port")
        return self


class FunctionalTests(ConfigModel):
    """The functional gate: a command run from the same image against the environment."""

    command: Annotated[tuple[Str, ...], NonEmpty]
    """The test command (a list of arguments); exit code 0 passes."""
    timeout: PositiveDuration = Field(default="10m")  # type: ignore[assignment]
    """How long the tests may take before they count as failed."""


class PerfTests(ConfigModel):
    """The perf gate: load on the environment, compared with thresholds."""

    path: Str = "/"
    """The path requested."""
    concurrency: PositiveInt = 8
    """Requests in flight at once."""
    duration: PositiveDuration | None = None
    """How long to drive load (default 30s unless requests is set)."""
    requests: PositiveInt | None = None
    """Or how many requests to send."""
    max_p95_latency: PositiveDuration | None = None
    """Highest acceptable 95th-percentile latency."""
    max_p99_latency: PositiveDuration | None = None
    """Highest acceptable 99th-percentile latency."""
    max_error_rate: PercentField | None = None
    """Highest acceptable share of failed requests."""
    min_rps: Annotated[float, Strict(), Field(gt=0)] | None = None
    """Lowest acceptable throughput, in requests per second."""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _url_path(value)

    @model_validator(mode="after")
    def _shape(self) -> PerfTests:
        if self.duration is not None and self.requests is not None:
            raise ValueError("give duration or requests, not both")
        thresholds = (self.max_p95_latency, self.max_p99_latency, self.max_error_rate, self.min_rps)
        if all(t is None for t in thresholds):
            raise ValueError(
                "name at least one threshold: max_p95_latency, max_p99_latency, "
                "max_error_rate or min_rps"
            )
        return self


class Tests(ConfigModel):
    """What the functional-test and perf-test gates run."""

    functional: FunctionalTests | None = None
    perf: PerfTests | None = None


class AppRollout(ConfigModel):
    """Rollout steps for this app, used in every environment instead of the configured ones."""

    steps: Annotated[tuple[RolloutStep, ...], NonEmpty]


class AppSpec(ConfigModel):
    """An app's berth.yml, validated."""

    build: Build = Field(default_factory=Build)
    """How to build the image."""
    run: Run = Field(default_factory=Run)
    """How to run it."""
    tests: Tests = Field(default_factory=Tests)
    """Functional and perf tests for the gates."""
    rollout: AppRollout | None = None
    """Override the rollout steps of every environment."""


def _own_checks(spec: AppSpec) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if spec.rollout is not None:
        problems += [
            (("rollout", "steps", *path), message)
            for path, message in check_steps(spec.rollout.steps)
        ]
    seen: set[str] = set()
    for index, name in enumerate(spec.run.depends_on):
        if name in seen:
            problems.append((("run", "depends_on", index), f"lists {show_value(name)} twice"))
        seen.add(name)
    return problems


def _checks_against(
    spec: AppSpec, settings: Settings, app: str | None
) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    environments = [e.name for e in settings.environments]
    known = ", ".join(environments)
    for section in ("replicas", "variables"):
        for name in getattr(spec.run, section):
            if name not in environments:
                problems.append(
                    (
                        ("run", section, name),
                        f"no environment {show_value(name)} in {settings.source} (it has {known})",
                    )
                )
    apps = [a.name for a in settings.apps]
    for index, name in enumerate(spec.run.depends_on):
        if app is not None and name == app:
            problems.append((("run", "depends_on", index), "an app cannot depend on itself"))
        elif name not in apps:
            problems.append(
                (
                    ("run", "depends_on", index),
                    f"no app {show_value(name)} in {settings.source} (it watches {', '.join(apps) or 'no apps'})",
                )
            )
    return problems


def appspec_from_document(
    doc: YamlDocument, *, settings: Settings | None = None, app: str | None = None
) -> AppSpec:
    """Validate a loaded document as an app spec (and against ``settings`` if given)."""
    spec = validate_document(AppSpec, doc)
    problems = _own_checks(spec)
    if settings is not None:
        problems += _checks_against(spec, settings, app)
    if problems:
        raise ConfigError([doc.problem(path, message) for path, message in problems])
    return spec


def parse_appspec(
    text: str | bytes,
    source: str = "berth.yml",
    *,
    settings: Settings | None = None,
    app: str | None = None,
) -> AppSpec:
    """Parse an app spec from text (e.g. the berth.yml of an exported commit)."""
    return appspec_from_document(load_yaml(text, source), settings=settings, app=app)


def load_appspec(
    path: Path | str,
    *,
    source: str | None = None,
    settings: Settings | None = None,
    app: str | None = None,
) -> AppSpec:
    """Read the app spec at ``path``."""
    doc = read_yaml(Path(path), source or str(path))
    return appspec_from_document(doc, settings=settings, app=app)


def appspec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the app spec (written to config/schema/app.schema.json)."""
    return json_schema(
        AppSpec,
        "berth app spec",
        "The berth.yml at the root of an app's repository: build, run, tests, rollout.",
    )
