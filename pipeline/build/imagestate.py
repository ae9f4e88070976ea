"""The image config of a stage while its steps run: pure values and pure transitions.

:func:`apply_meta` turns a config-only instruction (``ENV``, ``WORKDIR``, ``CMD`` …) and
an :class:`ImageState` into the next state; :func:`config_document` serialises the final
state into the OCI image config (``diff_ids``, ``history`` with ``empty_layer``).
Variables expand against the stage's ``ARG`` values overlaid by its ``ENV``, as Docker
does (an ``ENV`` wins over an ``ARG`` of the same name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.build.errors import DockerfileError
from pipeline.build.expand import ExpansionError, expand
from pipeline.build.plan import Instruction, arg_pairs
from runners.oci.digest import Digest

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSTHROUGH = ("architecture", "os", "variant", "os.version", "os.features")


@dataclass(frozen=True)
class ImageState:
    """A stage's config so far, plus the ``ARG`` values in scope (never stored)."""

    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    exposed: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    shell: tuple[str, ...] = DEFAULT_SHELL
    healthcheck: Mapping[str, Any] | None = field(default=None, hash=False)
    stop_signal: str = ""
    author: str = ""
    args: tuple[tuple[str, str], ...] = ()
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[Mapping[str, Any], ...] = ()
    platform: Mapping[str, Any] = field(
        default_factory=lambda: {"architecture": "amd64", "os": "linux"}, hash=False
    )

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    def variables(self) -> dict[str, str]:
        """What ``$NAME`` means in this stage: ARG values overlaid by ENV."""
        return {**dict(self.args), **dict(self.env)}

    def run_env(self) -> dict[str, str]:
        """A RUN step's environment: ENV, plus ARG values not shadowed by ENV."""
        found = dict(self.args)
        found.update(self.env)
        return found

    def with_layer(self, diff_id: Digest, created_by: str, created: str) -> ImageState:
        entry = {"created": created, "created_by": created_by, "comment": "berth"}
        return replace(self, diff_ids=(*self.diff_ids, diff_id), history=(*self.history, entry))

    def with_empty(self, created_by: str, created: str) -> ImageState:
        entry = {
            "created": created,
            "created_by": created_by,
            "comment": "berth",
            "empty_layer": True,
        }
        return replace(self, history=(*self.history, entry))


def initial_state(base: Mapping[str, Any] | None) -> ImageState:
    """The state a stage starts from: the base image's config, or scratch's."""
    if base is None:
        return ImageState(env=(("PATH", DEFAULT_PATH),))
    config = base.get("config") or {}
    env: list[tuple[str, str]] = []
    for item in config.get("Env") or []:
        name, _, value = str(item).partition("=")
        env.append((name, value))
    rootfs = base.get("rootfs") or {}
    return ImageState(
        env=tuple(env),
        workdir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        cmd=tuple(config["Cmd"]) if config.get("Cmd") is not None else None,
        entrypoint=tuple(config["Entrypoint"]) if config.get("Entrypoint") is not None else None,
        labels=tuple(sorted((config.get("Labels") or {}).items())),
        exposed=tuple(sorted(config.get("ExposedPorts") or {})),
        volumes=tuple(sorted(config.get("Volumes") or {})),
        shell=tuple(config["Shell"]) if config.get("Shell") else DEFAULT_SHELL,
        healthcheck=config.get("Healthcheck"),
        stop_signal=str(config.get("StopSignal") or ""),
        author=str(base.get("author") or ""),
        diff_ids=tuple(Digest.parse(d) for d in rootfs.get("diff_ids") or []),
        history=tuple(base.get("history") or []),
        platform={k: base[k] for k in _PASSTHROUGH if k in base},
    )


def expand_word(
    word: str, state: ImageState, instruction: Instruction, source: str, escape: str
) -> str:
    """``word`` expanded in ``state``; a bad ``${…}`` names the line."""
    try:
        return expand(word, state.variables(), escape)
    except ExpansionError as exc:
        raise DockerfileError(source, instruction.line, str(exc)) from exc


def declare_args(
    state: ImageState,
    instruction: Instruction,
    build_args: Mapping[str, str],
    global_args: Mapping[str, str | None],
    source: str,
    escape: str,
) -> ImageState:
    """``ARG NAME[=default]`` inside a stage: a build arg wins, then the default, then global."""
    args = dict(state.args)
    for name, default in arg_pairs(instruction):
        if name in build_args:
            args[name] = build_args[name]
        elif default is not None:
            args[name] = expand_word(
                default, replace(state, args=tuple(args.items())), instruction, source, escape
            )
        elif global_args.get(name) is not None:
            args[name] = str(global_args[name])
        else:
            args.pop(name, None)
    return replace(state, args=tuple(args.items()))


def apply_meta(state: ImageState, instruction: Instruction, source: str, escape: str) -> ImageState:
    """The state after a config-only instruction."""

    def word(text: str) -> str:
        return expand_word(text, state, instruction, source, escape)

    keyword, args = instruction.keyword, instruction.args
    if keyword == "ENV":
        env = dict(state.env)
        for name, value in _pairs(instruction, source):
            env[word(name)] = word(value)
        return replace(state, env=tuple(env.items()))
    if keyword == "LABEL":
        labels = dict(state.labels)
        for name, value in _pairs(instruction, source):
            labels[word(name)] = word(value)
        return replace(state, labels=tuple(sorted(labels.items())))
    if keyword == "WORKDIR":
        return replace(state, workdir=join_workdir(state.workdir, word(args[0])))
    if keyword == "USER":
        return replace(state, user=word(args[0]))
    if keyword == "EXPOSE":
        ports = set(state.exposed)
        for text in args:
            for port in word(text).split():
                ports.add(port if "/" in port else f"{port}/tcp")
        return replace(state, exposed=tuple(sorted(ports)))
    if keyword == "VOLUME":
        volumes = set(state.volumes)
        for text in args:
            volumes.update(word(text).split() if not instruction.json_form else [word(text)])
        return replace(state, volumes=tuple(sorted(volumes)))
    if keyword == "CMD":
        return replace(state, cmd=command_of(state, instruction))
    if keyword == "ENTRYPOINT":
        # Docker: a new entrypoint drops the Cmd inherited from the base image
        return replace(state, entrypoint=command_of(state, instruction), cmd=None)
    if keyword == "SHELL":
        return replace(state, shell=tuple(args))
    if keyword == "STOPSIGNAL":
        return replace(state, stop_signal=word(args[0]))
    if keyword == "MAINTAINER":
        return replace(state, author=word(" ".join(args)))
    if keyword == "HEALTHCHECK":
        return replace(state, healthcheck=_healthcheck(state, instruction, source))
    raise DockerfileError(source, instruction.line, f"{keyword} is not a config instruction")


def command_of(state: ImageState, instruction: Instruction) -> tuple[str, ...]:
    """The argv of CMD/ENTRYPOINT/RUN: JSON form as is, shell form through SHELL."""
    if instruction.json_form:
        return tuple(instruction.args)
    text = " ".join(instruction.args)
    return (*state.shell, text) if text else ()


def join_workdir(current: str, path: str) -> str:
    """WORKDIR semantics: relative paths continue from the current directory."""
    if not path.startswith("/"):
        path = f"{current or '/'}/{path}"
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _pairs(instruction: Instruction, source: str) -> list[tuple[str, str]]:
    args = list(instruction.args)
    if len(args) % 2:
        raise DockerfileError(
            source, instruction.line, f"{instruction.keyword} needs NAME=VALUE pairs"
        )
    return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]


_DURATIONS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _duration(text: str, instruction: Instruction, source: str) -> int:
    total, number = 0, ""
    rest = text
    while rest:
        while rest and (rest[0].isdigit() or rest[0] == "."):
            number, rest = number + rest[0], rest[1:]
        unit = ""
        while rest and rest[0].isalpha():
            unit, rest = unit + rest[0], rest[1:]
        if not number or unit not in _DURATIONS:
            raise DockerfileError(
                source, instruction.line, f"HEALTHCHECK: bad duration {text!r} (e.g. 30s, 1m30s)"
            )
        total += int(float(number) * _DURATIONS[unit])
        number = ""
    return total


def _healthcheck(state: ImageState, instruction: Instruction, source: str) -> dict[str, Any]:
    kind = instruction.args[0].upper()
    if kind == "NONE":
        return {"Test": ["NONE"]}
    rest = instruction.args[1:]
    test = ["CMD", *rest] if instruction.json_form else ["CMD-SHELL", " ".join(rest)]
    check: dict[str, Any] = {"Test": test}
    names = {
        "interval": "Interval",
        "timeout": "Timeout",
        "start-period": "StartPeriod",
        "start-interval": "StartInterval",
    }
    for flag, key in names.items():
        if flag in instruction.flags:
            check[key] = _duration(instruction.flags[flag], instruction, source)
    if "retries" in instruction.flags:
        value = instruction.flags["retries"]
        if not value.isdigit():
            raise DockerfileError(
                source, instruction.line, f"HEALTHCHECK --retries={value}: not a number"
            )
        check["Retries"] = int(value)
    return check


def config_document(state: ImageState, created: str) -> bytes:
    """The OCI image config of ``state``, serialised canonically."""
    config: dict[str, Any] = {}
    if state.env:
        config["Env"] = [f"{k}={v}" for k, v in state.env]
    if state.entrypoint is not None:
        config["Entrypoint"] = list(state.entrypoint)
    if state.cmd is not None:
        config["Cmd"] = list(state.cmd)
    if state.workdir:
        config["WorkingDir"] = state.workdir
    if state.user:
        config["User"] = state.user
    if state.labels:
        config["Labels"] = dict(state.labels)
    if state.exposed:
        config["ExposedPorts"] = {port: {} for port in state.exposed}
    if state.volumes:
        config["Volumes"] = {volume: {} for volume in state.volumes}
    if state.stop_signal:
        config["StopSignal"] = state.stop_signal
    if state.healthcheck is not None:
        config["Healthcheck"] = dict(state.healthcheck)
    if state.shell != DEFAULT_SHELL:
        config["Shell"] = list(state.shell)
    doc: dict[str, Any] = {
        **dict(state.platform),
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in state.diff_ids]},
        "history": [dict(h) for h in state.history],
    }
    if state.author:
        doc["author"] = state.author
    doc.setdefault("architecture", "amd64")
    doc.setdefault("os", "linux")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
