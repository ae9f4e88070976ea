"""The service config (``config/berth.yml``): what one berth control plane runs.

It is read once, at start, into frozen :class:`Settings`; nothing downstream reads raw
YAML. Unknown keys are errors, every problem is reported at once with its key path
(``berth.yml: environments/prod/replicas: must be at least 1 (got -1)``), and relative
paths resolve against the directory of the config file.

Validation runs in two passes: the models check each value (types, units, ranges,
unknown keys); when every value is valid, :func:`_cross_checks` checks the rules that
span values (unique names, host labels, increasing weights, approvals vs approvers).

Secrets are named, never held (:class:`~pipeline.secrets.SecretSource`);
:func:`resolve_secrets` reads them at ``berth serve`` start.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    Strict,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipeline import units
from pipeline.configmodel import (
    Bool,
    ConfigModel,
    EnvName,
    Identity,
    Name,
    NonEmpty,
    RelativePath,
    ResolvedPath,
    Str,
    Variables,
    json_schema,
    validate_document,
)
from pipeline.errors import ConfigError
from pipeline.rolloutspec import RolloutSettings, check_steps
from pipeline.secrets import Secrets, SecretSource, find_secret_sources, resolve_sources
from pipeline.yamldoc import KeyPath, YamlDocument, load_yaml, read_yaml

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "ApiToken",
    "App",
    "Approval",
    "ChatOps",
    "Cluster",
    "Environment",
    "Host",
    "ListenAddress",
    "MattermostSettings",
    "Notification",
    "Registry",
    "Settings",
    "SlackSettings",
    "Webhook",
    "default_environments",
    "load_settings",
    "parse_settings",
    "resolve_secrets",
    "settings_from_document",
    "settings_json_schema",
]

DEFAULT_ENVIRONMENTS = ("dev", "functional-test", "perf-test", "pre-prod", "prod")


# --- small value types -------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    """An address the control plane listens on: ``127.0.0.1:8420`` or ``[::1]:8420``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _split_host_port(value: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value)
    if not match:
        return None
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if match.group(1) or not _HOSTNAME.fullmatch(host):
            return None
    return host, port


def _listen_address(value: object) -> ListenAddress:
    parsed = _split_host_port(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(
            f"must be HOST:PORT or [IPV6]:PORT, like 127.0.0.1:8420 (got {units.show_value(value)})"
        )
    return ListenAddress(*parsed)


Listen = Annotated[
    ListenAddress,
    PlainValidator(_listen_address),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string"}),
]


def _label_value(value: object) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"must be a non-empty string (got {units.show_value(value)})")


Labels = Mapping[
    Str,
    Annotated[str, PlainValidator(_label_value), WithJsonSchema({"type": ["string", "integer"]})],
]


def _git_url(value: str) -> str:
    if re.fullmatch(r"(https?|ssh|git|file)://\S+", value) or re.fullmatch(
        r"[\w.-]+@[\w.-]+:\S+", value
    ):
        return value
    raise ValueError(
        "must be a git URL like https://git.example.com/team/app.git or "
        f"git@git.example.com:team/app.git (got {units.show_value(value)})"
    )


# --- sections ----------------------------------------------------------------------


def _store_url(value: str, info: ValidationInfo) -> str:
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        path = Path(value.partition(":///")[2])
        if not value.startswith(f"{parts.scheme}:///") or not path.name:
            raise ValueError(f"must be sqlite:///PATH (got {units.show_value(value)})")
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and isinstance(base, Path):
            return f"{parts.scheme}:///{os.path.normpath(base / path)}"
        return value
    if scheme in ("postgresql", "postgres"):
        if parts.password is not None:
            # A password here would end up in reprs and logs; libpq reads it from
            # PGPASSWORD or ~/.pgpass instead.
            raise ValueError(
                "must not contain a password; give it to berth in PGPASSWORD or ~/.pgpass"
            )
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError(
                "must name a host, like postgresql://berth@db:5432/berth "
                f"(got {units.show_value(value)})"
            )
        return value
    raise ValueError(
        f"must be a sqlite:///PATH or postgresql://USER@HOST/DB URL (got {units.show_value(value)})"
    )


StoreURL = Annotated[str, Strict(), AfterValidator(_store_url)]


class Registry(ConfigModel):
    """Where images go: berth's embedded registry, or an external one."""

    embedded: Bool = True
    """Serve the OCI registry at /v2/ on the control plane (the default without url)."""
    url: Annotated[str, Strict()] | None = None
    """Base URL of an external registry, like https://registry.example.com."""
    namespace: Name = "berth"
    """Repository prefix: the image of app demo is NAMESPACE/demo."""
    username: SecretSource | None = None
    """Registry user name (external registry)."""
    password: SecretSource | None = None
    """Registry password or token (external registry)."""
    insecure: Bool = False
    """Allow plain HTTP or an unverified certificate (a registry on a trusted network)."""

    @model_validator(mode="before")
    @classmethod
    def _embedded_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "embedded" not in data:
            return {**data, "embedded": data.get("url") is None}
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/\S*)?", value):
            raise ValueError(
                f"must be an http(s) URL like https://registry.example.com (got {units.show_value(value)})"
            )
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_registry(self) -> Registry:
        if self.embedded and self.url is not None:
            raise ValueError("set either embedded: true or url: (an external registry), not both")
        if not self.embedded and self.url is None:
            raise ValueError("embedded is false, so url: must name the external registry")
        if self.embedded and (self.username or self.password):
            raise ValueError("username and password apply only to an external registry (url:)")
        return self


class Cluster(ConfigModel):
    """A simulated cluster on this machine: N hosts, each its own network namespace."""

    hosts: Annotated[int, Strict(), Field(ge=1, le=64)]
    """How many simulated hosts to start (each runs its own berth agent)."""


class Host(ConfigModel):
    """A machine running ``berth agent``."""

    name: Name
    """A unique name, used in placement, logs and the dashboard."""
    address: Str
    """Where its agent listens: HOST:PORT, [IPV6]:PORT, or unix:/PATH on this machine."""
    token: SecretSource | None = None
    """The agent's API token (required for TCP addresses)."""
    labels: Labels = Field(default_factory=dict)
    """Labels that environments select hosts by, e.g. {zone: a, tier: web}."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value.startswith("unix:") and value.removeprefix("unix:").lstrip("/"):
            return value
        if _split_host_port(value) is None:
            raise ValueError(
                f"must be HOST:PORT, [IPV6]:PORT or unix:/PATH (got {units.show_value(value)})"
            )
        return value

    @property
    def is_unix(self) -> bool:
        """True for an agent on a unix socket of this machine."""
        return self.address.startswith("unix:")

    @model_validator(mode="after")
    def _token_for_tcp(self) -> Host:
        if not self.is_unix and self.token is None:
            raise ValueError("an agent on a TCP address needs token: (a secret source)")
        return self


class Approval(ConfigModel):
    """Who must approve before a release passes an environment with ``gate: approval``."""

    required: Annotated[int, Strict(), Field(ge=1)] = 1
    """How many different people must approve."""
    approvers: tuple[Identity, ...] = ()
    """Berth identities allowed to approve; empty: anyone holding a deploy-scoped token."""


class Environment(ConfigModel):
    """One stage of the chain."""

    name: Name
    """A unique name, like dev or prod."""
    host_selector: Labels = Field(default_factory=dict)
    """Run only on hosts with all these labels (empty: any host)."""
    replicas: Annotated[int, Strict(), Field(ge=1)] = 1
    """Instances of each app (an app's berth.yml may override it per environment)."""
    variables: Variables = Field(default_factory=dict)
    """Environment variables given to every app's containers here."""
    secrets: Mapping[EnvName, SecretSource] = Field(default_factory=dict)
    """Secret environment variables: NAME -> {env: VAR} or {file: PATH}."""
    gate: Literal["none", "functional", "perf", "approval"] = "none"
    """What a release must pass here, at 100 %, before it may move on."""
    approval: Approval = Field(default_factory=Approval)
    """Approval policy (with gate: approval)."""
    auto_promote: Bool = True
    """Move a release that passed the gate on to the next environment without a command."""
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    """How a new release replaces the stable one here."""


class Webhook(ConfigModel):
    """Push notifications from a git host, so berth need not wait for the next poll."""

    provider: Literal["github", "gitlab", "gitea"]
    """Which git host sends them (decides how signatures are checked)."""
    secret: SecretSource
    """The shared webhook secret."""


class App(ConfigModel):
    """A watched git repository that builds one image."""

    name: Name
    """A unique name; also the image repository name."""
    repo: Annotated[str, Strict()] | None = None
    """A git URL (https://, ssh://, git@host:path, file://)."""
    path: ResolvedPath | None = None
    """Or a local repository (relative to this file)."""
    branch: Str = "main"
    """The branch whose commits are built and released."""
    poll_interval: Annotated[
        timedelta,
        PlainValidator(partial(units.parse_duration, minimum=timedelta(seconds=1))),
        PlainSerializer(units.format_duration, return_type=str),
        WithJsonSchema({"type": "string", "pattern": units.DURATION_PATTERN}),
    ] = Field(default="1m")  # type: ignore[assignment]
    """How often to look for new commits."""
    spec: RelativePath = "berth.yml"
    """Path of the app spec inside the repository."""
    webhook: Webhook | None = None
    """Accept push webhooks for this app."""

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        return None if value is None else _git_url(value)

    @model_validator(mode="after")
    def _repo_or_path(self) -> App:
        if self.repo is None and self.path is None:
            raise ValueError("needs repo: (a git URL) or path: (a local repository)")
        if self.repo is not None and self.path is not None:
            raise ValueError("has both repo: and path:; keep one")
        return self


class SlackSettings(ConfigModel):
    """Slack slash commands."""

    signing_secret: SecretSource
    """The Slack app's signing secret (verifies requests)."""
    users: Mapping[Str, Identity] = Field(default_factory=dict)
    """Slack user id -> berth identity (who may approve and promote)."""


class MattermostSettings(ConfigModel):
    """Mattermost slash commands."""

    token: SecretSource
    """The slash command's token (verifies requests)."""
    users: Mapping[Str, Identity] = Field(default_factory=dict)
    """Mattermost user id -> berth identity."""


class Notification(ConfigModel):
    """A Slack/Mattermost-compatible incoming webhook told about builds that failed,
    releases entering environments, gate results, approvals needed and rollouts."""

    url: SecretSource
    """The webhook URL (it carries the chat's token, so it is a secret)."""
    apps: tuple[Name, ...] = ()
    """Only events of these apps (empty: every app)."""
    environments: tuple[Name, ...] = ()
    """Only events of these environments (empty: every environment)."""


class ChatOps(ConfigModel):
    """Chat-ops integrations (all optional)."""

    slack: SlackSettings | None = None
    mattermost: MattermostSettings | None = None
    notifications: tuple[Notification, ...] = ()
    """Incoming webhooks that hear about what happens (none: no notifications)."""


class ApiToken(ConfigModel):
    """A token for the REST API (CLI, CI, dashboard)."""

    name: Name
    """A unique name; it is the identity recorded in the audit log."""
    token: SecretSource
    """Where the token value is."""
    scopes: Annotated[tuple[Literal["read", "deploy", "admin"], ...], NonEmpty]
    """What it may do: read, deploy (promote, approve, roll back) and admin."""


class Settings(ConfigModel):
    """A whole service config, validated."""

    data_dir: ResolvedPath = Path("/var/lib/berth")
    """Where berth keeps state, caches and the embedded registry (relative to this file)."""
    listen: Annotated[
        tuple[Listen, ...],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        NonEmpty,
    ] = Field(default=("127.0.0.1:8420",))  # type: ignore[arg-type]
    """Addresses of the control plane's HTTP server (API, webhooks, dashboard, /v2/)."""
    store: StoreURL | None = None
    """State store URL: sqlite:///PATH (default: sqlite under data_dir) or postgresql://..."""
    registry: Registry = Field(default_factory=Registry)
    """Where images are pushed and pulled from."""
    hosts: tuple[Host, ...] | None = None
    """Container hosts running berth agent (or use cluster:)."""
    cluster: Cluster | None = None
    """A simulated cluster on this machine (or use hosts:)."""
    environments: Annotated[tuple[Environment, ...], NonEmpty] = Field(
        default_factory=lambda: default_environments()
    )
    """The ordered chain of environments."""
    apps: tuple[App, ...] = ()
    """The watched apps."""
    chatops: ChatOps = Field(default_factory=ChatOps)
    """Chat-ops integrations."""
    api_tokens: tuple[ApiToken, ...] = ()
    """Tokens for the REST API."""

    _source: str = PrivateAttr(default="berth.yml")

    @property
    def source(self) -> str:
        """The name of the file this config came from, for messages."""
        return self._source

    @property
    def store_url(self) -> str:
        """The state store's URL, defaulting to SQLite under data_dir."""
        if self.store is not None:
            return self.store
        return f"sqlite:///{self.data_dir / 'berth.db'}"

    def environment(self, name: str) -> Environment:
        """The environment called ``name`` (KeyError if there is none)."""
        for environment in self.environments:
            if environment.name == name:
                return environment
        raise KeyError(name)

    def app(self, name: str) -> App:
        """The app called ``name`` (KeyError if there is none)."""
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)


def default_environments() -> tuple[Environment, ...]:
    """The chain used when a config names none: dev -> functional-test -> perf-test ->
    pre-prod (one approval) -> prod (a canary with analysis)."""
    gates: dict[str, Any] = {
        "functional-test": {"gate": "functional"},
        "perf-test": {"gate": "perf"},
        "pre-prod": {"gate": "approval"},
        "prod": {
            "replicas": 2,
            "rollout": {
                "steps": [
                    {"set_weight": 10},
                    {"analysis": {"window": "2m", "checks": {"max_error_rate": "1%"}}},
                    {"set_weight": 50},
                    {"pause": "2m"},
                    {"set_weight": 100},
                ]
            },
        },
    }
    return tuple(
        Environment.model_validate({"name": name, **gates.get(name, {})})
        for name in DEFAULT_ENVIRONMENTS
    )


# --- rules across values -----------------------------------------------------------


def _duplicates(items: tuple[Any, ...], section: str, noun: str) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in first:
            problems.append(
                (
                    (section, index, "name"),
                    f"duplicate {noun} name {units.show_value(item.name)} "
                    f"(also {section}/{first[item.name]}); names must be unique",
                )
            )
        else:
            first[item.name] = index
    return problems


def _cross_checks(settings: Settings) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if settings.hosts is not None and settings.cluster is not None:
        problems.append(
            (("cluster",), "set either hosts: (agents) or cluster: (simulated hosts), not both")
        )
    if settings.hosts is None and settings.cluster is None:
        problems.append(
            (
                ("hosts",),
                "is required: list the agents' hosts, or set cluster: {hosts: N} "
                "for simulated hosts on this machine",
            )
        )
    problems += _duplicates(settings.environments, "environments", "environment")
    problems += _duplicates(settings.apps, "apps", "app")
    problems += _duplicates(settings.api_tokens, "api_tokens", "token")
    if settings.hosts:
        problems += _duplicates(settings.hosts, "hosts", "host")
    for index, environment in enumerate(settings.environments):
        here: KeyPath = ("environments", index)
        if settings.hosts:
            problems += [
                ((*here, "host_selector", *path), message)
                for path, message in _selector_problems(environment, settings.hosts)
            ]
        approval = environment.approval
        if "approval" in environment.model_fields_set and environment.gate != "approval":
            problems.append(
                (
                    (*here, "approval"),
                    f"applies only with gate: approval (gate is {environment.gate})",
                )
            )
        if approval.approvers and approval.required > len(approval.approvers):
            problems.append(
                (
                    (*here, "approval", "required"),
                    f"asks for {approval.required} approvals but only "
                    f"{len(approval.approvers)} approvers are allowed; add approvers or lower it",
                )
            )
        problems += [
            ((*here, "rollout", "steps", *path), message)
            for path, message in check_steps(environment.rollout.steps)
        ]
    problems += _notification_problems(settings)
    return problems


def _notification_problems(settings: Settings) -> list[tuple[KeyPath, str]]:
    apps = {a.name for a in settings.apps}
    envs = {e.name for e in settings.environments}
    problems: list[tuple[KeyPath, str]] = []
    for index, target in enumerate(settings.chatops.notifications):
        here: KeyPath = ("chatops", "notifications", index)
        for position, name in enumerate(target.apps):
            if name not in apps:
                known = ", ".join(sorted(apps)) or "none"
                problems.append(((*here, "apps", position), f"no app {name} (apps: {known})"))
        for position, name in enumerate(target.environments):
            if name not in envs:
                problems.append(
                    (
                        (*here, "environments", position),
                        f"no environment {name} (environments: {', '.join(sorted(envs))})",
                    )
                )
    return problems


def _selector_problems(
    environment: Environment, hosts: tuple[Host, ...]
) -> list[tuple[KeyPath, str]]:
    selector = environment.host_selector
    for key, value in selector.items():
        if not any(host.labels.get(key) == value for host in hosts):
            known = sorted({f"{k}={v}" for host in hosts for k, v in host.labels.items()})
            return [
                (
                    (key,),
                    f"no host has label {key}={value} "
                    f"(labels in use: {', '.join(known) or 'none'})",
                )
            ]
    if selector and not any(
        all(host.labels.get(k) == v for k, v in selector.items()) for host in hosts
    ):
        wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
        return [((), f"no host has all of {wanted}")]
    return []


# --- entry points ------------------------------------------------------------------


def _raw_duplicate_names(data: object) -> list[tuple[KeyPath, str]]:
    """Duplicate names found in the raw document, so that they are reported together with
    problems in single values (the typed cross-checks run only on a valid document)."""
    if not isinstance(data, dict):
        return []
    sections = {
        "environments": "environment",
        "apps": "app",
        "api_tokens": "token",
        "hosts": "host",
    }
    problems: list[tuple[KeyPath, str]] = []
    for section, noun in sections.items():
        items = data.get(section)
        if not isinstance(items, list):
            continue
        named = tuple(
            SimpleNamespace(name=item["name"])
            for item in items
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        )
        if len(named) == len(items):
            problems += _duplicates(named, section, noun)
    return problems


def settings_from_document(doc: YamlDocument, *, base_dir: Path | None = None) -> Settings:
    """Validate a loaded document as a service config; ConfigError lists every problem."""
    try:
        settings = validate_document(Settings, doc, context={"base_dir": base_dir})
    except ConfigError as exc:
        extra = [doc.problem(path, message) for path, message in _raw_duplicate_names(doc.data)]
        if not extra:
            raise
        raise ConfigError([*exc.problems, *extra]) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError([doc.problem(path, message) for path, message in problems])
    settings._source = doc.source
    return settings


def parse_settings(
    text: str | bytes, source: str = "berth.yml", *, base_dir: Path | None = None
) -> Settings:
    """Parse a service config from text; relative paths resolve against ``base_dir``."""
    return settings_from_document(load_yaml(text, source), base_dir=base_dir)


def load_settings(path: Path | str, *, source: str | None = None) -> Settings:
    """Read the service config at ``path``; relative paths resolve against its directory."""
    file = Path(path)
    doc = read_yaml(file, source or str(path))
    return settings_from_document(doc, base_dir=file.resolve().parent)


def resolve_secrets(settings: Settings, environ: Mapping[str, str]) -> Secrets:
    """Read every secret the config names; ConfigError lists each unset or unreadable one."""
    return resolve_sources(find_secret_sources(settings), environ, source=settings.source)


def settings_json_schema() -> dict[str, Any]:
    """The JSON Schema of the service config (written to config/schema/service.schema.json)."""
    return json_schema(
        Settings,
        "berth service config",
        "The service config of a berth control plane (config/berth.yml).",
    )
