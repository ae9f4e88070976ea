"""The build service: what webhooks, polls and the API call to turn a commit into a build.

It knows the watched apps (from the service config), queues commits exactly once
(:func:`~pipeline.queue.enqueue.enqueue`), wakes the workers, and answers "what is the
head of this app's branch" for polls and manual triggers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from pipeline.errors import BerthError
from pipeline.queue.enqueue import Enqueued, enqueue
from pipeline.queue.job import WatchedApp
from pipeline.queue.workers import BuildWorkers
from pipeline.store import BuildState, Store


class UnknownApp(BerthError):
    """No watched app has this name."""


class BuildService:
    """Queue builds of watched apps; see the module docstring."""

    def __init__(
        self,
        store: Store,
        apps: Mapping[str, WatchedApp],
        workers: BuildWorkers | None = None,
        *,
        supersede: bool = True,
    ) -> None:
        self.store = store
        self.apps = dict(apps)
        self.workers = workers
        self.supersede = supersede
        # SQLite's busy handler backs off with sleeps of up to 100 ms when writers of one
        # process collide; queueing them here first keeps a burst of deliveries fast.
        self._write_lock = threading.Lock()

    def register_apps(self) -> None:
        """Write the configured apps into the store (repo and branch may have changed)."""
        for app in self.apps.values():
            self.store.upsert_app(app.name, app.mirror.remote.display(), app.branch)

    def app(self, name: str) -> WatchedApp:
        """The watched app ``name``; :class:`UnknownApp` if there is none."""
        try:
            return self.apps[name]
        except KeyError:
            raise UnknownApp(f"unknown app {name!r}: it is not in the service config") from None

    def submit(
        self,
        app: str,
        commit: str,
        *,
        actor: str,
        source: str,
        delivery: tuple[str, str] | None = None,
        detail: dict[str, object] | None = None,
    ) -> Enqueued | None:
        """Queue ``commit`` of ``app``. With ``delivery`` (provider, id), the delivery is
        recorded in the same transaction; a delivery seen before returns None and
        changes nothing."""
        self.app(app)
        with self._write_lock, self.store.transaction() as tx:
            if delivery is not None and not tx.record_delivery(*delivery):
                return None
            result = enqueue(
                tx,
                app,
                commit,
                actor=actor,
                source=source,
                supersede=self.supersede,
                detail=detail,
            )
        if result.created and self.workers is not None:
            self.workers.wake()
        return result

    def trigger(self, app: str, commit: str | None, *, actor: str, source: str) -> Enqueued:
        """Build ``commit`` of ``app`` (default: the branch head on the remote) on request.

        A commit whose build ended without an image (failed, skipped, cancelled,
        interrupted) is queued again; a succeeded one is left alone.
        """
        watched = self.app(app)
        if commit is None:
            commit = self.branch_head(app)
            if commit is None:
                raise BerthError(
                    f"app {app!r}: branch {watched.branch!r} does not exist in "
                    f"{watched.mirror.remote.display()}; push to it first"
                )
        existing = self.store.find_build(app, commit)
        if existing is not None and existing.state.finished and existing.digest is None:
            with self.store.transaction() as tx:
                again = tx.set_build_state(
                    existing.id, BuildState.QUEUED, reason=f"queued again by {actor}"
                )
                tx.append_event(
                    actor,
                    "build.queued",
                    source=source,
                    app=app,
                    detail={
                        "build": existing.id,
                        "commit": commit,
                        "trigger": "api",
                        "again": True,
                    },
                )
            if self.workers is not None:
                self.workers.wake()
            return Enqueued(again, True)
        result = self.submit(app, commit, actor=actor, source=source, detail={"trigger": "api"})
        assert result is not None  # no delivery given, so never a duplicate
        return result

    def branch_head(self, app: str) -> str | None:
        """The commit the app's branch points at on its remote (``ls-remote``)."""
        watched = self.app(app)
        return watched.mirror.remote_head(watched.branch)
