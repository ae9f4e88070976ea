"""Progress of blob transfers, reported to a callback so that only the CLI draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from runners.oci.digest import Digest


class BlobState(Enum):
    """What happened, or is happening, to one blob of a push or pull."""

    STARTED = "started"
    TRANSFERRING = "transferring"
    EXISTS = "exists"  # already in the registry (push) or the store (pull): nothing sent
    MOUNTED = "mounted"  # linked from another repository of the same registry
    DONE = "done"


@dataclass(frozen=True)
class BlobProgress:
    """One progress report: ``done`` of ``total`` bytes of ``digest`` moved so far."""

    digest: Digest
    done: int
    total: int
    state: BlobState


# Called from worker threads; implementations must be thread-safe and quick.
ProgressCallback = Callable[[BlobProgress], None]


class BlobReporter:
    """Sends :class:`BlobProgress` for one blob; does nothing without a callback."""

    def __init__(self, callback: ProgressCallback | None, digest: Digest, total: int) -> None:
        self._callback = callback
        self.digest = digest
        self.total = total
        self.done = 0

    def __call__(self, state: BlobState, done: int | None = None) -> None:
        if done is not None:
            self.done = done
        if self._callback is not None:
            self._callback(BlobProgress(self.digest, self.done, self.total, state))

    def advance(self, count: int) -> None:
        self.done += count
        if self._callback is not None:
            self._callback(BlobProgress(self.digest, self.done, self.total, BlobState.TRANSFERRING))
