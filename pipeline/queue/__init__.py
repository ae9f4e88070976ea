"""The build queue: from a commit of a watched app to a pushed image and a release.

- :mod:`~pipeline.queue.enqueue` - one build per (app, commit); newer commits supersede
  queued ones
- :mod:`~pipeline.queue.service` - :class:`BuildService`, what hooks, polls and the API call
- :mod:`~pipeline.queue.workers` - bounded worker threads, cancel, crash recovery
- :mod:`~pipeline.queue.job` - one build: fetch, app spec, export, build, release
- :mod:`~pipeline.queue.builder` - the :class:`ImageBuilder` protocol and the tree builder
- :mod:`~pipeline.queue.dockerfile` - the Dockerfile builder over :mod:`pipeline.build`
- :mod:`~pipeline.queue.logs` - build log files, readable while they grow
- :mod:`~pipeline.queue.lock` - one control plane per data directory
"""

from __future__ import annotations

from pipeline.queue.builder import (
    BuildCancelled,
    BuildFailed,
    BuildRequest,
    ImageBuilder,
    TreeImageBuilder,
)
from pipeline.queue.enqueue import Enqueued, enqueue
from pipeline.queue.job import BuildJob, Outcome, WatchedApp
from pipeline.queue.lock import DataDirLock
from pipeline.queue.logs import BuildLogs
from pipeline.queue.service import BuildService, UnknownApp
from pipeline.queue.workers import BuildWorkers, WorkerSettings

__all__ = [
    "BuildCancelled",
    "BuildFailed",
    "BuildJob",
    "BuildLogs",
    "BuildRequest",
    "BuildService",
    "BuildWorkers",
    "DataDirLock",
    "Enqueued",
    "ImageBuilder",
    "Outcome",
    "TreeImageBuilder",
    "UnknownApp",
    "WatchedApp",
    "WorkerSettings",
    "enqueue",
]
