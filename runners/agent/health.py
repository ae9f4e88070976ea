"""Health of an instance: probe results folded into a state by thresholds (pure core).

:func:`observe` is the whole policy: ``healthy_threshold`` consecutive successes make an
instance healthy, ``unhealthy_threshold`` consecutive failures unhealthy, and failures
during ``start_period`` do not count while it has never been healthy. Probing itself
(:class:`Prober`) is the edge: HTTP and TCP connect to the container's address, or
from inside its network namespace when it has none reachable from the host; exec runs
a command in the container.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from runners.agent.model import HealthCheck
from runners.errors import NetworkError
from runners.net.nsthread import in_netns

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
NONE = "none"


@dataclass(frozen=True)
class HealthState:
    """Where an instance's health stands after the probes so far."""

    status: str = STARTING
    successes: int = 0
    failures: int = 0
    probes: int = 0
    last_error: str = ""


def observe(
    state: HealthState, check: HealthCheck, ok: bool, error: str, *, since_start: float
) -> HealthState:
    """The state after one probe result, ``since_start`` seconds after the run began."""
    probes = state.probes + 1
    if ok:
        successes = state.successes + 1
        status = HEALTHY if successes >= check.healthy_threshold else state.status
        return HealthState(status, successes, 0, probes, "")
    if state.status == STARTING and since_start < check.start_period:
        return replace(state, probes=probes, successes=0, last_error=error)
    failures = state.failures + 1
    status = UNHEALTHY if failures >= check.unhealthy_threshold else state.status
    return HealthState(status, 0, failures, probes, error)


@dataclass(frozen=True)
class ProbeTarget:
    """Where to probe: the instance's address, else its init pid's network namespace."""

    address: str | None
    pid: int | None


class Prober:
    """Runs one probe of a :class:`HealthCheck`; returns ``(ok, error)``."""

    def __init__(self, exec_probe: Callable[[list[str], float], tuple[int, str]]) -> None:
        self._exec = exec_probe

    def probe(self, check: HealthCheck, target: ProbeTarget) -> tuple[bool, str]:
        try:
            if check.kind == "exec":
                code, output = self._exec(list(check.command), check.timeout)
                if code == 0:
                    return True, ""
                return False, f"exec {' '.join(check.command)}: exit {code}: {output[-200:]}"
            assert check.port is not None
            if check.kind == "tcp":
                self._connect(target, check.port, check.timeout).close()
                return True, ""
            return self._http(check, target)
        except (OSError, NetworkError) as exc:
            return False, f"{check.kind} probe of port {check.port}: {exc}"

    def _connect(self, target: ProbeTarget, port: int, timeout: float) -> socket.socket:
        if target.address is not None:
            return socket.create_connection((target.address, port), timeout=timeout)
        if target.pid is None:
            raise OSError("the container is not running")
        # sockets made on a thread inside the container's namespace keep it for life
        return in_netns(
            f"/proc/{target.pid}/ns/net",
            lambda: socket.create_connection(("127.0.0.1", port), timeout=timeout),
        )

    def _http(self, check: HealthCheck, target: ProbeTarget) -> tuple[bool, str]:
        assert check.port is not None
        with self._connect(target, check.port, check.timeout) as sock:
            sock.settimeout(check.timeout)
            host = target.address or "127.0.0.1"
            sock.sendall(
                f"GET {check.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: berth-health\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split(" ")
        if len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400:
            return True, ""
        return False, f"GET {check.path} on port {check.port}: {status_line or 'no answer'}"
