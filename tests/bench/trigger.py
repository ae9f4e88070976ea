"""Benchmark: webhook deliveries accepted per second, and push -> release latency.

    .venv/bin/python -m tests.bench.trigger [--deliveries 2000] [--rounds 5]

Starts a real ``berth serve`` on loopback watching a git repo in a temp dir, then:

1. sends signed GitHub deliveries of one push (each with its own delivery id, so each
   is verified, recorded and deduplicated against the existing build) from a few
   threads; reports accepted deliveries/s and p50/p99 latency;
2. pushes a one-file change of the demo app (``FROM busybox``, ``RUN``, ``COPY``) and
   delivers its webhook; measures from the end of ``git push`` until the release is
   recorded (read through the API), with a warm build cache; reports the median.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.bench.common import compile_bytecode, print_table
from tests.control.support import PUSH_PAYLOADS, TOKEN_ENV, TOKENS, service_config, signed
from tests.helpers.gitrepo import make_repo
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port

BERTH = str(Path(sys.executable).with_name("berth"))
DOCKERFILE = "FROM busybox\nRUN echo base > /base.txt\nCOPY index.html /www/index.html\n"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _deliver(args: tuple[str, int, bytes, list[dict[str, str]]]) -> list[float]:
    """One client process: its share of the deliveries over one keep-alive connection."""
    host, port, body, all_headers = args
    latencies: list[float] = []
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for headers in all_headers:
            start = time.perf_counter()
            connection.request("POST", "/hooks/github", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            latencies.append(time.perf_counter() - start)
            if answer.status not in (200, 202):
                raise RuntimeError(f"delivery refused: {answer.status}")
    finally:
        connection.close()
    return latencies


def deliveries(port: int, body: bytes, count: int, clients: int) -> tuple[float, list[float]]:
    """Send ``count`` signed deliveries of one push from ``clients`` processes.

    Requests are signed before the clock starts and sent with http.client from separate
    processes, so the client's own cost (and Python's GIL) weighs as little as possible
    on a 2-core machine where client and server share the CPUs."""
    per_client = count // clients
    work = []
    for index in range(clients):
        signed_headers = []
        for n in range(per_client):
            _, headers = signed("github", body, delivery=f"bench-{index}-{n}")
            signed_headers.append(dict(headers))
        work.append(("127.0.0.1", port, body, signed_headers))
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        start = time.perf_counter()
        results = pool.map(_deliver, work)
        elapsed = time.perf_counter() - start
    latencies = [value for result in results for value in result]
    return len(latencies) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="berth-bench-trigger-") as temp:
        root = Path(temp)
        cache = root / "cache"
        subprocess.run(
            [BERTH, "image", "base", "busybox", "-t", "busybox", "--cache-dir", str(cache)],
            check=True,
            capture_output=True,
        )
        repo = make_repo(root / "git")
        port = free_port()
        config = service_config(root, port, repo.url)
        env = {**os.environ, **TOKEN_ENV, "BERTH_CACHE_DIR": str(cache)}
        launcher = ProcessLauncher(log_dir=root)
        try:
            proc = launcher.start([BERTH, "serve", "--config", str(config)], env=env)
            wait_for_port("127.0.0.1", port, proc=proc)
            base = f"http://127.0.0.1:{port}"
            api = httpx.Client(
                base_url=base, timeout=30, headers={"authorization": f"Bearer {TOKENS['reader']}"}
            )

            def released(sha: str, deadline: float) -> None:
                while time.perf_counter() < deadline:
                    found = api.get("/api/v1/apps/demo/releases", params={"limit": 1}).json()
                    if found["releases"] and found["releases"][0]["commit"] == sha:
                        return
                    time.sleep(0.005)
                raise TimeoutError(f"no release of {sha[:12]}")

            def push_and_wait(index: int) -> float:
                sha = repo.commit({"index.html": f"<h1>{index}</h1>\n"}, f"round {index}")
                pushed = time.perf_counter()
                body, headers = signed("github", PUSH_PAYLOADS["github"](repo.url, sha))
                httpx.post(f"{base}/hooks/github", content=body, headers=headers, timeout=30)
                released(sha, pushed + 300)
                return time.perf_counter() - pushed

            repo.commit({"Dockerfile": DOCKERFILE}, "dockerfile", push=False)
            push_and_wait(-1)  # cold: fills the cache
            latencies = [push_and_wait(i) for i in range(args.rounds)]

            sha = repo.commit({"index.html": "<h1>bench</h1>\n"}, "bench deliveries")
            body = json.dumps(PUSH_PAYLOADS["github"](repo.url, sha)).encode()
            rate, delivery_latencies = deliveries(port, body, args.deliveries, args.threads)
            api.close()
        finally:
            launcher.stop_all()
    print_table(
        "webhook deliveries (signed, one push, distinct delivery ids, loopback)",
        ["deliveries", "client processes", "accepted/s", "p50 ms", "p99 ms"],
        [
            [
                str(len(delivery_latencies)),
                str(args.threads),
                f"{rate:.0f}",
                f"{percentile(delivery_latencies, 0.5) * 1000:.1f}",
                f"{percentile(delivery_latencies, 0.99) * 1000:.1f}",
            ]
        ],
    )
    print_table(
        "push -> release, warm cache (demo: FROM busybox, RUN, COPY changed file)",
        ["rounds", "median s", "min s", "max s"],
        [
            [
                str(len(latencies)),
                f"{statistics.median(latencies):.3f}",
                f"{min(latencies):.3f}",
                f"{max(latencies):.3f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
