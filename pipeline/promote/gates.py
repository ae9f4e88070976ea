"""Gates: what a release must pass in an environment before it may move on.

A gate run returns a :class:`GateResult`, shaped like Kargo's promotion ``StepResult``:
a status, a message, the output, a report, and how to retry. ``failed`` means the
*release* failed (the tests exited non-zero, the load missed a threshold) and is final;
``errored`` means the gate could not run (no entry address, agent unreachable) and is
retried after ``retry_after`` unless ``terminal``.

- functional: the app spec's ``tests.functional`` command in a container from the
  release's own image, on a host of the environment, with ``BERTH_TARGET_URL`` set to
  the environment's entry address; exit 0 within the timeout passes. Containers run
  through a :class:`GateRunner` (:class:`~pipeline.promote.agentrunner.AgentGateRunner`
  on berth agents, :class:`ProcessGateRunner` as a local process).
- perf: the built-in load generator against the entry address, compared with the app
  spec's ``tests.perf`` thresholds; the report goes on the result.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from pipeline.appspec import AppSpec
from pipeline.promote.errors import GateError
from pipeline.promote.loadgen import (
    LoadProfile,
    LoadReport,
    check_thresholds,
    generate_load,
    profile_from_spec,
)

__all__ = [
    "OUTPUT_LIMIT",
    "TARGET_URL_VARIABLE",
    "ContainerExit",
    "ContainerRun",
    "GateResult",
    "GateRunner",
    "GateStatus",
    "ProcessGateRunner",
    "run_functional_gate",
    "run_perf_gate",
]

TARGET_URL_VARIABLE = "BERTH_TARGET_URL"
OUTPUT_LIMIT = 64 * 1024
"""Bytes of gate output kept (the end of it, where test runners print their summary)."""

DEFAULT_RETRY = timedelta(seconds=30)


class GateStatus(StrEnum):
    """How a gate run ended (or that it still runs)."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"


@dataclass(frozen=True)
class GateResult:
    """One gate run's outcome (see the module docstring for failed vs errored)."""

    gate: str
    status: GateStatus
    message: str
    output: str = ""
    report: Mapping[str, Any] | None = None
    retry_after: timedelta | None = None
    terminal: bool = False

    @property
    def retryable(self) -> bool:
        return self.status is GateStatus.ERRORED and not self.terminal

    def to_json(self) -> dict[str, Any]:
        """The event detail recording this result."""
        doc: dict[str, Any] = {"gate": self.gate, "status": self.status.value}
        doc["message"] = self.message
        if self.output:
            doc["output"] = self.output
        if self.report is not None:
            doc["report"] = dict(self.report)
        if self.retry_after is not None:
            doc["retry_after_s"] = self.retry_after.total_seconds()
        if self.terminal:
            doc["terminal"] = True
        return doc


@dataclass(frozen=True)
class ContainerRun:
    """A one-shot container for a gate: run ``command`` from ``image`` until it exits."""

    name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    host_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerExit:
    """How a gate container ended: its exit code (None: killed at the timeout) and output."""

    exit_code: int | None
    output: str


class GateRunner(Protocol):
    """Runs a gate's container to completion; raises :class:`GateError` when it cannot
    run at all (so the gate errs and is retried, rather than failing the release)."""

    def run(self, job: ContainerRun) -> ContainerExit: ...


class ProcessGateRunner:
    """Runs the gate command as a local process instead of a container (hosts without
    a container runtime, and tests). The image is not used; the environment is: only
    ``PATH`` of this process plus the job's variables reach the command."""

    def __init__(self, *, cwd: str | None = None) -> None:
        self._cwd = cwd

    def run(self, job: ContainerRun) -> ContainerExit:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **job.env}
        try:
            done = subprocess.run(
                list(job.command),
                env=env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=job.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return ContainerExit(None, _text(exc.stdout))
        except FileNotFoundError:
            return ContainerExit(127, f"{job.command[0]}: command not found")
        except OSError as exc:
            raise GateError(f"cannot start gate command {job.command[0]}: {exc.strerror}") from exc
        return ContainerExit(done.returncode, _text(done.stdout))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def _tail(text: str, mask: Callable[[str], str]) -> str:
    masked = mask(text)
    encoded = masked.encode("utf-8")
    if len(encoded) <= OUTPUT_LIMIT:
        return masked
    return "[…]" + encoded[-OUTPUT_LIMIT:].decode("utf-8", "ignore")


def _no_mask(text: str) -> str:
    return text


def run_functional_gate(
    spec: AppSpec,
    *,
    name: str,
    image: str,
    target_url: str | None,
    runner: GateRunner,
    variables: Mapping[str, str] | None = None,
    host_selector: Mapping[str, str] | None = None,
    mask: Callable[[str], str] = _no_mask,
) -> GateResult:
    """Run the functional tests of ``spec`` from ``image`` against ``target_url``."""
    tests = spec.tests.functional
    if tests is None:
        return GateResult(
            "functional",
            GateStatus.FAILED,
            "berth.yml has no tests/functional; add a test command, or set this "
            "environment's gate to none",
            terminal=True,
        )
    if target_url is None:
        return GateResult(
            "functional",
            GateStatus.ERRORED,
            "the environment has no entry address yet (is its router up?)",
            retry_after=DEFAULT_RETRY,
        )
    timeout = tests.timeout.total_seconds()
    job = ContainerRun(
        name=name,
        image=image,
        command=tuple(tests.command),
        env={**(variables or {}), TARGET_URL_VARIABLE: target_url},
        timeout=timeout,
        host_selector=dict(host_selector or {}),
    )
    try:
        ended = runner.run(job)
    except GateError as exc:
        return GateResult(
            "functional", GateStatus.ERRORED, mask(str(exc)), retry_after=DEFAULT_RETRY
        )
    output = _tail(ended.output, mask)
    if ended.exit_code is None:
        return GateResult(
            "functional",
            GateStatus.FAILED,
            f"timed out after {timeout:g}s (tests/functional/timeout)",
            output,
            terminal=True,
        )
    if ended.exit_code != 0:
        return GateResult(
            "functional", GateStatus.FAILED, f"exit {ended.exit_code}", output, terminal=True
        )
    return GateResult("functional", GateStatus.PASSED, "exit 0", output)


def run_perf_gate(
    spec: AppSpec,
    *,
    target_url: str | None,
    generate: Callable[[LoadProfile], LoadReport] = generate_load,
) -> GateResult:
    """Drive the load of ``spec``'s ``tests.perf`` against ``target_url`` and judge it."""
    perf = spec.tests.perf
    if perf is None:
        return GateResult(
            "perf",
            GateStatus.FAILED,
            "berth.yml has no tests/perf; add thresholds, or set this environment's gate to none",
            terminal=True,
        )
    if target_url is None:
        return GateResult(
            "perf",
            GateStatus.ERRORED,
            "the environment has no entry address yet (is its router up?)",
            retry_after=DEFAULT_RETRY,
        )
    report = generate(profile_from_spec(target_url, perf))
    problems = check_thresholds(report, perf)
    summary = (
        f"{report.requests} requests, {report.rps:.1f} req/s, p95 {report.p95 * 1000:.1f} ms, "
        f"p99 {report.p99 * 1000:.1f} ms, errors {report.error_rate:.2%}"
    )
    if problems:
        return GateResult(
            "perf",
            GateStatus.FAILED,
            "; ".join(problems) + f" ({summary})",
            report=report.to_json(),
            terminal=True,
        )
    return GateResult("perf", GateStatus.PASSED, summary, report=report.to_json())
