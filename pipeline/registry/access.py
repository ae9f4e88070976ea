"""Who may do what: access requests (token scopes) and the per-repository ACL.

An :class:`Access` is what one request needs (``repository:NAME:push`` or the catalog).
An :class:`ACL` maps identities to repository globs and actions::

    rules:
      - identity: control-plane        # an htpasswd user
        repositories: ["**"]
        actions: [pull, push, delete, catalog]
      - identity: hosts
        repositories: ["apps/*"]
        actions: [pull]
      - identity: anonymous            # requests without credentials (and everyone else)
        repositories: ["public/**"]
        actions: [pull]

``*`` as an identity means every authenticated user; rules for ``anonymous`` apply to
everybody, logged in or not. In globs ``*`` matches within one path component and
``**`` across components.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError, ConfigProblem

PULL = "pull"
PUSH = "push"
DELETE = "delete"
CATALOG = "catalog"
ACTIONS = (PULL, PUSH, DELETE, CATALOG)
ANONYMOUS = "anonymous"
ANY_USER = "*"


@dataclass(frozen=True)
class Access:
    """Actions on one resource: ``repository:NAME`` or the ``registry:catalog``."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def repository(cls, name: str, *actions: str) -> Access:
        return cls("repository", name, frozenset(actions))

    @classmethod
    def catalog(cls) -> Access:
        return cls("registry", "catalog", frozenset({"*"}))

    @property
    def is_catalog(self) -> bool:
        return self.type == "registry" and self.name == "catalog"

    def scope(self) -> str:
        """The Docker token-auth scope string, e.g. ``repository:app:pull,push``."""
        # pull first, as docker clients write it
        order = {a: i for i, a in enumerate(ACTIONS)}
        actions = sorted(self.actions, key=lambda a: (order.get(a, 99), a))
        return f"{self.type}:{self.name}:{','.join(actions)}"

    def covered_by(self, granted: Iterable[Access]) -> bool:
        have: set[str] = set()
        for entry in granted:
            if entry.type == self.type and entry.name == self.name:
                have |= entry.actions
        return self.actions <= have


def parse_scope(text: str) -> Access | None:
    """Parse ``TYPE:NAME:ACTION[,ACTION]``; ``None`` when it is not of that form."""
    head, sep, actions = text.rpartition(":")
    if not sep:
        return None
    kind, sep, name = head.partition(":")
    if not sep or not kind or not name:
        return None
    wanted = frozenset(a for a in actions.split(",") if a)
    return Access(kind, name, wanted) if wanted else None


@functools.lru_cache(maxsize=1024)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """``*`` within a component, ``**`` across components, ``?`` one character."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts))


@dataclass(frozen=True)
class Rule:
    """One ACL line: ``identity`` may do ``actions`` on repositories matching ``patterns``."""

    identity: str
    patterns: tuple[str, ...]
    actions: frozenset[str]

    def applies_to(self, identity: str | None) -> bool:
        if self.identity == ANONYMOUS:
            return True
        if identity is None:
            return False
        return self.identity in (ANY_USER, identity)

    def matches(self, repository: str) -> bool:
        return any(glob_to_regex(p).fullmatch(repository) for p in self.patterns)


@dataclass(frozen=True)
class ACL:
    """The rules deciding what each identity may do (see the module docstring)."""

    rules: tuple[Rule, ...]

    @classmethod
    def authenticated_users_may_do_anything(cls) -> ACL:
        """The default with credentials: every valid user may do everything."""
        return cls((Rule(ANY_USER, ("**",), frozenset(ACTIONS)),))

    def granted(self, identity: str | None, access: Access) -> frozenset[str]:
        """Which of ``access.actions`` ``identity`` (``None``: anonymous) may perform."""
        if access.is_catalog:
            allowed = any(CATALOG in r.actions for r in self.rules if r.applies_to(identity))
            return access.actions if allowed else frozenset()
        if access.type != "repository":
            return frozenset()
        have: set[str] = set()
        for rule in self.rules:
            if rule.applies_to(identity) and rule.matches(access.name):
                have |= rule.actions
        return access.actions & frozenset(have)

    def allows(self, identity: str | None, access: Access) -> bool:
        return self.granted(identity, access) == access.actions

    def grants_anything(self, identity: str | None) -> bool:
        return any(r.applies_to(identity) for r in self.rules)


_RULE_KEYS = {"identity", "repositories", "actions"}


def _rule(raw: Any, where: str, problems: list[ConfigProblem], source: str) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(ConfigProblem(source, where, "must be a mapping"))
        return None
    for key in sorted(set(raw) - _RULE_KEYS):
        problems.append(
            ConfigProblem(
                source, f"{where}.{key}", "unknown key (use identity, repositories, actions)"
            )
        )
    identity = raw.get("identity")
    if not isinstance(identity, str) or not identity:
        problems.append(ConfigProblem(source, f"{where}.identity", "must be a non-empty string"))
    repositories = raw.get("repositories")
    if isinstance(repositories, str):
        repositories = [repositories]
    if (
        not isinstance(repositories, list)
        or not repositories
        or not all(isinstance(r, str) and r for r in repositories)
    ):
        problems.append(
            ConfigProblem(source, f"{where}.repositories", "must be a non-empty list of globs")
        )
    actions = raw.get("actions")
    if not isinstance(actions, list) or not actions:
        problems.append(ConfigProblem(source, f"{where}.actions", "must be a non-empty list"))
        actions = []
    wanted: set[str] = set()
    for i, action in enumerate(actions):
        if action == "*":
            wanted |= set(ACTIONS)
        elif action in ACTIONS:
            wanted.add(action)
        else:
            problems.append(
                ConfigProblem(
                    source,
                    f"{where}.actions[{i}]",
                    f"unknown action {action!r} (use {', '.join(ACTIONS)} or *)",
                )
            )
    if not isinstance(identity, str) or not isinstance(repositories, list) or not wanted:
        return None
    return Rule(identity, tuple(repositories), frozenset(wanted))


def parse_acl(text: str, source: str = "<acl>") -> ACL:
    """Parse an ACL document; every problem is reported at once in a ``ConfigError``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([ConfigProblem(source, "", f"not valid YAML: {exc}", line)]) from exc
    problems: list[ConfigProblem] = []
    if not isinstance(document, dict):
        raise ConfigError([ConfigProblem(source, "", "must be a mapping with a 'rules' list")])
    for key in sorted(set(document) - {"rules"}):
        problems.append(ConfigProblem(source, str(key), "unknown key (only 'rules' is allowed)"))
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list):
        problems.append(ConfigProblem(source, "rules", "must be a list of rules"))
        raw_rules = []
    rules = [_rule(raw, f"rules[{i}]", problems, source) for i, raw in enumerate(raw_rules)]
    if problems:
        raise ConfigError(problems)
    return ACL(tuple(r for r in rules if r is not None))


def load_acl(path: Path) -> ACL:
    """Read and parse an ACL file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), "", f"cannot read: {exc.strerror}")]) from exc
    return parse_acl(text, str(path))


def parse_allow(text: str) -> Rule:
    """A rule from the CLI: ``IDENTITY:GLOB[,GLOB]:ACTION[,ACTION]``."""
    parts = text.split(":")
    source = f"--allow {text}"
    if len(parts) != 3 or not all(parts):
        raise ConfigError(
            [ConfigProblem(source, "", "expected IDENTITY:GLOB[,GLOB]:ACTION[,ACTION]")]
        )
    identity, globs, actions = parts
    problems: list[ConfigProblem] = []
    rule = _rule(
        {"identity": identity, "repositories": globs.split(","), "actions": actions.split(",")},
        "",
        problems,
        source,
    )
    if problems or rule is None:
        raise ConfigError(problems)
    return rule
