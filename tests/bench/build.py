"""Benchmark: berth build against ``buildah bud --layers --isolation chroot``.

Two Dockerfiles — the small one from PEERS.md and a larger one (2,000 small files, one
50 MiB file, two RUN steps) — in three cases each: cold cache, nothing changed, one
file changed. Tools alternate within a round; 5 rounds; medians and ratios printed as
a markdown table, then berth's per-step output after a one-file change. Every timed
build starts after a ``sync``, so that no build pays for writing back what the one
before it (of either tool) or a cache reset left dirty.

    .venv/bin/python -m tests.bench.build [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.common import Samples, compile_bytecode, print_table, run, timed

BERTH = str(Path(sys.executable).with_name("berth"))
BASE = "docker.io/library/busybox:latest"

SMALL = "FROM busybox\nRUN echo hi > /a\nCOPY f /b\n"
LARGE = (
    "FROM busybox\nRUN echo one > /one\nCOPY small/ /small/\nCOPY big /big\n"
    "RUN ls /small | wc -l > /count\n"
)


def make_contexts(root: Path) -> dict[str, Path]:
    small = root / "small"
    small.mkdir()
    (small / "Dockerfile").write_text(SMALL)
    (small / "f").write_text("f\n")
    large = root / "large"
    (large / "small").mkdir(parents=True)
    (large / "Dockerfile").write_text(LARGE)
    for i in range(2000):
        (large / "small" / f"file{i:04d}.txt").write_text(f"file {i}\n" * 4)
    (large / "big").write_bytes(os.urandom(50 * 1024 * 1024))
    return {"small": small, "large": large}


def change_one(context: Path, round_no: int) -> None:
    target = context / ("f" if (context / "f").exists() else "small/file0007.txt")
    target.write_text(f"changed {round_no} {os.urandom(4).hex()}\n")


class Berth:
    def __init__(self, root: Path) -> None:
        self.template = root / "berth-template"
        self.cache = root / "berth-cache"
        run([BERTH, "image", "base", "busybox", "-t", "busybox", "--cache-dir", str(self.template)])

    def cold(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.copytree(self.template, self.cache, symlinks=True)

    def build(self, context: Path) -> None:
        run(
            [
                BERTH,
                "build",
                str(context),
                "-q",
                "-t",
                "bench/app:latest",
                "--cache-dir",
                str(self.cache),
            ]
        )

    def steps(self, context: Path) -> str:
        result = run(
            [BERTH, "build", str(context), "-t", "bench/app:latest", "--cache-dir", str(self.cache)]
        )
        return result.stderr.decode()


class Buildah:
    def __init__(self, root: Path, base_archive: Path) -> None:
        conf = root / "containers.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits=["nofile=20000:20000","nproc=4096:4096"]\n'
            '[engine]\nruntime="runc"\ncgroup_manager="cgroupfs"\nevents_logger="file"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.runroot = Path(tempfile.mkdtemp(prefix="bb-"))  # buildah wants a short path
        self.argv = [
            "buildah",
            "--root",
            str(root / "buildah-root"),
            "--runroot",
            str(self.runroot),
        ]
        self.base_archive = base_archive

    def cold(self) -> None:
        subprocess.run(
            [*self.argv, "rmi", "--all", "--force"], capture_output=True, env=self.env, check=False
        )
        run([*self.argv, "pull", "-q", f"oci-archive:{self.base_archive}"], env=self.env)
        run([*self.argv, "tag", self._base_id(), "busybox"], env=self.env)

    def _base_id(self) -> str:
        out = run([*self.argv, "images", "-q"], env=self.env).stdout.decode().split()
        return out[0]

    def build(self, context: Path) -> None:
        run(
            [
                *self.argv,
                "bud",
                "--layers",
                "--isolation",
                "chroot",
                "-q",
                "-t",
                "bench-app",
                str(context),
            ],
            env=self.env,
        )

    def close(self) -> None:
        subprocess.run(
            [*self.argv, "rmi", "--all", "--force"], capture_output=True, env=self.env, check=False
        )
        subprocess.run(["umount", "-R", str(self.runroot)], capture_output=True, check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    compile_bytecode()
    root = Path(tempfile.mkdtemp(prefix="berth-bench-build-"))
    try:
        contexts = make_contexts(root)
        berth = Berth(root)
        base_archive = root / "busybox.tar"
        run(
            [
                BERTH,
                "image",
                "base",
                "busybox",
                "-t",
                "busybox",
                "--cache-dir",
                str(root / "export"),
                "--output",
                f"oci-archive:{base_archive}:latest",
            ]
        )
        buildah = Buildah(root, base_archive)
        samples = {
            name: {case: Samples() for case in ("cold", "unchanged", "one file")}
            for name in contexts
        }
        tools = {"berth": berth, "buildah": buildah}
        try:
            for round_no in range(options.rounds):
                order = ["berth", "buildah"] if round_no % 2 == 0 else ["buildah", "berth"]
                for name, context in contexts.items():
                    for tool_name in order:
                        tool = tools[tool_name]
                        tool.cold()  # type: ignore[attr-defined]
                        # each timed build starts with nothing left to write back: neither
                        # tool pays for the other's (or its own teardown's) dirty pages
                        os.sync()
                        samples[name]["cold"].add(
                            tool_name, timed(lambda t=tool, c=context: t.build(c))
                        )  # type: ignore[attr-defined]
                        os.sync()
                        samples[name]["unchanged"].add(
                            tool_name, timed(lambda t=tool, c=context: t.build(c))
                        )  # type: ignore[attr-defined]
                        change_one(context, round_no * 2 + order.index(tool_name))
                        os.sync()
                        samples[name]["one file"].add(
                            tool_name, timed(lambda t=tool, c=context: t.build(c))
                        )  # type: ignore[attr-defined]
            rows = []
            for name in contexts:
                for case, sample in samples[name].items():
                    b, h = sample.median("berth"), sample.median("buildah")
                    rows.append([name, case, f"{b:.3f} s", f"{h:.3f} s", f"{b / h:.2f}x"])
            print_table(
                f"berth build vs buildah bud --layers --isolation chroot (medians of {options.rounds} rounds)",
                ["Dockerfile", "case", "berth", "buildah", "berth/buildah"],
                rows,
            )
            for name, context in contexts.items():
                berth.cold()
                berth.build(context)
                change_one(context, 999)
                print(f"\nberth per-step output after a one-file change ({name}):")
                print(berth.steps(context))
        finally:
            buildah.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
