from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.yamldoc import Position, load_yaml, read_yaml, render_path

pytestmark = pytest.mark.unit


def problems_of(content: str | bytes, **kwargs: int) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_yaml(content, "berth.yml", **kwargs)
    return [str(p) for p in caught.value.problems]


def test_loads_plain_data_and_knows_positions() -> None:
    doc = load_yaml("a: 1\nrun:\n  health:\n    http: /healthz\nlist:\n  - x\n  - y: 2\n", "f.yml")
    assert doc.data == {"a": 1, "run": {"health": {"http": "/healthz"}}, "list": ["x", {"y": 2}]}
    assert doc.position(("run", "health", "http")) == Position(4, 11)
    assert doc.position(("run", "health", "http"), key=True) == Position(4, 5)
    assert doc.position(("list", 1, "y")) == Position(7, 8)
    # A path that is not there points at its nearest ancestor.
    assert doc.position(("run", "health", "tcp")) == Position(4, 5)


def test_merge_keys_apply_and_override() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n", "f.yml")
    assert doc.data == {"base": {"x": 1, "y": 2}, "thing": {"x": 1, "y": 3}}
    assert doc.position(("thing", "y")) == Position(4, 6)


def test_syntax_errors_carry_line_and_column() -> None:
    assert problems_of("a: [1\n") == [
        "berth.yml:2:1: not valid YAML: did not find expected ',' or ']'"
    ]
    assert problems_of("a: 1\n b: 2\n") == [
        "berth.yml:2:3: not valid YAML: mapping values are not allowed in this context"
    ]


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    assert problems_of("cluster: {hosts: 1}\ncluster: {hosts: 2}\n") == [
        "berth.yml: cluster: duplicate key (on lines 1 and 2); keep one"
    ]
    assert problems_of("a:\n  - b: 1\n    b: 2\n") == [
        "berth.yml: a/0/b: duplicate key (on lines 2 and 3); keep one"
    ]


def test_empty_documents_and_wrong_top_level() -> None:
    empty = ["berth.yml: the file is empty; expected a YAML mapping of keys to values"]
    assert problems_of("") == empty
    assert problems_of("# only a comment\n\n") == empty
    assert problems_of("---\n...\n") == empty
    assert problems_of("- a\n- b\n") == [
        "berth.yml:1:1: the top level must be a mapping of keys to values (got a list)"
    ]
    assert problems_of("just words\n") == [
        "berth.yml:1:1: the top level must be a mapping of keys to values (got a string)"
    ]
    assert problems_of("a: 1\n---\nb: 2\n") == [
        "berth.yml:2:1: holds more than one YAML document; keep one (remove the extra ---)"
    ]


def test_non_utf8_bytes_are_located() -> None:
    assert problems_of(b"a: 1\nb: caf\xe9\n") == [
        "berth.yml:2:7: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


def test_oversized_input_is_refused_before_parsing() -> None:
    assert problems_of("a: 1\n" + "#" * 2000, max_bytes=1000) == [
        "berth.yml: the file has 2005 bytes, more than the 1000 bytes berth reads from a "
        "config file; is this the right file?"
    ]


def test_a_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_bytes(b"a: 1\n" + b"#" * (1024 * 1024))
    with pytest.raises(ConfigError) as caught:
        read_yaml(big, "big.yml")
    assert str(caught.value) == (
        "big.yml: the file has 1048581 bytes, more than the 1048576 bytes berth reads from "
        "a config file; is this the right file?"
    )


def test_billion_laughs_is_refused() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    assert problems_of("\n".join(lines)) == [
        "berth.yml:1:8: the document expands to more than 100000 values through anchors "
        "and aliases; simplify the aliases"
    ]


def test_merge_key_doubling_is_refused() -> None:
    text = "a0: &a0 {x: 1}\n" + "".join(
        f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], y{i}: 1}}\n" for i in range(1, 40)
    )
    (problem,) = problems_of(text)
    assert "expands to more than 100000 values" in problem


def test_recursive_alias_is_refused() -> None:
    assert problems_of("a: &a [1, *a]\n") == [
        "berth.yml:1:4: an alias refers to a node that contains it (a recursive alias); "
        "remove the recursion"
    ]


def test_modest_aliases_are_fine() -> None:
    doc = load_yaml("defaults: &d {replicas: 2}\nx: *d\ny: *d\n", "f.yml")
    assert doc.data == {"defaults": {"replicas": 2}, "x": {"replicas": 2}, "y": {"replicas": 2}}


def test_unsafe_tags_are_refused() -> None:
    (problem,) = problems_of("a: !!python/object/apply:os.system [true]\n")
    assert problem.startswith("berth.yml:1:4: not valid YAML: could not determine a constructor")


def test_deep_nesting_is_refused() -> None:
    (problem,) = problems_of("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nesting depth" in problem


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope.yml: no such file; check the path"):
        read_yaml(tmp_path / "nope.yml", "nope.yml")
    with pytest.raises(ConfigError, match=r"is a directory; give the path of a YAML file$"):
        read_yaml(tmp_path, "dir")


def test_render_path_names_list_items_by_unique_name() -> None:
    data = {"environments": [{"name": "dev"}, {"name": "prod", "rollout": {"steps": [{}, {}]}}]}
    assert render_path(data, ("environments", 1, "rollout", "steps", 1)) == (
        "environments/prod/rollout/steps/1"
    )
    same = {"environments": [{"name": "dev"}, {"name": "dev"}]}
    assert render_path(same, ("environments", 1, "name")) == "environments/1/name"
    assert render_path(data, ("missing", 0, "key")) == "missing/0/key"
