"""What the control plane asks of an agent: the instance spec, parsed strictly (pure).

A spec arrives as JSON; :func:`parse_spec` turns it into frozen objects or raises
:class:`~runners.agent.errors.BadSpec` naming the field (``ports[1].host: must be an
integer between 1 and 65535``). Unknown fields are refused, so a typo never silently
becomes a default. :func:`spec_to_json` is the canonical form: two specs are the same
request exactly when their canonical forms are equal, which makes ``PUT`` idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runners.agent.errors import BadSpec
from runners.errors import DigestError, ReferenceError_
from runners.oci.digest import Digest
from runners.oci.reference import Reference

# the instance id is also the container's hostname
INSTANCE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_BUILD_ID = re.compile(r"^(?:b-)?[0-9]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,252}$")
HEALTH_KINDS = ("http", "tcp", "exec")
RESTART_POLICIES = ("no", "on-failure")


@dataclass(frozen=True)
class PortMapping:
    """A host port forwarded to a container port."""

    host: int
    container: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class Limits:
    """cgroup limits of an instance; ``None`` leaves a resource unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class HealthCheck:
    """How an instance's health is probed, and how many results flip its state."""

    kind: str
    port: int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class RestartPolicy:
    """``no``, or ``on-failure``: restart after a non-zero exit, with exponential back-off."""

    policy: str = "no"
    max_retries: int | None = None
    backoff: float = 0.5
    max_backoff: float = 30.0


@dataclass(frozen=True)
class InstanceSpec:
    """One instance as the control plane wants it; its id is the container's hostname."""

    image: Reference
    digest: Digest | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[PortMapping, ...] = ()
    resources: Limits = Limits()
    health: HealthCheck | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    restart: RestartPolicy = RestartPolicy()
    stop_timeout: float = 10.0


def check_instance_id(instance_id: str) -> str:
    """``instance_id`` if it can name an instance (a hostname label), else :class:`BadSpec`.

    Ids of the form ``b-12`` (or plain digits) are builds', so that ``berth logs ID``
    always knows whose log is meant.
    """
    if _BUILD_ID.match(instance_id):
        raise BadSpec(
            f"instance id {instance_id!r}: 'b-N' and plain numbers are build ids; pick another"
        )
    if not INSTANCE_ID.match(instance_id):
        raise BadSpec(
            f"instance id {instance_id!r}: use 1-63 lower-case letters, digits and '-',"
            " starting and ending with a letter or digit (it becomes the hostname)"
        )
    return instance_id


def parse_spec(doc: Any) -> InstanceSpec:
    """The spec in ``doc`` (decoded JSON); raise :class:`BadSpec` naming the first bad field."""
    obj = _object(doc, "spec")
    _only(obj, "spec", {"image", "digest", "command", "entrypoint", "env", "ports",
                        "resources", "health", "labels", "restart", "stop_timeout"})  # fmt: skip
    if "image" not in obj:
        raise BadSpec("spec.image: missing (an image reference such as registry:5000/app:tag)")
    image_text = _str(obj["image"], "spec.image")
    try:
        image = Reference.parse(image_text)
    except ReferenceError_ as exc:
        raise BadSpec(f"spec.image: {exc}") from exc
    digest = None
    if obj.get("digest") is not None:
        try:
            digest = Digest.parse(_str(obj["digest"], "spec.digest"))
        except DigestError as exc:
            raise BadSpec(f"spec.digest: {exc}") from exc
        if image.digest is not None and image.digest != digest:
            raise BadSpec(
                f"spec.digest: {digest} differs from the image reference's {image.digest}"
            )
    elif image.digest is not None:
        digest = image.digest
    env = _str_map(obj.get("env"), "spec.env", _ENV_NAME, "an environment variable name")
    labels = _str_map(obj.get("labels"), "spec.labels", _LABEL_KEY, "a label key")
    return InstanceSpec(
        image=image,
        digest=digest,
        command=_argv(obj.get("command"), "spec.command"),
        entrypoint=_argv(obj.get("entrypoint"), "spec.entrypoint"),
        env=env,
        ports=_ports(obj.get("ports"), "spec.ports"),
        resources=_limits(obj.get("resources"), "spec.resources"),
        health=_health(obj.get("health"), "spec.health"),
        labels=labels,
        restart=_restart(obj.get("restart"), "spec.restart"),
        stop_timeout=_number(obj.get("stop_timeout", 10.0), "spec.stop_timeout", 0.0, 600.0),
    )


def spec_to_json(spec: InstanceSpec) -> dict[str, Any]:
    """The canonical JSON form; ``parse_spec(spec_to_json(s)) == s``."""
    health = spec.health
    return {
        "image": str(spec.image),
        "digest": str(spec.digest) if spec.digest else None,
        "command": list(spec.command) if spec.command is not None else None,
        "entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "env": dict(sorted(spec.env.items())),
        "ports": [
            {"host": p.host, "container": p.container, "protocol": p.protocol} for p in spec.ports
        ],
        "resources": {
            "memory_bytes": spec.resources.memory_bytes,
            "cpus": spec.resources.cpus,
            "pids": spec.resources.pids,
        },
        "health": None
        if health is None
        else {
            "kind": health.kind,
            "port": health.port,
            "path": health.path,
            "command": list(health.command),
            "interval": health.interval,
            "timeout": health.timeout,
            "healthy_threshold": health.healthy_threshold,
            "unhealthy_threshold": health.unhealthy_threshold,
            "start_period": health.start_period,
        },
        "labels": dict(sorted(spec.labels.items())),
        "restart": {
            "policy": spec.restart.policy,
            "max_retries": spec.restart.max_retries,
            "backoff": spec.restart.backoff,
            "max_backoff": spec.restart.max_backoff,
        },
        "stop_timeout": spec.stop_timeout,
    }


# -- field parsers ---------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadSpec(f"{where}: must be a JSON object (got {_kind(value)})")
    return value


def _only(obj: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise BadSpec(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadSpec(f"{where}: must be a non-empty string (got {_kind(value)})")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadSpec(f"{where}: must be an integer between {low} and {high} (got {value!r})")
    return int(value)


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadSpec(f"{where}: must be a number between {low:g} and {high:g} (got {value!r})")
    return float(value)


def _argv(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadSpec(f"{where}: must be a list of strings (got {_kind(value)})")
    if any("\0" in v for v in value):
        raise BadSpec(f"{where}: arguments cannot contain NUL bytes")
    return tuple(value)


def _str_map(value: Any, where: str, key_re: re.Pattern[str], what: str) -> dict[str, str]:
    if value is None:
        return {}
    obj = _object(value, where)
    for key, item in obj.items():
        if not key_re.match(key):
            raise BadSpec(f"{where}.{key}: not {what}")
        if not isinstance(item, str) or "\0" in item:
            raise BadSpec(f"{where}.{key}: must be a string without NUL bytes (got {_kind(item)})")
    return dict(sorted(obj.items()))


def _ports(value: Any, where: str) -> tuple[PortMapping, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadSpec(
            f"{where}: must be a list of {{host, container, protocol}} (got {_kind(value)})"
        )
    found: list[PortMapping] = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        obj = _object(item, here)
        _only(obj, here, {"host", "container", "protocol"})
        for key in ("host", "container"):
            if key not in obj:
                raise BadSpec(f"{here}.{key}: missing")
        protocol = obj.get("protocol", "tcp")
        if protocol not in ("tcp", "udp"):
            raise BadSpec(f"{here}.protocol: must be 'tcp' or 'udp' (got {protocol!r})")
        mapping = PortMapping(
            host=_int(obj["host"], f"{here}.host", 1, 65535),
            container=_int(obj["container"], f"{here}.container", 1, 65535),
            protocol=protocol,
        )
        if any(p.host == mapping.host and p.protocol == mapping.protocol for p in found):
            raise BadSpec(f"{here}.host: {mapping.protocol} port {mapping.host} is listed twice")
        found.append(mapping)
    return tuple(found)


def _limits(value: Any, where: str) -> Limits:
    if value is None:
        return Limits()
    obj = _object(value, where)
    _only(obj, where, {"memory_bytes", "cpus", "pids"})
    memory = obj.get("memory_bytes")
    cpus = obj.get("cpus")
    pids = obj.get("pids")
    return Limits(
        memory_bytes=None
        if memory is None
        else _int(memory, f"{where}.memory_bytes", 4 << 20, 1 << 50),
        cpus=None if cpus is None else _number(cpus, f"{where}.cpus", 0.01, 1024.0),
        pids=None if pids is None else _int(pids, f"{where}.pids", 1, 1 << 22),
    )


def _health(value: Any, where: str) -> HealthCheck | None:
    if value is None:
        return None
    obj = _object(value, where)
    _only(obj, where, {"kind", "port", "path", "command", "interval", "timeout",
                       "healthy_threshold", "unhealthy_threshold", "start_period"})  # fmt: skip
    kind = obj.get("kind")
    if kind not in HEALTH_KINDS:
        raise BadSpec(f"{where}.kind: must be one of {', '.join(HEALTH_KINDS)} (got {kind!r})")
    port = None if obj.get("port") is None else _int(obj["port"], f"{where}.port", 1, 65535)
    command = _argv(obj.get("command"), f"{where}.command") or ()
    path = obj.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadSpec(f"{where}.path: must start with '/' (got {path!r})")
    if kind in ("http", "tcp") and port is None:
        raise BadSpec(f"{where}.port: missing (a {kind} probe needs the container port)")
    if kind == "exec" and not command:
        raise BadSpec(f"{where}.command: missing (an exec probe needs a command)")
    interval = _number(obj.get("interval", 2.0), f"{where}.interval", 0.05, 3600.0)
    timeout = _number(obj.get("timeout", 1.0), f"{where}.timeout", 0.05, 600.0)
    return HealthCheck(
        kind=kind,
        port=port,
        path=path,
        command=command,
        interval=interval,
        timeout=timeout,
        healthy_threshold=_int(
            obj.get("healthy_threshold", 1), f"{where}.healthy_threshold", 1, 100
        ),
        unhealthy_threshold=_int(
            obj.get("unhealthy_threshold", 3), f"{where}.unhealthy_threshold", 1, 100
        ),
        start_period=_number(obj.get("start_period", 0.0), f"{where}.start_period", 0.0, 3600.0),
    )


def _restart(value: Any, where: str) -> RestartPolicy:
    if value is None:
        return RestartPolicy()
    obj = _object(value, where)
    _only(obj, where, {"policy", "max_retries", "backoff", "max_backoff"})
    policy = obj.get("policy", "no")
    if policy not in RESTART_POLICIES:
        raise BadSpec(
            f"{where}.policy: must be one of {', '.join(RESTART_POLICIES)} (got {policy!r})"
        )
    retries = obj.get("max_retries")
    backoff = _number(obj.get("backoff", 0.5), f"{where}.backoff", 0.01, 3600.0)
    max_backoff = _number(obj.get("max_backoff", 30.0), f"{where}.max_backoff", 0.01, 86400.0)
    if max_backoff < backoff:
        raise BadSpec(f"{where}.max_backoff: {max_backoff:g} is below backoff {backoff:g}")
    return RestartPolicy(
        policy=policy,
        max_retries=None
        if retries is None
        else _int(retries, f"{where}.max_retries", 0, 1_000_000),
        backoff=backoff,
        max_backoff=max_backoff,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
