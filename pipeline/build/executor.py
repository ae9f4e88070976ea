"""Runs a :class:`~pipeline.build.plan.BuildPlan`: stage by stage, step by step, cached.

Each step gets a key: the previous step's key (the chain starts at the base image's
manifest digest), the instruction after expansion, and for COPY/ADD the hash of what
it reads. A key already in the cache reuses its layer without running anything; a
miss runs the step, writes its layer blob, and records the key only once the blob is
complete. The final image (config + manifest) lands in the cache's image store, tagged
with the reference asked for; pushing and exporting happen afterwards, from there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline.build.cache import BuildCache, CachedLayer
from pipeline.build.context import SourceTree, content_hash, source_identities
from pipeline.build.copy import CopyRequest, copy_entries, select_all
from pipeline.build.errors import BuildError, DockerfileError, StepFailed
from pipeline.build.expand import ExpansionError, expand_heredoc
from pipeline.build.images import ImageResolver
from pipeline.build.imagestate import (
    ImageState,
    apply_meta,
    command_of,
    config_document,
    declare_args,
    expand_word,
    initial_state,
    join_workdir,
)
from pipeline.build.lowers import (
    LayerIndex,
    LowerView,
    Prefetcher,
    layer_members,
    member_digests,
    view_of,
)
from pipeline.build.plan import META_INSTRUCTIONS, BuildPlan, Instruction, Stage, check_source_path
from pipeline.build.run import ContainerRunner, RunRequest, run_step
from runners.errors import RuntimeFailure
from runners.oci import mediatypes
from runners.oci.digest import Digest
from runners.oci.layer import LayerEntry, LayerWriter, tree_entries
from runners.oci.manifest import Descriptor, ImageManifest, build_manifest

SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CREATED_ANNOTATION = "org.opencontainers.image.created"


@dataclass(frozen=True)
class BuildOptions:
    """How to build: args, target, cache use, RUN limits, reproducibility inputs."""

    build_args: dict[str, str] = field(default_factory=dict, hash=False)
    target: str | None = None
    no_cache: bool = False
    host_network: bool = False
    run_timeout: float = 3600.0
    source_date_epoch: int = 0
    source: str | None = None
    revision: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class StepReport:
    """What happened to one step, for progress output and ``--json``."""

    stage: str
    line: int
    instruction: str
    state: str  # "cached" | "built" | "config"
    layer: Digest | None = None
    size: int = 0


@dataclass(frozen=True)
class BuildResult:
    """The built image: manifest digest, its descriptor in the store, and the steps."""

    manifest: ImageManifest
    layers: tuple[Descriptor, ...]
    steps: tuple[StepReport, ...]
    tag: str | None

    @property
    def digest(self) -> Digest:
        return self.manifest.digest

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.state == "cached")


Progress = Callable[[str, StepReport | None, str], None]
"""Called with (event, step, text): "start" before a step runs, "done" after."""


@dataclass
class _StageResult:
    state: ImageState
    layers: list[Descriptor]
    key: str


class Builder:
    """Executes build plans against one cache, resolver and container runner."""

    def __init__(
        self,
        cache: BuildCache,
        resolver: ImageResolver,
        runner: ContainerRunner | None,
        progress: Progress | None = None,
    ) -> None:
        self.cache = cache
        self.resolver = resolver
        self.runner = runner
        self.progress = progress
        self._reports: list[StepReport] = []
        # layers this build wrote with COPY: looked up in memory, unpacked in the background
        self._indexes: dict[Digest, LayerIndex] = {}
        self._prefetch = Prefetcher(cache)

    def build(self, plan: BuildPlan, context: SourceTree, options: BuildOptions) -> BuildResult:
        created = datetime.fromtimestamp(options.source_date_epoch, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        self._reports = []
        results: dict[int, _StageResult] = {}
        try:
            for stage in plan.stages:
                results[stage.index] = self._stage(stage, plan, context, options, results, created)
        finally:
            self._prefetch.close()
            self._indexes.clear()
        final = results[plan.target]
        config_bytes = config_document(final.state, created)
        config_digest = self.cache.images.write_blob(config_bytes)
        annotations = {CREATED_ANNOTATION: created}
        if options.source:
            annotations[SOURCE_ANNOTATION] = options.source
        if options.revision:
            annotations[REVISION_ANNOTATION] = options.revision
        manifest = build_manifest(
            Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config_bytes)),
            final.layers,
            annotations=annotations,
        )
        self.cache.images.write_blob(manifest.raw)
        descriptor = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        self.cache.images.add_manifest(descriptor, options.tag)
        return BuildResult(manifest, tuple(final.layers), tuple(self._reports), options.tag)

    # stages

    def _stage(
        self,
        stage: Stage,
        plan: BuildPlan,
        context: SourceTree,
        options: BuildOptions,
        results: dict[int, _StageResult],
        created: str,
    ) -> _StageResult:
        if stage.base_stage is not None:
            parent = results[stage.base_stage]
            current = _StageResult(replace(parent.state, args=()), list(parent.layers), parent.key)
        elif stage.base.lower() == "scratch":
            current = _StageResult(initial_state(None), [], _hash("scratch"))
        else:
            self._emit("start", None, f"FROM {stage.base}")
            base = self.resolver.resolve(stage.base)
            current = _StageResult(
                initial_state(base.config),
                list(base.layers),
                _hash(f"image {base.manifest.digest}"),
            )
            for layer in base.layers:  # the first RUN needs them; nothing if unpacked
                self._prefetch.submit(layer)
        view: list[LowerView | None] = [None]  # unpacked lazily, only when a step runs

        def lower() -> LowerView:
            found = view[0]
            if found is None:
                found = view[0] = view_of(self.cache, current.layers, self._indexes)
            return found

        for step in stage.steps:
            keyword = step.keyword
            if keyword == "ARG":
                current.state = declare_args(
                    current.state, step, plan.build_args, plan.global_args, plan.source, plan.escape
                )
                current.key = _hash(current.key, "ARG", json.dumps(current.state.args))
                continue
            if keyword in META_INSTRUCTIONS:
                current.state = apply_meta(current.state, step, plan.source, plan.escape)
                current.state = current.state.with_empty(step.text, created)
                current.key = _hash(current.key, step.original, json.dumps(current.state.env))
                self._report(stage, step, "config", None, 0)
                continue
            if keyword == "RUN":
                self._run(stage, step, plan, current, options, lower, created)
            else:
                self._copy(stage, step, plan, context, current, options, lower, results, created)
            view[0] = None
        return current

    # RUN

    def _run(
        self,
        stage: Stage,
        step: Instruction,
        plan: BuildPlan,
        current: _StageResult,
        options: BuildOptions,
        lower: Callable[[], LowerView],
        created: str,
    ) -> None:
        argv = _run_argv(current.state, step)
        network = step.flags.get("network", "default")
        host_network = network == "host" or (network == "default" and options.host_network)
        env = current.state.run_env()
        key = _hash(
            current.key,
            "RUN",
            json.dumps([argv, sorted(env.items()), current.state.workdir, current.state.user]),
            "host" if host_network else "none",
        )
        if self._reuse(stage, step, current, key, options, created):
            return
        self._emit("start", None, f"{stage.label} {step.text}")
        view = lower()
        request = RunRequest(
            argv=argv,
            env=env,
            cwd=current.state.workdir or "/",
            user=current.state.user,
            host_network=host_network,
            timeout=options.run_timeout,
        )
        workspace = self.cache.scratch("run-")
        try:
            if self.runner is None:
                from pipeline.build.run import RuncRunner

                self.runner = RuncRunner()
            try:
                outcome, upper = run_step(
                    self.runner,
                    request,
                    self._prefetch.unpacked(current.layers),
                    workspace,
                    passwd=view.read_text("etc/passwd"),
                    group=view.read_text("etc/group"),
                )
            except RuntimeFailure as exc:
                raise BuildError(f"{plan.source}:{step.line}: {step.text}: {exc}") from exc
            if outcome.exit_code != 0:
                raise StepFailed(
                    plan.source,
                    step.line,
                    " ".join(step.args),
                    outcome.exit_code,
                    outcome.output_tail,
                )
            layer = self._write(
                tree_entries(upper, epoch=options.source_date_epoch, overlay_whiteouts=True)
            )
        finally:
            self.cache.release_scratch(workspace)
        self._add(stage, step, current, key, layer, created, cached=False)

    # COPY / ADD

    def _copy(
        self,
        stage: Stage,
        step: Instruction,
        plan: BuildPlan,
        context: SourceTree,
        current: _StageResult,
        options: BuildOptions,
        lower: Callable[[], LowerView],
        results: dict[int, _StageResult],
        created: str,
    ) -> None:
        state = current.state

        def word(text: str) -> str:
            return expand_word(text, state, step, plan.source, plan.escape)

        words = [word(w) if not w.startswith("<<") else w for w in step.args]
        heredocs = _copy_heredocs(step, state, plan.source, plan.escape)
        sources, dest = words[:-1], words[-1]
        if not dest.startswith("/"):
            trailing = dest.endswith("/") or dest in (".", "./")
            dest = join_workdir(state.workdir, dest) + ("/" if trailing else "")
        tree = context
        origin = step.flags.get("from")
        mount_cleanup: Callable[[], None] | None = None
        if origin is None:
            for source in sources:
                if not source.startswith("<<"):
                    check_source_path(source, plan.source, step.line)
        else:
            tree, mount_cleanup = self._origin_tree(origin, plan, results, step)
        try:
            chown = step.flags.get("chown")
            chmod_text = step.flags.get("chmod")
            chmod = None
            if chmod_text is not None:
                try:
                    chmod = int(word(chmod_text), 8)
                except ValueError:
                    raise DockerfileError(
                        plan.source, step.line, f"--chmod={chmod_text}: not an octal mode"
                    ) from None
            try:
                selections = select_all(
                    tree, _request(sources, dest, None, None, chmod, step, heredocs)
                )
            except BuildError as exc:
                raise DockerfileError(
                    plan.source, step.line, f"{exc} (in the build context)"
                ) from exc
            file_digests: dict[Path, bytes] = {}
            digest = content_hash(tree, selections, file_digests)
            instruction = json.dumps([words, dest, dict(step.flags), heredocs])
            key = _hash(current.key, "COPY", instruction, digest)
            if self._reuse(stage, step, current, key, options, created):
                return
            self._emit("start", None, f"{stage.label} {step.text}")
            view = lower()
            uid = gid = None
            if chown is not None:
                from runners.runtime.users import UserError, resolve_user

                try:
                    user = resolve_user(
                        word(chown), view.read_text("etc/passwd"), view.read_text("etc/group")
                    )
                except UserError as exc:
                    raise DockerfileError(plan.source, step.line, str(exc)) from exc
                uid, gid = user.uid, user.gid
            request = _request(sources, dest, uid, gid, chmod, step, heredocs)
            try:
                entries = copy_entries(
                    tree, selections, request, view.lstat, options.source_date_epoch
                )
            except BuildError as exc:
                raise DockerfileError(plan.source, step.line, str(exc)) from exc
            # The layer is a function of its entries and the bytes they read: when a step
            # below changed but this COPY would write the same tar, its blob is reused
            # (the step still counts as rebuilt; only the writing is skipped).
            memo = layer_memo_key(digest, entries)
            layer = None if memo is None or options.no_cache else self.cache.lookup(memo)
            index = LayerIndex.from_entries(entries) if origin is None else None
            identities = source_identities(tree, selections)
            if layer is None:
                # The next RUN needs this layer's directory: it is written from the same
                # entries on another thread while the blob is (not unpacked from it).
                members = layer_members(entries, identities) if index is not None else None
                blob: Future[Digest] = Future()
                if members is not None:
                    # unchanged files are linked from what this COPY wrote last time
                    self._prefetch.write(
                        members,
                        blob,
                        digests=member_digests(members, entries, file_digests),
                        donor_key=_hash("COPY donor", instruction),
                    )
                try:
                    layer = self._write(entries, identities)
                except BaseException as exc:
                    blob.set_exception(exc)
                    raise
                blob.set_result(layer.digest)
                if memo is not None:
                    self.cache.record(memo, layer)
            elif index is not None:
                self._prefetch.submit(Descriptor(layer.media_type, layer.digest, layer.size))
            if index is not None:
                # the next COPY looks here instead of in the unpacked directory
                self._indexes[layer.digest] = index
        finally:
            if mount_cleanup is not None:
                mount_cleanup()
        self._add(stage, step, current, key, layer, created, cached=False)

    def _origin_tree(
        self, origin: str, plan: BuildPlan, results: dict[int, _StageResult], step: Instruction
    ) -> tuple[SourceTree, Callable[[], None]]:
        names = {s.name: s.index for s in plan.stages if s.name}
        index = names.get(origin.lower())
        if index is None and origin.isdigit():
            index = int(origin)
        if index is not None:
            if index not in results:
                raise DockerfileError(
                    plan.source, step.line, f"COPY --from={origin}: stage not built"
                )
            layers = results[index].layers
        else:
            layers = list(self.resolver.resolve(origin).layers)
        dirs = self._prefetch.unpacked(layers)
        if len(dirs) == 1:
            return SourceTree(dirs[0]), lambda: None
        from runners.runtime.rootfs import mount_rootfs, unmount_rootfs

        workspace = self.cache.scratch("from-")
        upper, work, root = workspace / "upper", workspace / "work", workspace / "rootfs"
        for directory in (upper, work, root):
            directory.mkdir()
        if not dirs:
            return SourceTree(root), lambda: self.cache.release_scratch(workspace)
        mount_rootfs(list(reversed(dirs)), upper, work, root)

        def cleanup() -> None:
            unmount_rootfs(root)
            self.cache.release_scratch(workspace)

        return SourceTree(root), cleanup

    # layers and reports

    def _reuse(
        self,
        stage: Stage,
        step: Instruction,
        current: _StageResult,
        key: str,
        options: BuildOptions,
        created: str,
    ) -> bool:
        if options.no_cache:
            return False
        layer = self.cache.lookup(key)
        if layer is None:
            return False
        self._add(stage, step, current, key, layer, created, cached=True)
        return True

    def _write(
        self,
        entries: Iterable[LayerEntry],
        expected: Mapping[Path, tuple[int, int, int]] | None = None,
    ) -> CachedLayer:
        with self.cache.new_blob() as (path, keep), path.open("wb") as out:
            writer = LayerWriter(out, expected)
            for entry in entries:
                writer.add(entry)
            digests = writer.finish()
            out.flush()
            keep.append(digests.digest)
        return CachedLayer(digests.digest, digests.size, digests.diff_id, mediatypes.OCI_LAYER_GZIP)

    def _add(
        self,
        stage: Stage,
        step: Instruction,
        current: _StageResult,
        key: str,
        layer: CachedLayer,
        created: str,
        *,
        cached: bool,
    ) -> None:
        if not cached:
            self.cache.record(key, layer)
        current.layers.append(Descriptor(layer.media_type, layer.digest, layer.size))
        current.state = current.state.with_layer(layer.diff_id, step.text, created)
        current.key = key
        self._report(stage, step, "cached" if cached else "built", layer.digest, layer.size)

    def _report(
        self, stage: Stage, step: Instruction, state: str, layer: Digest | None, size: int
    ) -> None:
        report = StepReport(stage.label, step.line, step.text, state, layer, size)
        self._reports.append(report)
        self._emit("done", report, step.text)

    def _emit(self, event: str, report: StepReport | None, text: str) -> None:
        if self.progress is not None:
            self.progress(event, report, text)


def _request(
    sources: list[str],
    dest: str,
    uid: int | None,
    gid: int | None,
    chmod: int | None,
    step: Instruction,
    heredocs: tuple[tuple[str, str], ...],
) -> CopyRequest:
    return CopyRequest(
        sources=tuple(sources),
        dest=dest,
        uid=uid,
        gid=gid,
        chmod=chmod,
        extract_archives=step.keyword == "ADD",
        heredocs=heredocs,
    )


def _copy_heredocs(
    step: Instruction, state: ImageState, source: str, escape: str
) -> tuple[tuple[str, str], ...]:
    """(name, content) of each ``<<NAME`` of a COPY, as BuildKit writes the file.

    ``<<-NAME`` strips leading tabs; an unquoted NAME expands variables in the body
    (``<<"NAME"``/``<<'NAME'`` keep it literal).
    """
    if step.keyword != "COPY":
        return ()
    words = [w for w in step.args if w.startswith("<<")]
    found = []
    for heredoc, word in zip(step.heredocs, words, strict=False):
        spec = word[2:]
        chomp = spec.startswith("-")
        spec = spec[1:] if chomp else spec
        content = heredoc.content
        if chomp:
            content = "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))
        if not spec.startswith(("'", '"')):
            try:
                content = expand_heredoc(content, state.variables(), escape)
            except ExpansionError as exc:
                raise DockerfileError(source, step.line, f"<<{heredoc.name}: {exc}") from exc
        found.append((heredoc.name, content))
    return tuple(found)


def _run_argv(state: ImageState, step: Instruction) -> tuple[str, ...]:
    if step.json_form:
        return tuple(step.args)
    if step.heredocs:
        command = " ".join(step.args).strip()
        first = step.heredocs[0]
        if command in (f"<<{first.name}", f"<<-{first.name}") and len(step.heredocs) == 1:
            return (*state.shell, first.content)
        script = command + "\n" + "".join(f"{h.content}{h.name}\n" for h in step.heredocs)
        return (*state.shell, script)
    return command_of(state, step)


def layer_memo_key(content: str, entries: Sequence[LayerEntry]) -> str | None:
    """A key for the tar that ``entries`` make, given ``content``, the hash of the bytes
    their sources hold (:func:`~pipeline.build.context.content_hash`).

    Every field that reaches the tar is in it; the writer is deterministic, so equal keys
    mean equal blobs. None when an entry streams from a reader (archive members), whose
    bytes the content hash covers only indirectly.
    """
    rows = []
    for entry in entries:
        if entry.reader is not None:
            return None
        data = hashlib.sha256(entry.data).hexdigest() if entry.data is not None else ""
        xattrs = sorted((name, value.hex()) for name, value in entry.xattrs.items())
        rows.append(
            [entry.name, entry.kind.value, entry.mode, entry.uid, entry.gid, entry.mtime,
             entry.size, entry.linkname, data, xattrs]
        )  # fmt: skip
    return _hash("layer", content, json.dumps(rows))


def _hash(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()
