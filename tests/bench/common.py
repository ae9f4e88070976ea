"""Shared machinery of the benchmark scripts: timing, medians, tables, servers."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Samples:
    """Timings (seconds) of one measured case, per tool."""

    by_tool: dict[str, list[float]] = field(default_factory=dict)

    def add(self, tool: str, seconds: float) -> None:
        self.by_tool.setdefault(tool, []).append(seconds)

    def median(self, tool: str) -> float:
        return statistics.median(self.by_tool[tool])


def compile_bytecode() -> None:
    """Bytecode for berth's packages, as an installed berth has (``deploy/setup.sh`` makes
    it too): where ``PYTHONDONTWRITEBYTECODE`` is set, every berth process would otherwise
    compile its modules again, and the figures would measure the compiler."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "pipeline", "runners"],
        cwd=root, stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip


def timed(action: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Seconds taken by ``action(*args, **kwargs)``."""
    start = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - start


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """Run a command, raising with its stderr when it fails."""
    result = subprocess.run(list(argv), capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode(errors='replace')[-2000:]}"
        )
    return result  # type: ignore[no-any-return]


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """Resident memory (or peak, with key="VmHWM") of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()
