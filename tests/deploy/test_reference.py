"""The generated manual: berth docs config / cli, and the copies in deploy/reference/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pipeline.appspec import appspec_json_schema
from pipeline.cli.docs import (
    KeyRow,
    cli_reference,
    current_cli_reference,
    current_config_reference,
    docs,
    schema_rows,
    type_text,
)
from pipeline.cli.main import COMMANDS
from pipeline.settings import settings_json_schema

pytestmark = pytest.mark.unit

REFERENCE = Path(__file__).resolve().parents[2] / "deploy" / "reference"
REGENERATE = "regenerate it: berth docs {what} --out deploy/reference/{what}.md"


def test_config_reference_matches_the_schemas() -> None:
    stored = (REFERENCE / "config.md").read_text(encoding="utf-8")
    assert stored == current_config_reference(), REGENERATE.format(what="config")


def test_cli_reference_matches_the_commands() -> None:
    stored = (REFERENCE / "cli.md").read_text(encoding="utf-8")
    assert stored == current_cli_reference(), REGENERATE.format(what="cli")


def _leaf_keys(schema: dict[str, Any]) -> set[str]:
    """Every property name anywhere in the schema, its definitions included."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.get("properties", {}).items():
                names.add(key)
                walk(value)
            for key, value in node.items():
                if key != "properties":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return names


@pytest.mark.parametrize("schema", [settings_json_schema(), appspec_json_schema()])
def test_every_key_of_the_schemas_is_documented(schema: dict[str, Any]) -> None:
    documented = {row.path.rsplit(".", 1)[-1].removesuffix("[]") for row in schema_rows(schema)}
    assert _leaf_keys(schema) - documented == set()


def test_every_command_has_a_section() -> None:
    text = current_cli_reference()
    for name in COMMANDS:
        assert f"## `berth {name}`" in text
    # sub-commands of lazy groups are walked too
    assert "#### `berth cluster up`" in text
    assert "| `--hosts INTEGER` |" in text


SCHEMA: dict[str, Any] = {
    "$defs": {
        "Source": {
            "properties": {
                "env": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            },
            "description": "Where a value is.",
            "type": "object",
        },
        "Step": {
            "properties": {"weight": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["weight"],
            "type": "object",
        },
    },
    "properties": {
        "name": {"type": "string", "description": "A name | with a bar."},
        "secret": {"$ref": "#/$defs/Source", "description": "The secret."},
        "secrets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Source"}},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "default": []},
        "every": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"},
        "gate": {"enum": ["none", "perf"], "default": "none"},
    },
    "required": ["name"],
    "type": "object",
}


def test_schema_rows_follow_refs_lists_and_maps() -> None:
    rows = {row.path: row for row in schema_rows(SCHEMA)}
    assert list(rows) == [
        "name",
        "secret",
        "secret.env",
        "secrets",
        "secrets.NAME.env",
        "steps",
        "steps[].weight",
        "every",
        "gate",
    ]
    assert rows["name"] == KeyRow("name", "string", "required", "A name | with a bar.")
    # the field's own description wins over its definition's
    assert rows["secret"].description == "The secret."
    assert rows["secret.env"] == KeyRow("secret.env", "string", "none", "")
    assert rows["steps"].type == "list of mapping"
    assert rows["steps[].weight"].type == "integer (≥ 0, ≤ 100)"
    assert rows["steps[].weight"].default == "required"
    assert rows["secrets"].type == "mapping of names to mapping"
    assert rows["every"].type.startswith("duration")
    assert rows["gate"].type == 'one of `"none"`, `"perf"`'
    assert rows["gate"].default == '`"none"`'


def test_type_text_of_alternatives_drops_null() -> None:
    node = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    assert type_text(node, {}) == "string or integer"


def test_cli_reference_of_a_small_tree() -> None:
    @click.group()
    def tool() -> None:
        """A tool.

        \b
        Second paragraph.
        """

    @tool.command()
    @click.argument("name")
    @click.option("--count", type=int, default=3, show_default=True, help="How many.")
    @click.option("--secret", hidden=True)
    def greet(name: str, count: int, secret: str | None) -> None:
        """Greet NAME.\f

        Internal notes after the form feed.
        """

    text = cli_reference(tool, "tool")
    assert "## `tool`" in text
    assert "A tool.\n\nSecond paragraph." in text
    assert "### `tool greet`" in text
    assert "```\ntool greet [OPTIONS] NAME\n```" in text
    assert "| `--count INTEGER` | How many.  [default: 3] |" in text
    assert "--secret" not in text
    assert "Internal notes" not in text


def test_docs_commands_print_and_write(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(docs, ["config"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == current_config_reference()
    out = tmp_path / "manual" / "cli.md"
    written = runner.invoke(docs, ["cli", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == current_cli_reference()


def test_the_schema_files_render_like_the_models() -> None:
    # deploy/reference/config.md comes from the models; config/schema/ must say the same
    root = Path(__file__).resolve().parents[2]
    stored = json.loads((root / "config" / "schema" / "service.schema.json").read_text())
    assert schema_rows(stored) == schema_rows(settings_json_schema())
