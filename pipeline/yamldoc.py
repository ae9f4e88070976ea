"""One YAML document, loaded once and safely, that knows where each of its values is.

:func:`load_yaml` turns bytes into plain Python data with PyYAML's *safe* loader and
refuses, with a :class:`~pipeline.errors.ConfigError` carrying line and column where
there is one:

- files over 1 MiB (a config that large is the wrong file) and bytes that are not UTF-8;
- YAML syntax errors, several documents in one file, and tags the safe loader refuses;
- duplicate keys in one mapping (PyYAML silently keeps the last one);
- alias bombs ("billion laughs") and recursive aliases: anchors stay allowed, but the
  document may expand to at most ``max_values`` values.

The returned :class:`YamlDocument` maps a key path such as ``("run", "health", "http")``
to the line and column of that value, so every later problem can say where it is, and
renders paths for messages, naming list items by their ``name`` key
(``environments/prod/replicas`` rather than ``environments/4/replicas``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.errors import ConfigError, ConfigProblem

__all__ = [
    "MAX_BYTES",
    "MAX_VALUES",
    "KeyPath",
    "Position",
    "YamlDocument",
    "load_yaml",
    "read_yaml",
    "render_path",
]

MAX_BYTES = 1024 * 1024
MAX_VALUES = 100_000

KeyPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_EMPTY = "the file is empty; expected a YAML mapping of keys to values"
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the document."""

    line: int
    column: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Position:
        return cls(mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class YamlDocument:
    """A loaded document: its data, its source name, and where each value came from."""

    source: str
    data: object
    _values: dict[KeyPath, Position] = field(default_factory=dict, repr=False)
    _keys: dict[KeyPath, Position] = field(default_factory=dict, repr=False)

    def position(self, path: Sequence[str | int], *, key: bool = False) -> Position | None:
        """Where ``path`` is (its key with ``key=True``), else its nearest present ancestor."""
        probe = tuple(path)
        if key and probe in self._keys:
            return self._keys[probe]
        while probe:
            if probe in self._values:
                return self._values[probe]
            probe = probe[:-1]
        return self._values.get(())

    def render(self, path: Sequence[str | int]) -> str:
        """``environments/prod/replicas``: the path as a message shows it."""
        return render_path(self.data, path)

    def problem(
        self, path: Sequence[str | int], message: str, *, key: bool = False
    ) -> ConfigProblem:
        """A problem at ``path``, carrying its position."""
        where = self.position(path, key=key)
        return ConfigProblem(
            source=self.source,
            path=self.render(path),
            message=message,
            line=where.line if where else None,
            column=where.column if where else None,
        )


def render_path(data: object, path: Sequence[str | int]) -> str:
    """Join a key path with ``/``; a list item with a unique string ``name`` shows its name."""
    parts: list[str] = []
    node = data
    for step in path:
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            parts.append(_item_label(node, step))
            node = node[step]
        elif isinstance(node, dict) and step in node:
            parts.append(str(step))
            node = node[step]
        else:
            parts.append(str(step))
            node = None
    return "/".join(parts)


def _item_label(items: list[object], index: int) -> str:
    item = items[index]
    name = item.get("name") if isinstance(item, dict) else None
    if isinstance(name, str) and name and "/" not in name and not name.isdigit():
        same = [x for x in items if isinstance(x, dict) and x.get("name") == name]
        if len(same) == 1:
            return name
    return str(index)


def read_yaml(path: Path, source: str | None = None, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read and load the file at ``path``; a missing or unreadable file is a ConfigError."""
    name = source or str(path)
    try:
        with path.open("rb") as stream:
            content = stream.read(max_bytes + 1)
            size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    name, "", "no such file; check the path (or create it from the reference)"
                )
            ]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [ConfigProblem(name, "", "is a directory; give the path of a YAML file")]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(name, "", f"cannot read the file: {exc.strerror}")]
        ) from exc
    if len(content) > max_bytes:
        raise ConfigError([_too_big(name, max(size, len(content)), max_bytes)])
    return load_yaml(content, name, max_bytes=max_bytes)


def load_yaml(
    content: bytes | str,
    source: str,
    *,
    max_bytes: int = MAX_BYTES,
    max_values: int = MAX_VALUES,
) -> YamlDocument:
    """Load one YAML document (a mapping at the top) or raise ConfigError saying where."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    if len(raw) > max_bytes:
        raise ConfigError([_too_big(source, len(raw), max_bytes)])
    text = _decode(raw, source)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise ConfigError([ConfigProblem(source, "", _EMPTY)])

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([ConfigProblem(source, "", _EMPTY)])
        problems = _inspect(node, source, max_values)
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(source, exc)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(source, "", f"not valid YAML: {exc}")]) from exc
    except RecursionError:
        raise ConfigError(
            [ConfigProblem(source, "", "the document nests too deeply to be a berth config")]
        ) from None
    finally:
        loader.dispose()

    if data is None:
        raise ConfigError([ConfigProblem(source, "", _EMPTY)])
    if not isinstance(data, dict):
        where = Position.of(node.start_mark)
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    "",
                    f"the top level must be a mapping of keys to values (got {_kind(data)})",
                    where.line,
                    where.column,
                )
            ]
        )
    values, keys = _positions(node)
    return YamlDocument(source, data, values, keys)


def _too_big(source: str, size: int, limit: int) -> ConfigProblem:
    return ConfigProblem(
        source,
        "",
        f"the file has {size} bytes, more than the {limit} bytes berth reads from a config "
        "file; is this the right file?",
    )


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    "",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                    line,
                    column,
                )
            ]
        ) from None


def _syntax_problem(source: str, exc: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if "expected a single document" in str(exc.context or ""):
        problem = "holds more than one YAML document; keep one (remove the extra ---)"
    else:
        problem = f"not valid YAML: {problem}"
    if mark is None:
        return ConfigProblem(source, "", problem)
    where = Position.of(mark)
    return ConfigProblem(source, "", problem, where.line, where.column)


def _kind(data: object) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    return f"a {type(data).__name__}"


def _inspect(root: yaml.Node, source: str, max_values: int) -> list[ConfigProblem]:
    """Count values as aliases expand, refuse recursion, and find duplicate keys."""
    problems: list[ConfigProblem] = []
    seen_mappings: set[int] = set()
    count = 0
    # (node, its key path, ids of the nodes above it): an explicit stack, so that deep
    # nesting cannot overflow Python's.
    stack: list[tuple[yaml.Node, KeyPath, frozenset[int]]] = [(root, (), frozenset())]
    while stack:
        node, path, above = stack.pop()
        count += 1
        if count > max_values:
            return [
                _at(
                    source,
                    node,
                    f"the document expands to more than {max_values} values through "
                    "anchors and aliases; simplify the aliases",
                )
            ]
        if id(node) in above:
            return [
                _at(
                    source,
                    node,
                    "an alias refers to a node that contains it (a recursive alias); "
                    "remove the recursion",
                )
            ]
        inner = above | {id(node)}
        if isinstance(node, yaml.MappingNode):
            if id(node) not in seen_mappings:
                seen_mappings.add(id(node))
                problems.extend(_duplicates(node, path, source))
            for key_node, value_node in node.value:
                key = _scalar_key(key_node) if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((key_node, path, inner))
                stack.append((value_node, (*path, key), inner))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index), inner) for index, item in enumerate(node.value))
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def _at(source: str, node: yaml.Node, message: str) -> ConfigProblem:
    where = Position.of(node.start_mark)
    return ConfigProblem(source, "", message, where.line, where.column)


def _duplicates(node: yaml.MappingNode, path: KeyPath, source: str) -> list[ConfigProblem]:
    problems = []
    first: dict[tuple[str, str], yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        ident = (key_node.tag, key_node.value)
        if ident in first:
            where = Position.of(key_node.start_mark)
            problems.append(
                ConfigProblem(
                    source,
                    render_path(None, (*path, _scalar_key(key_node))),
                    f"duplicate key (on lines {first[ident].line + 1} and {where.line}); keep one",
                    where.line,
                    where.column,
                )
            )
        else:
            first[ident] = key_node.start_mark
    return problems


def _positions(root: yaml.Node) -> tuple[dict[KeyPath, Position], dict[KeyPath, Position]]:
    """Where each value (and each mapping key) starts, after merge keys were applied."""
    values: dict[KeyPath, Position] = {}
    keys: dict[KeyPath, Position] = {}
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        values[path] = Position.of(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            # After merge keys are applied a key can appear twice; the later one wins,
            # as it does in the constructed data.
            entries: dict[str | int, tuple[yaml.Node, yaml.Node]] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    entries[_scalar_key(key_node)] = (key_node, value_node)
            for key, (key_node, value_node) in entries.items():
                keys[(*path, key)] = Position.of(key_node.start_mark)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))
    return values, keys


def _scalar_key(node: yaml.ScalarNode) -> str | int:
    if node.tag == "tag:yaml.org,2002:int":
        try:
            return int(node.value)
        except ValueError:
            return str(node.value)
    return str(node.value)
