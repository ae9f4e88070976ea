"""The files under config/: valid, documented, and with schemas matching the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.appspec import appspec_json_schema, load_appspec
from pipeline.cli.config import SCHEMA_FILES, schema_texts
from pipeline.rolloutspec import SetWeight
from pipeline.settings import DEFAULT_ENVIRONMENTS, load_settings, settings_json_schema
from pipeline.yamldoc import read_yaml

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "config"

KeyPath = tuple[str, ...]


def test_default_config_is_valid_and_runs_the_quick_start() -> None:
    settings = load_settings(CONFIG / "berth.yml")
    assert tuple(e.name for e in settings.environments) == DEFAULT_ENVIRONMENTS
    assert [str(a) for a in settings.listen] == ["127.0.0.1:8420"]
    assert settings.registry.embedded
    assert settings.cluster is not None
    assert settings.cluster.hosts == 5
    # outside the checkout: containers' unprivileged root must traverse data_dir
    assert settings.data_dir == Path("/var/lib/berth")
    assert [a.path for a in settings.apps] == [Path("/var/lib/berth/demo-repo")]
    assert settings.environment("pre-prod").gate == "approval"
    # new commits enter dev as a grey release
    steps = settings.environment("dev").rollout.steps
    weights = [s.set_weight for s in steps if isinstance(s, SetWeight)]
    assert weights == [25, 50, 100]


def test_reference_files_are_valid_together() -> None:
    settings = load_settings(CONFIG / "reference.yml")
    load_appspec(CONFIG / "reference-app.yml", settings=settings, app="shop")


def test_committed_schemas_are_current() -> None:
    for name, text in schema_texts().items():
        committed = (CONFIG / "schema" / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"config/schema/{name} is stale; run: berth config schema --out config/schema"
        )
    assert set(SCHEMA_FILES.values()) == {"service.schema.json", "app.schema.json"}


@pytest.mark.parametrize(
    ("reference", "schema"),
    [("reference.yml", settings_json_schema), ("reference-app.yml", appspec_json_schema)],
)
def test_reference_documents_every_key(reference: str, schema: Any) -> None:
    owners = _schema_paths(schema())
    text = (CONFIG / reference).read_text(encoding="utf-8")
    commented = _commented_paths(text)
    documented = _data_paths(read_yaml(CONFIG / reference).data) | commented
    missing = _undocumented(owners, documented)
    assert not missing, f"{reference} does not document: " + ", ".join(missing)
    # And nothing commented out is a key the schema does not know (a stale reference).
    unknown = [c for c in commented if not any(_matches(p, c) for p in owners)]
    assert not unknown, f"{reference} documents unknown keys: " + ", ".join(
        "/".join(p) for p in unknown
    )


def test_reference_check_notices_an_undocumented_key() -> None:
    schema = {
        "properties": {"a": {"type": "string"}, "b": {"$ref": "#/$defs/B"}},
        "$defs": {"B": {"properties": {"c": {"type": "integer"}, "d": {"type": "integer"}}}},
    }
    owners = _schema_paths(schema)
    assert sorted(owners) == [("a",), ("b",), ("b", "c"), ("b", "d")]
    documented = _data_paths({"a": 1, "b": {"c": 2}}) | _commented_paths("b:\n  #   x: 1\n")
    assert _undocumented(owners, documented) == ["b/d"]
    assert _commented_paths("b:\n  # c: 1\n#   d: 2\n") == {("b", "c"), ("b", "d")}


def _undocumented(
    owners: dict[KeyPath, tuple[str, str] | None], documented: set[KeyPath]
) -> list[str]:
    """Schema paths nobody documents. A key of a shared definition (a secret source's
    env and file) counts as documented once it is documented at any of its places."""
    done = {p for p in owners if any(_matches(p, d) for d in documented)}
    done_in_defs = {owners[p] for p in done if owners[p] is not None}
    return [
        "/".join(p)
        for p in sorted(owners)
        if p not in done and (owners[p] is None or owners[p] not in done_in_defs)
    ]


# --- key paths ---------------------------------------------------------------------


def _schema_paths(schema: dict[str, Any]) -> dict[KeyPath, tuple[str, str] | None]:
    """Every key path the schema allows (``*``: a key of a free-form mapping), with the
    (definition, key) it comes from, or None for the top-level properties."""
    defs: dict[str, Any] = schema.get("$defs", {})
    found: dict[KeyPath, tuple[str, str] | None] = {}

    def walk(node: dict[str, Any], path: KeyPath, owner: str | None, seen: frozenset[str]) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(defs[name], path, name, seen | {name})
            return
        for union in ("anyOf", "oneOf", "allOf"):
            for option in node.get(union, []):
                walk(option, path, owner, seen)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path, owner, seen)
        for key, child in node.get("properties", {}).items():
            found[(*path, key)] = None if owner is None else (owner, key)
            walk(child, (*path, key), owner, seen)
        if isinstance(node.get("additionalProperties"), dict):
            found[(*path, "*")] = None if owner is None else (owner, "*")
            walk(node["additionalProperties"], (*path, "*"), owner, seen)

    walk(schema, (), None, frozenset())
    return found


def _data_paths(data: object, path: KeyPath = ()) -> set[KeyPath]:
    found: set[KeyPath] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            found.add((*path, str(key)))
            found |= _data_paths(value, (*path, str(key)))
    elif isinstance(data, list):
        for item in data:
            found |= _data_paths(item, path)
    return found


_ACTIVE_KEY = re.compile(r"^( *)(- )?([A-Za-z_][\w.-]*|\"[^\"]+\"):(\s|$)")
_COMMENTED_KEY = re.compile(r"^( *)#( +)(- )?([a-z_][a-z0-9_]*):(\s|$)")


def _commented_paths(text: str) -> set[KeyPath]:
    """Key paths of commented-out keys (``  # url: ...``), placed by indentation among
    the active keys around them."""
    found: set[KeyPath] = set()
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        commented = _COMMENTED_KEY.match(line)
        active = _ACTIVE_KEY.match(line)
        if commented:
            # "  # key:" and "#   key:" both put the key where it would be uncommented.
            indent = len(commented.group(1)) + len(commented.group(2)) - 1
            dash, key = commented.group(3), commented.group(4)
        elif active:
            indent, dash, key = len(active.group(1)), active.group(2), active.group(3).strip('"')
        else:
            continue
        indent += 2 if dash else 0
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if commented:
            found.add(tuple(k for _, k in stack))
    return found


def _matches(schema_path: KeyPath, path: KeyPath) -> bool:
    return len(schema_path) == len(path) and all(
        s == "*" or s == p for s, p in zip(schema_path, path, strict=True)
    )


def test_schema_files_are_json_with_a_draft() -> None:
    for name in SCHEMA_FILES.values():
        schema = json.loads((CONFIG / "schema" / name).read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
