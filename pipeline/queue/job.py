"""One claimed build, start to end: fetch, read the commit's berth.yml, export the tree,
build and push the image, record the release.

Every outcome is written to the store before anything else relies on it; the store
refuses a transition the build no longer allows (it was cancelled or marked interrupted
meanwhile), and the job then drops its result instead of overwriting that decision.
"""

from __future__ import annotations

import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.appspec import AppSpec, parse_appspec
from pipeline.errors import BerthError
from pipeline.git import GitMirror
from pipeline.logs import get_logger
from pipeline.queue.builder import BuildCancelled, BuildRequest, ImageBuilder
from pipeline.queue.logs import BuildLogs
from pipeline.settings import Settings
from pipeline.store import Build, BuildState, ConflictError, Store, system_source

log = get_logger("builds")

ACTOR = "berth"
SOURCE = system_source("builder")


@dataclass(frozen=True)
class Outcome:
    """How a build ended, as the job saw it (for metrics)."""

    state: BuildState
    seconds: float
    recorded: bool
    """False when the store had already moved the build elsewhere (cancel, interrupt)."""


@dataclass(frozen=True)
class WatchedApp:
    """One app of the service config: where its commits come from."""

    name: str
    branch: str
    mirror: GitMirror
    spec_path: str = "berth.yml"


class BuildJob:
    """Runs claimed builds; shared by every worker thread."""

    def __init__(
        self,
        store: Store,
        sources: Mapping[str, WatchedApp],
        builder: ImageBuilder,
        logs: BuildLogs,
        workdir: Path,
        image_ref: Callable[[str, str], str],
        *,
        settings: Settings | None = None,
    ) -> None:
        self._store = store
        self._sources = sources
        self._builder = builder
        self.logs = logs
        self._workdir = workdir
        self._image_ref = image_ref
        self._settings = settings

    def run(self, build: Build, cancel: threading.Event) -> Outcome:
        """Build ``build`` (already claimed: running) and record how it ended."""
        started = time.monotonic()
        with self.logs.open(build.id) as stream:
            _write(stream, f"build b-{build.id}: {build.app} at {build.commit}")
            try:
                state, recorded = self._build(build, cancel, stream)
            except BuildCancelled as exc:
                _write(stream, f"cancelled: {exc}")
                state, recorded = (
                    BuildState.CANCELLED,
                    self._finish(build, BuildState.CANCELLED, str(exc)),
                )
            except BerthError as exc:
                _write(stream, f"error: {exc}")
                state, recorded = (
                    BuildState.FAILED,
                    self._finish(build, BuildState.FAILED, str(exc)),
                )
            except Exception as exc:
                # a bug, not the commit's fault: keep the traceback in the build's log
                _write(stream, "internal error (a bug in berth):\n" + traceback.format_exc())
                reason = f"internal error: {type(exc).__name__}: {exc}; see the build log"
                state, recorded = BuildState.FAILED, self._finish(build, BuildState.FAILED, reason)
            _write(stream, f"finished: {state}" + ("" if recorded else " (not recorded)"))
        return Outcome(state, time.monotonic() - started, recorded)

    def _build(
        self, build: Build, cancel: threading.Event, stream: BinaryIO
    ) -> tuple[BuildState, bool]:
        source = self._sources.get(build.app)
        if source is None:
            raise BerthError(
                f"app {build.app!r} is no longer in the service config; add it back to build it"
            )
        mirror = source.mirror
        _write(stream, f"fetching {mirror.remote.display()}")
        mirror.ensure_commit(build.commit)
        info = mirror.commit_info(build.commit)
        spec = self._spec(build, source, stream)
        directory = self._workdir / f"b-{build.id}"
        shutil.rmtree(directory, ignore_errors=True)
        try:
            mirror.export(build.commit, directory)
            _write(stream, f"exported {build.commit[:12]} (commit time {info.committed_at})")
            if cancel.is_set():
                raise BuildCancelled("cancelled before the image build started")
            request = BuildRequest(
                context=directory,
                spec=spec,
                source_date_epoch=info.committed_at,
                ref=self._image_ref(build.app, build.commit),
                revision=build.commit,
                source=mirror.remote.display(),
                cancel=cancel,
            )
            _write(stream, f"building {request.ref}")
            digest = self._builder.build(request, stream)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        _write(stream, f"image {digest}")
        try:
            with self._store.transaction() as tx:
                tx.set_build_state(build.id, BuildState.SUCCEEDED, digest=digest)
                release, _ = tx.create_release(
                    build.app,
                    build.commit,
                    digest,
                    spec.model_dump(mode="json"),
                    author=info.author[:255],
                    message=info.message,
                )
                tx.append_event(
                    ACTOR,
                    "build.succeeded",
                    source=SOURCE,
                    app=build.app,
                    detail={"build": build.id, "commit": build.commit, "digest": digest},
                )
                tx.append_event(
                    ACTOR,
                    "release.created",
                    source=SOURCE,
                    app=build.app,
                    release_id=release.id,
                    detail={"build": build.id, "commit": build.commit, "digest": digest},
                )
        except ConflictError as exc:
            _write(stream, f"result dropped: {exc}")
            return BuildState.SUCCEEDED, False
        _write(stream, f"release {release.id} recorded")
        return BuildState.SUCCEEDED, True

    def _spec(self, build: Build, source: WatchedApp, stream: BinaryIO) -> AppSpec:
        where = f"{build.app}@{build.commit[:12]}:{source.spec_path}"
        text = source.mirror.read_file(build.commit, source.spec_path)
        if text is None:
            _write(stream, f"{where}: no app spec in this commit; using the defaults")
            return AppSpec()
        return parse_appspec(text, where, settings=self._settings, app=build.app)

    def _finish(self, build: Build, state: BuildState, reason: str) -> bool:
        try:
            with self._store.transaction() as tx:
                tx.set_build_state(build.id, state, reason=reason[:10_000])
                tx.append_event(
                    ACTOR,
                    f"build.{state.value}",
                    source=SOURCE,
                    app=build.app,
                    detail={"build": build.id, "commit": build.commit, "reason": reason[:2000]},
                )
        except ConflictError as exc:
            log.info("build result dropped", extra={"fields": {"build": build.id, "why": str(exc)}})
            return False
        return True


def _write(log: BinaryIO, text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    for line in text.rstrip("\n").splitlines() or [""]:
        log.write(f"[{stamp}] {line}\n".encode(errors="replace"))
