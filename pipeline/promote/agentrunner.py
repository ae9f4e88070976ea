"""The functional gate's container on a berth agent: :class:`AgentGateRunner`.

It picks the first host whose labels match the environment's selector, ``PUT``s a
one-shot instance (restart policy ``no``) from the release's image, polls until it has
exited or the timeout passed, fetches its output and removes it again, whatever happened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.promote.errors import GateError
from pipeline.promote.gates import ContainerExit, ContainerRun
from runners.agent.client import AgentClient
from runners.agent.errors import AgentError
from runners.errors import RunnerError

__all__ = ["AgentGateRunner", "GateHost"]

POLL_INTERVAL = 0.5
LOG_TAIL = 2000
UNKNOWN_EXIT_POLLS = 10


@dataclass(frozen=True)
class GateHost:
    """A host gate containers may run on: its name, labels and agent client."""

    name: str
    client: AgentClient
    labels: Mapping[str, str] = field(default_factory=dict)


class AgentGateRunner:
    """Runs gate containers on berth agents (see the module docstring)."""

    def __init__(
        self,
        hosts: Sequence[GateHost],
        *,
        poll_interval: float = POLL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._hosts = tuple(hosts)
        self._poll = poll_interval
        self._clock = clock
        self._sleep = sleep

    def _host(self, selector: Mapping[str, str]) -> GateHost:
        for host in self._hosts:
            if all(host.labels.get(key) == value for key, value in selector.items()):
                return host
        wanted = ", ".join(f"{k}={v}" for k, v in selector.items()) or "any labels"
        raise GateError(f"no host with {wanted} to run the gate container on")

    def run(self, job: ContainerRun) -> ContainerExit:
        host = self._host(job.host_selector)
        spec = {
            "image": job.image,
            "command": list(job.command),
            "env": dict(job.env),
            "labels": {"berth.gate": "true"},
            "restart": {"policy": "no"},
            "stop_timeout": 2.0,
        }
        try:
            host.client.put_instance(job.name, spec)
        except RunnerError as exc:
            raise GateError(f"host {host.name}: cannot start the gate container: {exc}") from exc
        try:
            exit_code = self._wait(host, job)
            try:
                output = host.client.logs(job.name, tail=LOG_TAIL).decode("utf-8", "replace")
            except AgentError as exc:
                output = f"(output unavailable: {exc})"
            return ContainerExit(exit_code, output)
        finally:
            # best effort: a later attempt uses another name, and the agent's gc cleans up
            with contextlib.suppress(RunnerError):
                host.client.delete_instance(job.name)

    def _wait(self, host: GateHost, job: ContainerRun) -> int | None:
        deadline = self._clock() + job.timeout
        unknown = 0
        while True:
            try:
                view = host.client.instance(job.name)
            except RunnerError as exc:
                raise GateError(f"host {host.name}: lost the gate container: {exc}") from exc
            if view.get("state") in ("exited", "missing"):
                code = view.get("exit_code")
                if code is None:
                    code = view.get("last_exit_code")
                if isinstance(code, int):
                    return code
                # the agent may see the process gone a moment before its exit status is
                # recorded; a code that never comes is reported as 255
                unknown += 1
                if unknown > UNKNOWN_EXIT_POLLS:
                    return 255
            if self._clock() >= deadline:
                return None
            self._sleep(self._poll)
