"""Applying router entries to the kernel: ``nft -f -`` inside a network namespace.

:class:`Router` is what the engine needs; :class:`NftRouter` implements it with
nftables (in-process through libnftables, :mod:`runners.net.libnft`, or the ``nft``
command where that is missing), in the namespace where clients' connections pass (the root namespace of
a simulated cluster, whose bridge links every host). The text comes from
:func:`pipeline.rollout.router.render_ruleset`; this module only runs it and reads
counters back.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Protocol

from pipeline.rollout.errors import RouterError
from pipeline.rollout.router import (
    RouterEntry,
    counter_name,
    render_removal,
    render_ruleset,
    table_name,
)
from runners.errors import RunnerError
from runners.net import libnft
from runners.net.nftables import execute

__all__ = ["NftRouter", "Router"]


class Router(Protocol):
    """Splits new connections to an (app, env) entry address between releases."""

    def apply(self, entry: RouterEntry) -> None:
        """Make ``entry`` the rules of its (app, env), atomically."""

    def remove(self, app: str, env: str) -> None:
        """Remove the entry of (app, env); nothing when there is none."""

    def connections(self, app: str, env: str) -> dict[int, tuple[int, int]]:
        """(packets, bytes) of new connections per release since the entry was created."""


class NftRouter:
    """:class:`Router` with nftables, in ``netns`` (None: the current namespace)."""

    def __init__(self, *, netns: str | None = None, nft: str = "nft", timeout: float = 10.0):
        self.netns = netns
        self.nft = nft
        self.timeout = timeout

    def apply(self, entry: RouterEntry) -> None:
        # Carry the counters into the new table so that measured shares stay continuous.
        counts = self.connections(entry.app, entry.env)
        known = {pool.release for pool in entry.pools}
        script = render_ruleset(
            replace(entry, counts={r: c for r, c in counts.items() if r in known})
        )
        self._run(script)

    def remove(self, app: str, env: str) -> None:
        self._run(render_removal(app, env))

    def connections(self, app: str, env: str) -> dict[int, tuple[int, int]]:
        script = f"list counters table ip {table_name(app, env)}\n"
        result = self._exec(script, json_output=True)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return {}
            raise self._error(result, script)
        return parse_counters(result.stdout)

    def _run(self, script: str) -> None:
        result = self._exec(script)
        if result.returncode != 0:
            raise self._error(result, script)

    def _exec(self, script: str, *, json_output: bool = False) -> libnft.Outcome:
        try:
            return execute(
                script,
                netns=self.netns,
                json_output=json_output,
                binary=self.nft,
                timeout=self.timeout,
            )
        except RunnerError as exc:
            raise RouterError(f"{self.nft} in {self._where()}: could not run: {exc}") from exc

    def _where(self) -> str:
        return "this namespace" if self.netns is None else f"namespace {self.netns}"

    def _error(self, result: libnft.Outcome, script: str) -> RouterError:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        message = f"{self.nft} -f - in {self._where()}: exited with {result.returncode}"
        if tail:
            message += f"\n{tail}"
        return RouterError(f"{message}\nscript:\n{script}")


def parse_counters(listing: str) -> dict[int, tuple[int, int]]:
    """Release -> (packets, bytes) from ``nft -j list counters table ...`` output."""
    try:
        items: list[dict[str, Any]] = json.loads(listing)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RouterError(f"nft printed counters berth cannot read: {exc}") from exc
    found: dict[int, tuple[int, int]] = {}
    for item in items:
        counter = item.get("counter")
        if not isinstance(counter, dict):
            continue
        name = str(counter.get("name", ""))
        prefix = counter_name(0)[:-1]
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            found[int(name[len(prefix) :])] = (
                int(counter.get("packets", 0)),
                int(counter.get("bytes", 0)),
            )
    return found
