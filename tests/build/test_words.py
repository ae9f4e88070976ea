"""Variable expansion and .dockerignore, with Docker's rules."""

from __future__ import annotations

import pytest

from pipeline.build.dockerignore import IgnoreRules
from pipeline.build.expand import ExpansionError, expand

pytestmark = pytest.mark.unit

ENV = {"A": "1", "SPACED": "x y", "EMPTY": ""}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "1"),
        ("${A}b", "1b"),
        ('"$SPACED"', "x y"),
        ("'$A'", "$A"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET:+alt}", ""),
        ("${A:+alt}", "alt"),
        ("a\\$A", "a$A"),
        ("$UNSET/x", "/x"),
    ],
)
def test_expansion(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


def test_required_variable_fails_with_its_message() -> None:
    with pytest.raises(ExpansionError, match="UNSET: must be set"):
        expand("${UNSET:?must be set}", ENV)


def test_backtick_escape_directive() -> None:
    assert expand("a`$A", ENV, escape="`") == "a$A"


def test_dockerignore_order_exceptions_and_double_star() -> None:
    rules = IgnoreRules.parse("# comment\n*.log\n!keep.log\nbuild/\n**/tmp\ndocs/**/*.md\n")
    assert rules.ignored("a.log")
    assert not rules.ignored("keep.log")
    assert not rules.ignored("sub/a.log")  # "*.log" is anchored at the root
    assert rules.ignored("build/deep/file")
    assert rules.ignored("a/b/tmp/c")
    assert rules.ignored("docs/x/y/z.md")
    assert not rules.ignored("docs/x.txt")
    assert not rules.ignored("src/main.py")


def test_last_matching_pattern_wins() -> None:
    assert not IgnoreRules.parse("*.txt\n!a.txt\n").ignored("a.txt")
    assert IgnoreRules.parse("!a.txt\n*.txt\n").ignored("a.txt")
