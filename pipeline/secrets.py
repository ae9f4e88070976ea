"""Secret sources named in configuration, and their values resolved at ``berth serve`` start.

A config never holds a secret value: it names where the value is, ``{env: NAME}`` or
``{file: PATH}`` (:class:`SecretSource`). :func:`resolve_sources` reads them all once and
either returns :class:`Secrets` or raises a :class:`~pipeline.errors.ConfigError` that
lists *every* source it could not read, each with the config path that names it.

Values live only in :class:`Secret` objects, whose ``repr`` and ``str`` show where the
value came from, never the value; :meth:`Secret.reveal` is the one way to read it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, model_validator

from pipeline.configmodel import ConfigModel, EnvName, ResolvedPath
from pipeline.errors import ConfigError, ConfigProblem

__all__ = ["Secret", "SecretSource", "Secrets", "find_secret_sources", "resolve_sources"]


class SecretSource(ConfigModel):
    """Where a secret's value comes from: exactly one of an environment variable or a file."""

    env: EnvName | None = None
    """Name of an environment variable of the berth process that holds the value."""
    file: ResolvedPath | None = None
    """A file holding the value (one trailing newline is dropped); relative to the config."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError(
                "give exactly one of env: (an environment variable) or file: (a path) "
                "as the secret's source"
            )
        return self

    def describe(self) -> str:
        """``environment variable NAME`` or ``file PATH``: for messages and reprs."""
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"file {self.file}"


class Secret:
    """A secret's value; printing it shows only its source."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: SecretSource) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The value itself: hand it to what needs it, never to a log or a message."""
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Compare with ``candidate`` in constant time (for tokens and signatures)."""
        given = candidate.encode() if isinstance(candidate, str) else candidate
        return hmac.compare_digest(self._value.encode(), given)

    def __repr__(self) -> str:
        return f"Secret(from {self.source.describe()})"

    def __str__(self) -> str:
        return "******"


class Secrets(Mapping[SecretSource, Secret]):
    """Every secret a config names, resolved: look one up by its :class:`SecretSource`."""

    def __init__(self, resolved: Mapping[SecretSource, Secret]) -> None:
        self._resolved = dict(resolved)

    def __getitem__(self, source: SecretSource) -> Secret:
        return self._resolved[source]

    def __iter__(self) -> Iterator[SecretSource]:
        return iter(self._resolved)

    def __len__(self) -> int:
        return len(self._resolved)

    def __repr__(self) -> str:
        return f"Secrets({len(self)} resolved)"

    def revealed_values(self) -> list[str]:
        """All values, for registering them with the log masking filter."""
        return [secret.reveal() for secret in self._resolved.values()]


def find_secret_sources(model: BaseModel) -> list[tuple[str, SecretSource]]:
    """Every SecretSource inside ``model``, with the path that names it (items by name)."""
    found: list[tuple[str, SecretSource]] = []
    _walk(model, "", found)
    return found


def _walk(value: object, path: str, found: list[tuple[str, SecretSource]]) -> None:
    if isinstance(value, SecretSource):
        found.append((path, value))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(getattr(value, name), _join(path, name), found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, _join(path, str(key)), found)
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            label = getattr(item, "name", None)
            _walk(item, _join(path, label if isinstance(label, str) else str(index)), found)


def _join(path: str, part: str) -> str:
    return f"{path}/{part}" if path else part


def resolve_sources(
    named: list[tuple[str, SecretSource]], environ: Mapping[str, str], *, source: str
) -> Secrets:
    """Read every source; raise ConfigError naming each one that is unset or unreadable."""
    resolved: dict[SecretSource, Secret] = {}
    problems: list[ConfigProblem] = []
    for path, secret_source in named:
        if secret_source in resolved:
            continue
        try:
            resolved[secret_source] = Secret(_read(secret_source, environ), secret_source)
        except _Unreadable as exc:
            problems.append(ConfigProblem(source, path, str(exc)))
    if problems:
        raise ConfigError(problems)
    return Secrets(resolved)


class _Unreadable(Exception):
    pass


def _read(secret_source: SecretSource, environ: Mapping[str, str]) -> str:
    if secret_source.env is not None:
        name = secret_source.env
        if name not in environ:
            raise _Unreadable(
                f"environment variable {name} is not set; set it for berth serve "
                "(or read the secret from a file: instead)"
            )
        if not environ[name]:
            raise _Unreadable(f"environment variable {name} is empty; give it the secret's value")
        return environ[name]
    path = secret_source.file
    assert isinstance(path, Path)
    try:
        value = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _Unreadable(
            f"file {path} does not exist; create it (readable only by berth) or fix the path"
        ) from None
    except UnicodeDecodeError:
        raise _Unreadable(f"file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise _Unreadable(f"cannot read file {path}: {exc.strerror}") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise _Unreadable(f"file {path} is empty; write the secret's value into it")
    return value
