"""What a test may leave behind: network namespaces, mounts, child processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _netns() -> frozenset[str]:
    run = Path("/run/netns")
    return frozenset(p.name for p in run.iterdir()) if run.is_dir() else frozenset()


def _mounts() -> frozenset[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return frozenset(line.split()[1] for line in lines if len(line.split()) > 1)


def _children() -> frozenset[int]:
    me = os.getpid()
    kids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the ppid is the fourth field after the parenthesised command name
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[1]) == me and fields[0] != "Z":
            kids.add(int(entry.name))
    return frozenset(kids)


@dataclass(frozen=True)
class Snapshot:
    netns: frozenset[str]
    mounts: frozenset[str]
    children: frozenset[int]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(_netns(), _mounts(), _children())

    def leaks_since(self, before: Snapshot) -> list[str]:
        problems = []
        if extra := self.netns - before.netns:
            problems.append(f"network namespaces left behind: {sorted(extra)}")
        if extra := self.mounts - before.mounts:
            problems.append(f"mounts left behind: {sorted(extra)}")
        if pids := self.children - before.children:
            problems.append(f"child processes left running: {sorted(pids)}")
        return problems
