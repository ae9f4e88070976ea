"""Errors raised by the control plane and the CLI.

The tree, most general first::

    BerthError                       anything berth could not do (CLI exit code 1)
    ├── ConfigError                  a service config or app spec is not valid
    │                                (carries every problem found, each with its path)
    ├── StoreError                   the state store could not be opened, migrated or written
    │   └── MigrationError           a schema migration failed or the schema is newer than berth
    ├── RegistryServerError          the embedded registry could not serve or store something
    ├── APIError                     the control plane's REST API answered with an error
    └── runners.errors.RunnerError   host-side failures, re-exported here for the CLI

The CLI catches ``BerthError`` and ``RunnerError``, prints the message and exits 1;
``--debug`` adds the traceback. Library code never prints and never exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runners.errors import RunnerError

__all__ = [
    "APIError",
    "BerthError",
    "ConfigError",
    "ConfigProblem",
    "MigrationError",
    "RegistryServerError",
    "RunnerError",
    "StoreError",
]


class BerthError(Exception):
    """Base of every error the control plane raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration document: where it is and what is wrong.

    Rendered ``berth.yml: run/health/http: must start with "/" (got "health")`` when the
    problem has a key path (its line and column stay available as attributes), and
    ``berth.yml:3:7: not valid YAML: ...`` when only a position can say where it is.
    """

    source: str
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.path:
            return f"{self.source}: {self.path}: {self.message}"
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ConfigError(BerthError):
    """A configuration document is not valid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StoreError(BerthError):
    """The state store could not be opened, read or written."""


class MigrationError(StoreError):
    """A schema migration failed, or the database was written by a newer berth."""


class RegistryServerError(BerthError):
    """The embedded registry could not serve or store something."""


class APIError(BerthError):
    """The control plane's REST API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
