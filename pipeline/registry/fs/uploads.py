"""Upload sessions on disk: bytes appended to ``uploads/ID/data``, never visible as a blob.

A session's bytes are hashed while they arrive and the running hash is kept in memory,
so completing an upload does not read the data again. After a restart (or when a
request was cut short) the hash is recomputed from the file. ``state.json`` holds the
authoritative size: bytes beyond it (a write cut short by a crash) are truncated away
before anything is appended or verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import uuid
from pathlib import Path

from pipeline.registry.clock import Clock
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.fs.layout import Layout, is_temporary, write_atomic
from pipeline.registry.names import UPLOAD_ID_RE
from pipeline.registry.storage import UploadState
from runners.oci.digest import CHUNK, Digest


def _unknown(upload_id: str, why: str = "no such upload session") -> DistributionError:
    return DistributionError(ErrorCode.BLOB_UPLOAD_UNKNOWN, {"upload": upload_id, "reason": why})


class UploadArea:
    """The sessions under ``ROOT/uploads`` of one storage, with their in-memory hashes."""

    def __init__(self, layout: Layout, clock: Clock, ttl: float) -> None:
        self.layout = layout
        self.clock = clock
        self.ttl = ttl
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        # upload id -> (sha256 of the first ``offset`` bytes, offset)
        self._hashes: dict[str, tuple[hashlib._Hash, int]] = {}

    # -- sessions ---------------------------------------------------------------------
    def create(self, repository: str) -> UploadState:
        upload_id = uuid.uuid4().hex
        now = self.clock.now()
        directory = self.layout.upload(upload_id)
        directory.mkdir(parents=True)
        (directory / "data").touch()
        state = UploadState(upload_id, repository, 0, now, now)
        self._save(state)
        with self._lock:
            self._hashes[upload_id] = (hashlib.sha256(), 0)
        return state

    def state(self, repository: str, upload_id: str) -> UploadState:
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise _unknown(upload_id, "not an upload id berth issued")
        try:
            raw = json.loads((self.layout.upload(upload_id) / "state.json").read_bytes())
            state = UploadState(
                upload_id=upload_id,
                repository=str(raw["repository"]),
                offset=int(raw["offset"]),
                started=float(raw["started"]),
                updated=float(raw["updated"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _unknown(upload_id) from exc
        if state.repository != repository:
            raise _unknown(upload_id, "the session belongs to another repository")
        if self._expired(state) and not self._is_busy(upload_id):
            self._remove(upload_id)
            raise _unknown(upload_id, "the upload session expired; start a new upload")
        return state

    def _save(self, state: UploadState) -> None:
        document = {
            "repository": state.repository,
            "offset": state.offset,
            "started": state.started,
            "updated": state.updated,
        }
        write_atomic(
            self.layout.upload(state.upload_id) / "state.json", json.dumps(document).encode()
        )

    def _expired(self, state: UploadState) -> bool:
        return self.clock.now() - state.updated > self.ttl

    def _is_busy(self, upload_id: str) -> bool:
        with self._lock:
            return upload_id in self._busy

    def _claim(self, upload_id: str) -> None:
        with self._lock:
            if upload_id in self._busy:
                raise DistributionError(
                    ErrorCode.BLOB_UPLOAD_INVALID,
                    {"upload": upload_id, "reason": "another request is writing this upload"},
                    status=416,
                )
            self._busy.add(upload_id)

    def _release(self, upload_id: str) -> None:
        with self._lock:
            self._busy.discard(upload_id)

    def _remove(self, upload_id: str) -> None:
        with self._lock:
            self._hashes.pop(upload_id, None)
        shutil.rmtree(self.layout.upload(upload_id), ignore_errors=True)

    # -- writing ----------------------------------------------------------------------
    def open(self, repository: str, upload_id: str, start: int | None) -> FileUploadWriter:
        state = self.state(repository, upload_id)
        if start is not None and start != state.offset:
            raise DistributionError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                {"reason": f"chunk starts at {start} but the upload holds {state.offset} bytes"},
                status=416,
                headers={"Range": f"0-{max(state.offset - 1, 0)}"},
            )
        self._claim(upload_id)
        try:
            fd = os.open(self.layout.upload(upload_id) / "data", os.O_WRONLY)
        except FileNotFoundError as exc:
            self._release(upload_id)
            raise _unknown(upload_id) from exc
        try:
            os.ftruncate(fd, state.offset)
            os.lseek(fd, state.offset, os.SEEK_SET)
        except OSError:
            os.close(fd)
            self._release(upload_id)
            raise
        with self._lock:
            cached = self._hashes.pop(upload_id, None)
        hasher = cached[0] if cached is not None and cached[1] == state.offset else None
        return FileUploadWriter(self, state, fd, hasher)

    def _finished(
        self, state: UploadState, hasher: hashlib._Hash | None, offset: int
    ) -> UploadState:
        new = UploadState(
            state.upload_id, state.repository, offset, state.started, self.clock.now()
        )
        try:
            self._save(new)
            if hasher is not None:
                with self._lock:
                    self._hashes[state.upload_id] = (hasher, offset)
        finally:
            self._release(state.upload_id)
        return new

    # -- completion -------------------------------------------------------------------
    def verified(self, repository: str, upload_id: str, digest: Digest) -> tuple[Path, int]:
        """Check the session's bytes against ``digest``; return the fsynced data file.

        On a mismatch the session is discarded and ``DIGEST_INVALID`` raised. The caller
        moves the file into place, then calls :meth:`discard`; the session stays claimed
        until then.
        """
        state = self.state(repository, upload_id)
        self._claim(upload_id)
        try:
            path = self.layout.upload(upload_id) / "data"
            with open(path, "r+b") as handle:
                handle.truncate(state.offset)
                with self._lock:
                    cached = self._hashes.pop(upload_id, None)
                if digest.algorithm == "sha256" and cached and cached[1] == state.offset:
                    actual = Digest("sha256", cached[0].hexdigest())
                else:
                    hasher = digest.hasher()
                    while chunk := handle.read(CHUNK):
                        hasher.update(chunk)
                    actual = Digest(digest.algorithm, hasher.hexdigest())
                if actual != digest:
                    raise DistributionError(
                        ErrorCode.DIGEST_INVALID,
                        {"expected": str(digest), "actual": str(actual), "size": state.offset},
                    )
                handle.flush()
                os.fsync(handle.fileno())
        except DistributionError:
            self._remove(upload_id)
            self._release(upload_id)
            raise
        except BaseException:
            self._release(upload_id)
            raise
        return path, state.offset

    def discard(self, upload_id: str) -> None:
        """End a session (after :meth:`verified`, or to cancel it)."""
        self._remove(upload_id)
        self._release(upload_id)

    def cancel(self, repository: str, upload_id: str) -> None:
        self.state(repository, upload_id)
        self._claim(upload_id)
        self.discard(upload_id)

    # -- expiry -----------------------------------------------------------------------
    def sweep(self) -> int:
        """Remove every session not written to within the TTL; return how many."""
        if not self.layout.uploads.is_dir():
            return 0
        removed = 0
        now = self.clock.now()
        for entry in self.layout.uploads.iterdir():
            if is_temporary(entry.name) or self._is_busy(entry.name):
                continue
            if entry.is_file():
                # a manifest being written when the process died (see put_manifest)
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > self.ttl:
                        entry.unlink()
                        removed += 1
                continue
            try:
                updated = float(json.loads((entry / "state.json").read_bytes())["updated"])
            except (OSError, ValueError, KeyError, TypeError):
                # a session whose state never got written (killed while starting)
                updated = entry.stat().st_mtime if entry.exists() else now
            if now - updated > self.ttl:
                self._remove(entry.name)
                removed += 1
        return removed


class FileUploadWriter:
    """Appends to one session's data file; see :class:`~pipeline.registry.storage.UploadWriter`."""

    def __init__(
        self, area: UploadArea, state: UploadState, fd: int, hasher: hashlib._Hash | None
    ) -> None:
        self._area = area
        self._state = state
        self._fd = fd
        self._hasher = hasher
        self._offset = state.offset

    @property
    def offset(self) -> int:
        return self._offset

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self._hasher is not None:
            self._hasher.update(data)
        self._offset += len(data)

    def finish(self) -> UploadState:
        self._close()
        return self._area._finished(self._state, self._hasher, self._offset)

    def abort(self) -> None:
        try:
            if self._fd >= 0:
                os.ftruncate(self._fd, self._state.offset)
        finally:
            self._close()
            self._area._release(self._state.upload_id)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
