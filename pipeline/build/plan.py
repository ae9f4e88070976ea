"""A Dockerfile becomes a :class:`BuildPlan`: stages of typed steps, checked, nothing run.

Parsing uses BuildKit's own parser (PyPI ``dockerfile``): continuations, heredocs, JSON
forms and the escape directive behave exactly as in Docker. :func:`plan_build` is pure:
it validates every instruction and flag, resolves ``ARG``\\ s before ``FROM``, picks the
stages ``--target`` needs, and refuses what berth cannot do (``ONBUILD``, ``RUN
--mount``, ``ADD`` of a URL) naming the line, never ignoring it. Words are expanded
later (:mod:`pipeline.build.imagestate`), when the base image's environment is known.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import dockerfile  # type: ignore[import-not-found]

from pipeline.build.errors import DockerfileError
from pipeline.build.expand import ExpansionError, expand

SCRATCH = "scratch"

# Instructions that only change the image config (never a layer).
META_INSTRUCTIONS = frozenset(
    {
        "ENV",
        "LABEL",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "VOLUME",
        "CMD",
        "ENTRYPOINT",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "SHELL",
        "MAINTAINER",
    }
)
KNOWN = META_INSTRUCTIONS | {"FROM", "ARG", "RUN", "COPY", "ADD", "ONBUILD"}

_FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
_UNSUPPORTED_FLAGS = {
    ("RUN", "mount"): "RUN --mount is not supported by berth; copy what the step needs first",
    ("RUN", "security"): "RUN --security is not supported by berth",
    ("ADD", "checksum"): "ADD --checksum is only for URLs, which berth does not fetch",
    ("ADD", "keep-git-dir"): "ADD of a git repository is not supported by berth",
    ("COPY", "exclude"): "COPY --exclude is not supported by berth; use .dockerignore",
    ("COPY", "parents"): "COPY --parents is not supported by berth",
}


@dataclass(frozen=True)
class Heredoc:
    """An inline document of a RUN or COPY: ``<<NAME`` and its content."""

    name: str
    content: str


@dataclass(frozen=True)
class Instruction:
    """One parsed instruction as written: keyword, words, flags, where it is."""

    line: int
    keyword: str
    args: tuple[str, ...]
    original: str
    json_form: bool = False
    flags: Mapping[str, str] = field(default_factory=dict, hash=False)
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def text(self) -> str:
        """The instruction on one line, as progress output and history show it."""
        return " ".join(self.original.split("\n", 1)[0].split())


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and its steps; ``base`` is ``scratch``, an image reference or a stage."""

    index: int
    name: str | None
    base: str
    base_stage: int | None
    platform: str | None
    line: int
    steps: tuple[Instruction, ...]
    # ARG values (global ones redeclared in the stage and the stage's own), in order
    from_line: Instruction

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@dataclass(frozen=True)
class BuildPlan:
    """What to build: the stages needed for the target, in Dockerfile order."""

    source: str
    stages: tuple[Stage, ...]
    target: int
    build_args: Mapping[str, str]
    global_args: Mapping[str, str | None]
    escape: str = "\\"

    def stage(self, index: int) -> Stage:
        for stage in self.stages:
            if stage.index == index:
                return stage
        raise KeyError(index)


def parse_dockerfile(text: str, source: str = "Dockerfile") -> list[Instruction]:
    """The instructions of ``text``; syntax errors name their line."""
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        line = _failing_line(text)
        raise DockerfileError(source, line, f"syntax error: {exc}") from exc
    found = []
    for command in commands:
        keyword = command.cmd.upper()
        flags: dict[str, str] = {}
        for flag in command.flags:
            name, eq, value = flag.lstrip("-").partition("=")
            flags[name.lower()] = value if eq else "true"
        args = tuple(command.value)
        if command.sub_cmd:
            keyword = f"ONBUILD {command.sub_cmd.upper()}" if keyword == "ONBUILD" else keyword
        found.append(
            Instruction(
                line=command.start_line,
                keyword=keyword,
                args=args,
                original=command.original,
                json_form=bool(command.json),
                flags=flags,
                heredocs=tuple(Heredoc(h.name, h.content) for h in command.heredocs),
            )
        )
    return found


def _failing_line(text: str) -> int | None:
    """The first line at which a prefix of ``text`` stops parsing: where the error starts."""
    lines = text.splitlines(keepends=True)
    low, high = 1, len(lines)
    if high == 0:
        return None
    while low < high:
        mid = (low + high) // 2
        try:
            dockerfile.parse_string("".join(lines[:mid]))
        except dockerfile.GoParseError:
            high = mid
        else:
            low = mid + 1
    return low


def escape_of(text: str) -> str:
    """The escape character the ``# escape=`` parser directive chooses (default ``\\``)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            break
        key, eq, value = line[1:].partition("=")
        if eq and key.strip().lower() == "escape" and value.strip() in ("`", "\\"):
            return value.strip()
    return "\\"


def plan_build(
    text: str,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    context_index: Collection[str] | None = None,
    *,
    source: str = "Dockerfile",
) -> BuildPlan:
    """Parse and check ``text``; return the stages needed to build ``target`` (default: last).

    ``context_index`` (relative paths in the build context, after ``.dockerignore``)
    lets sources of ``COPY``/``ADD`` without variables be checked before anything runs.
    """
    args = dict(build_args or {})
    escape = escape_of(text)
    instructions = parse_dockerfile(text, source)
    if not instructions:
        raise DockerfileError(source, None, "no instructions; a Dockerfile starts with FROM")
    for instruction in instructions:
        _check(instruction, source)
    global_args: dict[str, str | None] = {}
    index = 0
    while index < len(instructions) and instructions[index].keyword == "ARG":
        for name, default in _arg_pairs(instructions[index], source):
            global_args[name] = _expand(
                default, _scope(global_args, args), instructions[index], source, escape
            )
        index += 1
    if index == len(instructions):
        raise DockerfileError(source, instructions[-1].line, "no FROM instruction")
    if instructions[index].keyword != "FROM":
        first = instructions[index]
        raise DockerfileError(
            source, first.line, f"{first.keyword} before the first FROM (only ARG may come first)"
        )
    stages: list[Stage] = []
    names: dict[str, int] = {}
    current: list[Instruction] = []
    head: Instruction | None = None
    for instruction in instructions[index:]:
        if instruction.keyword == "FROM":
            if head is not None:
                stages.append(
                    _stage(len(stages), head, current, names, global_args, args, source, escape)
                )
            head, current = instruction, []
        else:
            current.append(instruction)
    assert head is not None
    stages.append(_stage(len(stages), head, current, names, global_args, args, source, escape))
    for stage in stages:
        if stage.name:
            names[stage.name] = stage.index
    if target is None:
        target_index = len(stages) - 1
    elif target in names:
        target_index = names[target]
    else:
        known = ", ".join(sorted(names)) or "none (name stages with FROM … AS NAME)"
        raise DockerfileError(
            source, None, f"target stage {target!r} is not defined; stages: {known}"
        )
    needed = _needed(stages, target_index, names, source)
    chosen = tuple(s for s in stages if s.index in needed)
    if context_index is not None:
        _check_sources(chosen, context_index, source)
    return BuildPlan(
        source=source,
        stages=chosen,
        target=target_index,
        build_args=args,
        global_args=global_args,
        escape=escape,
    )


def _scope(global_args: Mapping[str, str | None], build_args: Mapping[str, str]) -> dict[str, str]:
    scope = {k: v for k, v in global_args.items() if v is not None}
    for name in global_args:
        if name in build_args:
            scope[name] = build_args[name]
    return scope


def _expand(
    word: str | None, env: Mapping[str, str], instruction: Instruction, source: str, escape: str
) -> str | None:
    if word is None:
        return None
    try:
        return expand(word, env, escape)
    except ExpansionError as exc:
        raise DockerfileError(source, instruction.line, str(exc)) from exc


def arg_pairs(instruction: Instruction) -> list[tuple[str, str | None]]:
    """``ARG A B=2`` as ``[("A", None), ("B", "2")]`` (defaults not yet expanded)."""
    pairs = []
    for word in instruction.args:
        name, eq, default = word.partition("=")
        pairs.append((name, default if eq else None))
    return pairs


def _arg_pairs(instruction: Instruction, source: str) -> list[tuple[str, str | None]]:
    pairs = arg_pairs(instruction)
    for name, _ in pairs:
        if (
            not name
            or not (name[0].isalpha() or name[0] == "_")
            or not all(c.isalnum() or c == "_" for c in name)
        ):
            raise DockerfileError(source, instruction.line, f"ARG: invalid name {name!r}")
    return pairs


def _stage(
    index: int,
    head: Instruction,
    steps: list[Instruction],
    names: dict[str, int],
    global_args: Mapping[str, str | None],
    build_args: Mapping[str, str],
    source: str,
    escape: str,
) -> Stage:
    words = list(head.args)
    name: str | None = None
    if len(words) == 3 and words[1].upper() == "AS":
        name = words[2].lower()
        words = words[:1]
    if len(words) != 1 or not words[0]:
        raise DockerfileError(source, head.line, "FROM needs one image: FROM IMAGE [AS NAME]")
    scope = _scope(global_args, build_args)
    base = _expand(words[0], scope, head, source, escape) or ""
    if not base:
        raise DockerfileError(
            source, head.line, f"FROM {words[0]}: expands to nothing (is the ARG set?)"
        )
    platform = head.flags.get("platform")
    if name is not None:
        if name in names:
            raise DockerfileError(source, head.line, f"stage name {name!r} is used twice")
        if not all(c.isalnum() or c in "_.-" for c in name):
            raise DockerfileError(source, head.line, f"invalid stage name {name!r}")
    base_stage = names.get(base.lower())
    stage = Stage(
        index=index,
        name=name,
        base=base,
        base_stage=base_stage,
        platform=_expand(platform, scope, head, source, escape) if platform else None,
        line=head.line,
        steps=tuple(steps),
        from_line=head,
    )
    if name is not None:
        names[name] = index
    return stage


def _check(instruction: Instruction, source: str) -> None:
    keyword = instruction.keyword
    line = instruction.line
    if keyword.startswith("ONBUILD"):
        raise DockerfileError(
            source, line, "ONBUILD is not supported by berth (triggers would run silently)"
        )
    if keyword not in KNOWN:
        raise DockerfileError(source, line, f"unknown instruction {keyword}")
    allowed = _FLAGS.get(keyword, frozenset())
    for flag, value in instruction.flags.items():
        problem = _UNSUPPORTED_FLAGS.get((keyword, flag))
        if problem:
            raise DockerfileError(source, line, problem)
        if flag not in allowed:
            raise DockerfileError(source, line, f"{keyword} has no flag --{flag}")
        if keyword == "RUN" and flag == "network" and value not in ("default", "none", "host"):
            raise DockerfileError(
                source, line, f"RUN --network={value}: berth knows default, none and host"
            )
    if (
        keyword != "ARG"
        and keyword not in ("CMD", "ENTRYPOINT", "RUN")
        and not any(instruction.args)
    ):
        raise DockerfileError(source, line, f"{keyword} needs arguments")
    if keyword == "RUN" and not any(instruction.args):
        raise DockerfileError(source, line, "RUN needs a command")
    if keyword in ("COPY", "ADD"):
        sources = [a for a in instruction.args if not a.startswith("<<")]
        if len(instruction.args) < 2:
            raise DockerfileError(source, line, f"{keyword} needs a source and a destination")
        if "from" not in instruction.flags:
            for word in sources[:-1]:
                check_source_path(word, source, line)
        if keyword == "ADD":
            for word in sources[:-1]:
                if "://" in word or word.startswith("git@"):
                    raise DockerfileError(
                        source,
                        line,
                        f"ADD {word}: fetching URLs is not supported by berth (builds are"
                        " offline); put the file in the build context",
                    )
    if keyword == "SHELL" and not instruction.json_form:
        raise DockerfileError(source, line, 'SHELL needs the JSON form: SHELL ["/bin/sh", "-c"]')
    if keyword == "HEALTHCHECK":
        kind = instruction.args[0].upper()
        if kind not in ("CMD", "NONE"):
            raise DockerfileError(source, line, "HEALTHCHECK needs CMD … or NONE")


def _needed(stages: list[Stage], target: int, names: Mapping[str, int], source: str) -> set[int]:
    needed: set[int] = set()
    pending = [target]
    while pending:
        index = pending.pop()
        if index in needed:
            continue
        needed.add(index)
        stage = stages[index]
        if stage.base_stage is not None:
            pending.append(stage.base_stage)
        for step in stage.steps:
            origin = step.flags.get("from") if step.keyword == "COPY" else None
            if origin is None:
                continue
            ref = names.get(origin.lower())
            if ref is None and origin.isdigit():
                ref = int(origin)
                if ref >= index:
                    raise DockerfileError(
                        source, step.line, f"COPY --from={origin}: only earlier stages can be used"
                    )
            if ref is not None:
                if ref >= index:
                    raise DockerfileError(
                        source, step.line, f"COPY --from={origin}: stage is defined later"
                    )
                pending.append(ref)
    return needed


def copy_sources(instruction: Instruction) -> tuple[list[str], str]:
    """The source words and the destination word of a COPY or ADD."""
    words = list(instruction.args)
    return words[:-1], words[-1]


def _check_sources(stages: tuple[Stage, ...], context: Collection[str], source: str) -> None:
    for stage in stages:
        for step in stage.steps:
            if step.keyword not in ("COPY", "ADD") or "from" in step.flags:
                continue
            sources, _ = copy_sources(step)
            for word in sources:
                if word.startswith("<<") or "$" in word:
                    continue
                check_source_path(word, source, step.line)
                if any(c in word for c in "*?["):
                    continue
                normal = normalize_source(word)
                if normal and normal not in context:
                    raise DockerfileError(
                        source,
                        step.line,
                        f"{step.keyword} {word}: not found in the build context"
                        " (or excluded by .dockerignore)",
                    )


def normalize_source(word: str) -> str:
    """A source path relative to the context root, without ``./`` or a trailing ``/``."""
    parts = [p for p in word.split("/") if p not in ("", ".")]
    return "/".join(parts)


def check_source_path(word: str, source: str, line: int) -> None:
    """Refuse sources that climb out of the build context (``../x``)."""
    depth = 0
    for part in word.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise DockerfileError(
                    source, line, f"COPY {word}: refers outside the build context"
                )
        elif part not in ("", "."):
            depth += 1
