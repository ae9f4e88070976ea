"""Registry benchmark: berth's registry against Debian's docker-registry (distribution).

Run:  .venv/bin/python -m tests.bench.registry [--rounds 5] [--size-mib 100] [--big-gib 1]

In one run, alternating the two registries in every round:
- skopeo pushes a single-layer image of SIZE MiB, pulls it back into an empty OCI
  layout, and pushes it again with every blob present (the no-op push);
- berth's own client does the same push and pull;
then each server receives one BIG GiB blob (streamed, monolithic) while its peak
resident memory is read from /proc, to show whether memory stays flat with blob size.
Prints medians, throughput and ratios (berth / distribution) as markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference
from tests.bench.common import Samples, compile_bytecode, print_table, rss_kib, run, timed
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import free_port, wait_for_port

BERTH = str(Path(sys.executable).with_name("berth"))


def start_berth(root: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BERTH, "registry", "serve", "--listen", f"127.0.0.1:{port}", "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_distribution(root: Path, port: int) -> subprocess.Popen[bytes]:
    config = root / "config.yml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    return subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def skopeo_push(layout: Path, port: int, repo: str) -> None:
    run(
        [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci:{layout}:bench",
            f"docker://127.0.0.1:{port}/{repo}:bench",
        ]
    )


def skopeo_pull(port: int, repo: str, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            f"docker://127.0.0.1:{port}/{repo}:bench",
            f"oci:{dest}:bench",
        ]
    )


def repeated_stream(chunk: bytes, size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        piece = chunk[: min(len(chunk), size - sent)]
        sent += len(piece)
        yield piece


def big_upload(port: int, pid: int, chunk: bytes, size: int, digest: str) -> tuple[int, int, float]:
    """Upload ``size`` bytes as one monolithic blob; return the server's peak RSS before
    and after (KiB) and the seconds the upload took."""
    before = rss_kib(pid, "VmHWM")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        location = client.post("/v2/big/blobs/uploads/").headers["location"]
        started = time.perf_counter()
        # the session URL may carry state in its query (distribution's _state): keep it
        separator = "&" if "?" in location else "?"
        response = client.put(
            f"{location}{separator}digest={digest}",
            content=repeated_stream(chunk, size),
            headers={"content-type": "application/octet-stream", "content-length": str(size)},
        )
        took = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"big upload answered {response.status_code}: {response.text[:300]}")
    return before, rss_kib(pid, "VmHWM"), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--big-gib", type=float, default=1.0)
    args = parser.parse_args()
    compile_bytecode()

    work = Path(tempfile.mkdtemp(prefix="berth-bench-registry-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # A new image every round: skopeo remembers where it saw a blob and would mount
        # it from the previous round's repository instead of uploading it.
        layouts = [work / f"image-{n}" for n in range(args.rounds)]
        for seed, layout in enumerate(layouts):
            write_oci_layout(layout, "bench", random_layer_size=args.size_mib << 20, seed=seed)
        ports = {"berth": free_port(), "distribution": free_port()}
        procs["berth"] = start_berth(work / "berth-root", ports["berth"])
        procs["distribution"] = start_distribution(work / "dist-root", ports["distribution"])
        for name, port in ports.items():
            wait_for_port("127.0.0.1", port, proc=procs[name])

        cases = {
            c: Samples()
            for c in (
                "skopeo push",
                "skopeo pull",
                "skopeo no-op push",
                "client push",
                "client pull",
            )
        }
        order = ["berth", "distribution"]
        with RegistryClient() as client:
            for round_no, layout in enumerate(layouts):
                source = OCILayout.open(layout)
                for name in order:
                    port = ports[name]
                    repo = f"bench/r{round_no}"
                    cases["skopeo push"].add(name, timed(skopeo_push, layout, port, repo))
                    dest = work / f"pull-{name}"
                    cases["skopeo pull"].add(name, timed(skopeo_pull, port, repo, dest))
                    cases["skopeo no-op push"].add(name, timed(skopeo_push, layout, port, repo))
                    ref = Reference.parse(f"127.0.0.1:{port}/bench/c{round_no}:bench")
                    cases["client push"].add(
                        name, timed(client.push_image, source, ref, tag="bench")
                    )
                    target = work / f"cpull-{name}"
                    shutil.rmtree(target, ignore_errors=True)
                    store = OCILayout.create(target)
                    cases["client pull"].add(name, timed(client.pull_image, ref, store))
                order.reverse()

        mib = args.size_mib
        rows = []
        for case, samples in cases.items():
            b, d = samples.median("berth"), samples.median("distribution")
            rate = "" if "no-op" in case else f"{mib / b:.0f} / {mib / d:.0f}"
            rows.append([case, f"{b * 1000:.0f} ms", f"{d * 1000:.0f} ms", rate, f"{b / d:.2f}x"])
        print_table(
            f"{mib} MiB single-layer image, {args.rounds} rounds, medians "
            "(ratio = berth time / distribution time; < 1 is faster)",
            ["case", "berth", "distribution", "MiB/s berth / distribution", "ratio"],
            rows,
        )

        big = int(args.big_gib * (1 << 30))
        chunk = os.urandom(1 << 20)
        hasher = hashlib.sha256()
        for piece in repeated_stream(chunk, big):
            hasher.update(piece)
        digest = f"sha256:{hasher.hexdigest()}"
        mem_rows = []
        for name in ("berth", "distribution"):
            before, after, took = big_upload(ports[name], procs[name].pid, chunk, big, digest)
            mem_rows.append(
                [
                    name,
                    f"{before / 1024:.0f} MiB",
                    f"{after / 1024:.0f} MiB",
                    f"{(after - before) / 1024:.0f} MiB",
                    f"{big / (1 << 20) / took:.0f} MiB/s",
                ]
            )
        print_table(
            f"server peak memory (VmHWM) while receiving one {args.big_gib:g} GiB blob",
            ["server", "peak before", "peak after", "growth", "upload rate"],
            mem_rows,
        )
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
