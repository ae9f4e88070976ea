from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.registry.access import (
    ACL,
    Access,
    Rule,
    glob_to_regex,
    load_acl,
    parse_acl,
    parse_allow,
    parse_scope,
)

pytestmark = pytest.mark.unit

ACL_TEXT = """
rules:
  - identity: ci
    repositories: ["**"]
    actions: ["*"]
  - identity: hosts
    repositories: ["apps/*"]
    actions: [pull]
  - identity: anonymous
    repositories: public/**
    actions: [pull]
"""


def test_scope_round_trip() -> None:
    access = parse_scope("repository:apps/demo:push,pull")
    assert access == Access.repository("apps/demo", "pull", "push")
    assert access.scope() == "repository:apps/demo:pull,push"
    assert parse_scope("registry:catalog:*") == Access.catalog()
    assert parse_scope("repository:host:5000/app:pull") == Access.repository(
        "host:5000/app", "pull"
    )


@pytest.mark.parametrize("text", ["", "pull", "repository:pull", "repository:app:", ":app:pull"])
def test_bad_scopes(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("apps/*", "apps/demo", True),
        ("apps/*", "apps/demo/sub", False),
        ("apps/**", "apps/demo/sub", True),
        ("**", "anything/at/all", True),
        ("app?", "app1", True),
        ("app?", "app/", False),
        ("a.b", "axb", False),
    ],
)
def test_globs(pattern: str, name: str, matches: bool) -> None:
    assert (glob_to_regex(pattern).fullmatch(name) is not None) is matches


def test_acl_grants_per_identity() -> None:
    acl = parse_acl(ACL_TEXT)
    push = Access.repository("apps/demo", "pull", "push")
    assert acl.allows("ci", push)
    assert acl.granted("hosts", push) == {"pull"}
    assert not acl.allows("hosts", push)
    assert acl.granted("hosts", Access.repository("other", "pull")) == frozenset()
    # anonymous rules apply to everybody
    assert acl.allows(None, Access.repository("public/x/y", "pull"))
    assert acl.allows("hosts", Access.repository("public/x", "pull"))
    assert not acl.allows(None, Access.repository("apps/demo", "pull"))
    assert acl.allows("ci", Access.catalog())
    assert not acl.allows("hosts", Access.catalog())
    assert acl.granted("ci", Access("weird", "x", frozenset({"pull"}))) == frozenset()


def test_any_user_rule_needs_credentials() -> None:
    acl = ACL.authenticated_users_may_do_anything()
    assert acl.allows("someone", Access.repository("x", "pull", "push", "delete"))
    assert not acl.allows(None, Access.repository("x", "pull"))
    assert acl.grants_anything("someone")
    assert not acl.grants_anything(None)


def test_acl_reports_every_problem_with_its_path() -> None:
    text = """
rules:
  - identity: ""
    repositories: []
    actions: [pull, pll]
    colour: red
  - "not a rule"
extra: 1
"""
    with pytest.raises(ConfigError) as info:
        parse_acl(text, "acl.yml")
    messages = [str(p) for p in info.value.problems]
    assert messages == [
        "acl.yml: extra: unknown key (only 'rules' is allowed)",
        "acl.yml: rules[0].colour: unknown key (use identity, repositories, actions)",
        "acl.yml: rules[0].identity: must be a non-empty string",
        "acl.yml: rules[0].repositories: must be a non-empty list of globs",
        "acl.yml: rules[0].actions[1]: unknown action 'pll' (use pull, push, delete, catalog or *)",
        "acl.yml: rules[1]: must be a mapping",
    ]


def test_acl_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_acl("rules: [\n  - a: b\n", "acl.yml")
    assert info.value.problems[0].line is not None


def test_load_acl_file(tmp_path: Path) -> None:
    path = tmp_path / "acl.yml"
    path.write_text(ACL_TEXT)
    assert len(load_acl(path).rules) == 3
    with pytest.raises(ConfigError, match="cannot read"):
        load_acl(tmp_path / "missing.yml")


def test_parse_allow_flag() -> None:
    assert parse_allow("hosts:apps/*,base/*:pull") == Rule(
        "hosts", ("apps/*", "base/*"), frozenset({"pull"})
    )
    assert parse_allow("ci:**:*").actions == {"pull", "push", "delete", "catalog"}
    with pytest.raises(ConfigError, match="expected IDENTITY"):
        parse_allow("hosts:pull")
    with pytest.raises(ConfigError, match="unknown action 'fly'"):
        parse_allow("hosts:**:fly")
