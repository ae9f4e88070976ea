"""What the agent remembers about each instance, one JSON file per instance.

``<data>/instances/<id>.json`` holds the spec as it was accepted and the facts an agent
restarted after ``kill -9`` cannot observe again: how often the instance was restarted,
its last exit, its address. Every write goes to a temporary file renamed over the old
one, so a crash leaves either the old record or the new, never half of one. What *is*
observable (running or not, the exit code of the current run) is read from the
container's directory, never from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from runners.agent.model import check_instance_id


@dataclass(frozen=True)
class InstanceRecord:
    """The persisted part of one instance (see the module docstring)."""

    id: str
    spec: dict[str, Any]
    image_digest: str
    created_at: float
    restarts: int = 0
    last_exit_code: int | None = None
    oom_killed: bool = False
    gave_up: bool = False
    address: str | None = None
    # CLOCK_MONOTONIC (boot-relative, like kernel log stamps) when the current run started
    run_started: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InstanceRecord:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in doc.items() if key in known})

    def evolve(self, **changes: Any) -> InstanceRecord:
        return replace(self, **changes)


class RecordStore:
    """Instance records under ``root`` (``<id>.json``), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path_of(self, instance_id: str) -> Path:
        return self.root / f"{check_instance_id(instance_id)}.json"

    def get(self, instance_id: str) -> InstanceRecord | None:
        try:
            text = self.path_of(instance_id).read_text()
        except FileNotFoundError:
            return None
        return InstanceRecord.from_json(json.loads(text))

    def put(self, record: InstanceRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_of(record.id)
        with self._lock:
            fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.root)
            try:
                # not synced to the disk, like the IPAM file (:meth:`runners.net.Ipam._write`):
                # replaced whole, it survives the agent however it ends
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(record.to_json(), handle, sort_keys=True)
                os.replace(staged, path)
            except BaseException:
                Path(staged).unlink(missing_ok=True)
                raise

    def delete(self, instance_id: str) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            self.path_of(instance_id).unlink()

    def all(self) -> list[InstanceRecord]:
        """Every record, sorted by id; unreadable files are skipped (they cannot be ours)."""
        found = []
        if self.root.is_dir():
            for path in sorted(self.root.glob("*.json")):
                with contextlib.suppress(ValueError, TypeError, OSError):
                    found.append(InstanceRecord.from_json(json.loads(path.read_text())))
        return found
