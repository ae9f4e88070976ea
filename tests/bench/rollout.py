"""Rollout benchmark: grey releases and rollback on a simulated cluster (run as root).

On 10 simulated hosts with 2 instances each (20 replicas) of the demo app:

- rollout time: ``start`` of a new release with steps 10 -> 50 -> 100 and no pauses,
  until the rollout is completed (every instance replaced, all traffic on it);
- rollback time: ``rollback`` from the command until 20 requests in a row through the
  entry address are all answered by the old release; *warm* within the standby window
  (the old release's instances still run, out of the router: a router switch), *cold*
  with ``standby=0`` (its 20 instances start again from the images pinned on the hosts);
- traffic shares: one rollout paused at 10 % and 50 %, 2,000 requests (a new connection
  each) through the entry address at each step.

Medians of ``--rounds`` rounds (default 5). Goals: rollback <= 1 s, rollout <= 10 s,
shares within +-2 points of the weight.

    .venv/bin/python -m tests.bench.rollout [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

from pipeline.store.events import cli_source
from tests.bench.common import compile_bytecode, print_table
from tests.helpers.procs import wait_until
from tests.rollout.democluster import DemoCluster, Deployment, fetch, share

ME = "bench"
SOURCE = cli_source("bench")


def _all_answer(d: Deployment, env: str, version: str, deadline: float) -> None:
    address, port = d.entry(env)
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        if fetch(address, port, 20, deadline=5)[version] == 20:
            return
    raise TimeoutError(f"{env}: not all answers from {version} within {deadline}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compile_bytecode()
    cluster = DemoCluster.up(10, "10.248.0.0/24", "10.249.0.0/16")
    replicas = 20
    environments: list[dict[str, object]] = [
        {
            "name": "fast",
            "replicas": replicas,
            "rollout": {
                "steps": [{"set_weight": 10}, {"set_weight": 50}, {"set_weight": 100}],
                "max_surge": "100%",
            },
        },
        {
            "name": "paused",
            "replicas": replicas,
            "rollout": {
                "steps": [
                    {"set_weight": 10},
                    {"pause": {}},
                    {"set_weight": 50},
                    {"pause": {}},
                    {"set_weight": 100},
                ],
                "max_surge": "100%",
            },
        },
    ]
    d = Deployment.create(cluster, "bench", environments, standby=60.0)
    cold: Deployment | None = None
    try:
        d.service.start_background(0.05)
        v1, v2 = d.releases["v1"], d.releases["v2"]
        for env in ("fast", "paused"):
            d.service.start(d.app, env, v1, actor=ME, source=SOURCE)
            assert d.wait_finished(env, timeout=120) == "completed"

        shares: list[list[str]] = []
        d.service.start(d.app, "paused", v2, actor=ME, source=SOURCE)
        address, port = d.entry("paused")
        for step_index, weight in ((1, 10), (3, 50)):
            wait_until(partial(_at, d, "paused", step_index), timeout=120, interval=0.05)
            answers = fetch(address, port, 2000)
            measured = share(answers, "v2")
            shares.append(
                [
                    f"{weight} %",
                    f"{measured:.1f} %",
                    f"{measured - weight:+.1f}",
                    str(answers["error"]),
                ]
            )
            d.service.resume(d.app, "paused", actor=ME, source=SOURCE)
        assert d.wait_finished("paused", timeout=120) == "completed"
        d.service.retire(d.app, "paused")  # its standing-by instances make room

        rollout_times, rollback_times = _rounds(d, args.rounds)
        print_table(
            "Traffic share of the new release (2,000 requests per step, new connection each)",
            ["weight", "measured", "difference (points)", "failed requests"],
            shares,
        )
        rows = [
            [
                "rollout 0 -> 10 -> 50 -> 100",
                f"{statistics.median(rollout_times):.2f} s",
                " ".join(f"{t:.2f}" for t in rollout_times),
            ],
            [
                "rollback, command -> 100 % old (in the standby window)",
                f"{statistics.median(rollback_times):.2f} s",
                " ".join(f"{t:.2f}" for t in rollback_times),
            ],
        ]
        title = f"Rollout on 10 hosts x 2 instances (median of {args.rounds})"
        print_table(title, ["what", "median", "all rounds"], rows)
        # the standby deployment makes room before the one without standby runs: its loop
        # stopped first (it would start the stable releases again), then every
        # environment retired (the next service would find instances of an app that its
        # own store does not know)
        d.service.stop()
        for environment in environments:
            d.service.retire(d.app, str(environment["name"]))
        cold = Deployment.create(cluster, "benchcold", environments[:1], standby=0.0)
        cold.service.start_background(0.05)
        cold.service.start(cold.app, "fast", v1, actor=ME, source=SOURCE)
        assert cold.wait_finished("fast", timeout=120) == "completed"
        _, cold_times = _rounds(cold, args.rounds)
        rows.append(
            [
                "rollback, command -> 100 % old (standby 0: instances start again)",
                f"{statistics.median(cold_times):.2f} s",
                " ".join(f"{t:.2f}" for t in cold_times),
            ]
        )
        print_table(title, ["what", "median", "all rounds"], rows)
    finally:
        if cold is not None:
            cold.close()
        d.close()
        cluster.down()
    return 0


def _rounds(d: Deployment, rounds: int) -> tuple[list[float], list[float]]:
    """Roll v2 out and back ``rounds`` times; (rollout times, rollback times)."""
    v1, v2 = d.releases["v1"], d.releases["v2"]
    rollout_times: list[float] = []
    rollback_times: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        d.service.start(d.app, "fast", v2, actor=ME, source=SOURCE)
        assert d.wait_finished("fast", timeout=120) == "completed"
        rollout_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        d.service.rollback(d.app, "fast", actor=ME, source=SOURCE)
        _all_answer(d, "fast", "v1", deadline=60)
        rollback_times.append(time.perf_counter() - began)
        assert d.wait_finished("fast", timeout=120) == "rolled_back"
        assert d.store.get_environment(d.app, "fast").stable_release_id == v1
        d.store.set_pinned(d.app, "fast", False)
    return rollout_times, rollback_times


def _at(d: Deployment, env: str, step_index: int) -> bool:
    rollout = d.store.get_current_rollout(d.app, env)
    return rollout is not None and rollout.phase == "paused" and rollout.step_index == step_index


if __name__ == "__main__":
    raise SystemExit(main())
