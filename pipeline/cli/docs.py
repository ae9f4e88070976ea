"""``berth docs``: the reference manual, generated so it cannot drift from the code.

``berth docs config`` renders the JSON Schemas of the service config and the app spec
(the ones ``berth config schema`` writes) as Markdown: one row per key path, with its
type, default and description. ``berth docs cli`` walks the click command tree, the lazy
commands of :data:`pipeline.cli.main.COMMANDS` included, and renders every command's
usage, help and options exactly as ``--help`` shows them.

The renderers are pure (a schema or a command in, Markdown out); the commands only
print or write files. The copies in ``deploy/reference/`` are regenerated with
``berth docs config --out deploy/reference/config.md`` and
``berth docs cli --out deploy/reference/cli.md``; a test fails when they differ.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pipeline import units
from pipeline.errors import BerthError

Schema = Mapping[str, Any]

CONFIG_INTRO = """\
# berth configuration reference

Generated from the JSON Schemas of the service config and the app spec by
`berth docs config` (the schemas themselves are written by `berth config schema`).
Do not edit it by hand: change the models, then regenerate.

A fully commented example of the service config is `config/reference.yml`; check any
file with `berth config check FILE` (and an app spec with `--app PATH/berth.yml`).
Key paths read as follows: `a.b` is key `b` inside mapping `a`, `a[].b` is key `b` of
each item of list `a`, and `a.NAME.b` is key `b` under any name chosen in mapping `a`.
"""

CLI_INTRO = """\
# berth command-line reference

Generated from the command tree by `berth docs cli`; every section is what
`berth COMMAND --help` prints. Exit codes: 0 success, 1 a berth error (the message says
what to do), 2 a usage error.
"""


# --- the service config and the app spec ----------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One documented key: its path, type, default (or "required") and description."""

    path: str
    type: str
    default: str
    description: str


def _resolve(node: Schema, defs: Schema) -> Schema:
    """``node`` with a ``$ref`` replaced by its definition; the node's own words win."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    name = ref.rsplit("/", 1)[-1]
    if name not in defs:
        raise BerthError(f"schema: {ref} names no definition in $defs (regenerate the schema)")
    return {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}


def _alternatives(node: Schema) -> list[Schema]:
    """The non-null alternatives of an ``anyOf``/``oneOf`` (or the node itself)."""
    options = node.get("anyOf") or node.get("oneOf")
    if not options:
        return [node]
    return [o for o in options if o.get("type") != "null"]


# The unit patterns of pipeline.units, named the way config/reference.yml explains them.
_PATTERN_NAMES = {
    units.DURATION_PATTERN: "duration (`500ms`, `90s`, `1h30m`)",
    units.PERCENT_PATTERN: "percentage (`5%`)",
    units.SIZE_PATTERN: "size (`64Mi`, `1G`)",
}


def type_text(node: Schema, defs: Schema) -> str:
    """A reader's name for the type a schema node accepts."""
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    alternatives = _alternatives(node)
    if len(alternatives) > 1 or alternatives[0] is not node:
        return " or ".join(dict.fromkeys(type_text(a, defs) for a in alternatives))
    if "$ref" in node:
        return "mapping"
    kind = node.get("type")
    named = _PATTERN_NAMES.get(str(node.get("pattern")))
    if named:
        return named
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind if k != "null")
    if kind == "array":
        items = node.get("items")
        return f"list of {type_text(items, defs)}" if isinstance(items, Mapping) else "list"
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, Mapping):
            return f"mapping of names to {type_text(values, defs)}"
        return "mapping"
    if kind == "string":
        if node.get("format") == "path":
            return "path"
        if "pattern" in node:
            return f"string matching `{node['pattern']}`"
    if kind == "integer" or kind == "number":
        bounds = [
            f"≥ {node['minimum']}" if "minimum" in node else "",
            f"> {node['exclusiveMinimum']}" if "exclusiveMinimum" in node else "",
            f"≤ {node['maximum']}" if "maximum" in node else "",
        ]
        shown = ", ".join(b for b in bounds if b)
        return f"{kind} ({shown})" if shown else str(kind)
    return str(kind) if kind else "any"


def _default_text(node: Schema, required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        return ""
    default = node["default"]
    if default is None or default == [] or default == {}:
        return "none"
    return f"`{json.dumps(default)}`"


def _children(node: Schema, path: str, defs: Schema) -> Iterator[tuple[str, Schema]]:
    """(prefix, object schema) pairs whose properties document the keys below ``path``."""
    for alternative in _alternatives(node):
        target = _resolve(alternative, defs)
        if "properties" in target:
            yield f"{path}.", target
        elif target.get("type") == "array" and isinstance(target.get("items"), Mapping):
            yield from _children(target["items"], f"{path}[]", defs)
        elif isinstance(target.get("additionalProperties"), Mapping):
            yield from _children(target["additionalProperties"], f"{path}.NAME", defs)


def schema_rows(schema: Schema) -> list[KeyRow]:
    """Every key path of ``schema``, depth first in the schema's own key order."""
    defs: Schema = schema.get("$defs", {})
    rows: list[KeyRow] = []

    def walk(obj: Schema, prefix: str, seen: tuple[int, ...]) -> None:
        required = set(obj.get("required", ()))
        for key, raw in obj.get("properties", {}).items():
            node = _resolve(raw, defs)
            path = f"{prefix}{key}"
            description = " ".join(str(node.get("description", "")).split())
            rows.append(
                KeyRow(path, type_text(raw, defs), _default_text(raw, key in required), description)
            )
            for child_prefix, child in _children(raw, path, defs):
                # a recursive definition is documented once, where it first appears
                if id(child) not in seen or not child.get("properties"):
                    walk(child, child_prefix.removeprefix("."), (*seen, id(child)))

    walk(schema, "", ())
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def schema_markdown(schema: Schema, level: int = 2) -> str:
    """One document's reference: a heading per top-level key, a table of its key paths."""
    heading = "#" * level
    lines = [f"{heading} {schema.get('title', 'document')}", ""]
    if schema.get("description"):
        lines += [str(schema["description"]), ""]
    rows = schema_rows(schema)
    groups: dict[str, list[KeyRow]] = {}
    for row in rows:
        top = row.path.split(".", 1)[0].split("[", 1)[0]
        groups.setdefault(top, []).append(row)
    for top, members in groups.items():
        lines += [f"{heading}# `{top}`", "", "| key | type | default | description |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| `{r.path}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.description)} |"
            for r in members
        ]
        lines.append("")
    return "\n".join(lines)


def config_reference(service: Schema, app: Schema) -> str:
    """The whole configuration reference: the service config, then the app spec."""
    return "\n".join([CONFIG_INTRO, schema_markdown(service), schema_markdown(app)]).rstrip() + "\n"


def current_config_reference() -> str:
    """:func:`config_reference` of the schemas the installed berth generates."""
    from pipeline.appspec import appspec_json_schema
    from pipeline.settings import settings_json_schema

    return config_reference(settings_json_schema(), appspec_json_schema())


# --- the command line ------------------------------------------------------------------


def _help_text(command: click.Command) -> str:
    text = inspect.cleandoc((command.help or "").split("\f", 1)[0])
    # click's "\b" marks a paragraph not to rewrap; Markdown needs no marker for that
    lines = [line for line in text.splitlines() if line.strip() != "\b"]
    return "\n".join(lines).strip()


def _subcommands(ctx: click.Context, command: click.Command) -> list[tuple[str, click.Command]]:
    if not isinstance(command, click.Group):
        return []
    found = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            found.append((name, sub))
    return found


def command_markdown(ctx: click.Context, level: int) -> list[str]:
    """The section of ``ctx.command`` and, below it, of each of its sub-commands."""
    command = ctx.command
    title = ctx.command_path
    lines = [f"{'#' * min(level, 6)} `{title}`", ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```", f"{title} {usage}".rstrip(), "```", ""]
    help_text = _help_text(command)
    if help_text:
        lines += [help_text, ""]
    records = [
        record
        for param in command.params
        if (record := param.get_help_record(ctx)) is not None
        # an argument without help says no more than the usage line
        and (isinstance(param, click.Option) or record[1].strip())
    ]
    # not command.get_help_option(ctx): click caches it on the command, with the option
    # names of whichever context asked first, and the manual must not depend on that
    if command.add_help_option and ctx.help_option_names:
        records.append((", ".join(ctx.help_option_names), "Show this message and exit."))
    if records:
        lines += ["| option | description |", "|---|---|"]
        lines += [f"| `{_cell(opts)}` | {_cell(text)} |" for opts, text in records]
        lines.append("")
    subs = _subcommands(ctx, command)
    if subs and level > 2:
        lines += ["Commands: " + ", ".join(f"`{name}`" for name, _ in subs), ""]
    for name, sub in subs:
        with click.Context(sub, info_name=name, parent=ctx, **sub.context_settings) as sub_ctx:
            lines += command_markdown(sub_ctx, level + 1)
    return lines


def cli_reference(root: click.Command, name: str = "berth") -> str:
    """Every command of ``root``'s tree, depth first in alphabetical order."""
    # the contexts click's make_context would build, without parsing any arguments
    with click.Context(root, info_name=name, **root.context_settings) as ctx:
        body = command_markdown(ctx, 2)
    return "\n".join([CLI_INTRO, *body]).rstrip() + "\n"


def current_cli_reference() -> str:
    """:func:`cli_reference` of the ``berth`` command, every lazy command imported."""
    from pipeline.cli.main import cli

    return cli_reference(cli)


# --- the commands ------------------------------------------------------------------------


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BerthError(f"{out}: cannot write the reference: {exc.strerror}") from exc
    click.echo(f"wrote {out}", err=True)


out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the Markdown to this file instead of stdout.",
)


@click.group("docs")
def docs() -> None:
    """Generate the reference manual (Markdown) from the schemas and the CLI."""


@docs.command("config")
@out_option
def config_docs(out: Path | None) -> None:
    """The service config and app spec reference, from their JSON Schemas."""
    _write(current_config_reference(), out)


@docs.command("cli")
@out_option
def cli_docs(out: Path | None) -> None:
    """The reference of every berth command, from the command tree."""
    _write(current_cli_reference(), out)
