"""A rollout state as the JSON object the store keeps, and back (pure).

``state_from_json(state_to_json(s)) == s`` for every state. Times are ISO 8601 strings
with their UTC offset, durations are milliseconds, shares stay fractions of one. The
document carries ``format`` so that a later berth can read what this one wrote.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline import units
from pipeline.rollout.errors import RolloutError
from pipeline.rollout.model import (
    Allocation,
    Analysis,
    AnalysisChecks,
    AnalysisProgress,
    Observation,
    Pause,
    Phase,
    ReleaseHealth,
    RolloutOptions,
    RolloutState,
    SetWeight,
    Step,
)

__all__ = ["FORMAT", "state_from_json", "state_to_json"]

FORMAT = 1


def state_to_json(state: RolloutState) -> dict[str, Any]:
    """The JSON object for ``state``."""
    observed = state.observed
    progress = state.analysis
    return {
        "format": FORMAT,
        "app": state.app,
        "env": state.env,
        "stable": state.stable,
        "canary": state.canary,
        "replicas": state.replicas,
        "steps": [_step_to_json(step) for step in state.steps],
        "options": _options_to_json(state.options),
        "phase": str(state.phase),
        "step_index": state.step_index,
        "weight": state.weight,
        "allocations": [[a.release, a.replicas, a.weight] for a in state.allocations],
        "step_started_at": _time(state.step_started_at),
        "pause_until": _time(state.pause_until),
        "analysis": None
        if progress is None
        else {
            "step_index": progress.step_index,
            "started_at": _time(progress.started_at),
            "ends_at": _time(progress.ends_at),
            "measurements": progress.measurements,
            "failures": progress.failures,
            "last_failure": progress.last_failure,
        },
        "observed": None
        if observed is None
        else {
            "at": _time(observed.at),
            "releases": [[h.release, h.running, h.healthy, h.failed] for h in observed.releases],
        },
        "target": state.target,
        "failure": state.failure,
        "lost_hosts": list(state.lost_hosts),
        "settled": state.settled,
        "generation": state.generation,
        "applied": list(state.applied),
    }


def state_from_json(doc: Any) -> RolloutState:
    """The state ``doc`` describes; :class:`RolloutError` when it is not one."""
    try:
        if doc.get("format") != FORMAT:
            raise RolloutError(
                f"rollout state format {doc.get('format')!r} is not {FORMAT}: "
                "it was written by another version of berth"
            )
        analysis = doc["analysis"]
        observed = doc["observed"]
        return RolloutState(
            app=str(doc["app"]),
            env=str(doc["env"]),
            stable=_opt_int(doc["stable"]),
            canary=_opt_int(doc["canary"]),
            replicas=int(doc["replicas"]),
            steps=tuple(_step_from_json(step) for step in doc["steps"]),
            options=_options_from_json(doc["options"]),
            phase=Phase(doc["phase"]),
            step_index=int(doc["step_index"]),
            weight=int(doc["weight"]),
            allocations=tuple(Allocation(int(r), int(n), int(w)) for r, n, w in doc["allocations"]),
            step_started_at=_parse_time(doc["step_started_at"]),
            pause_until=_parse_time(doc["pause_until"]),
            analysis=None
            if analysis is None
            else AnalysisProgress(
                step_index=int(analysis["step_index"]),
                started_at=_required_time(analysis["started_at"]),
                ends_at=_required_time(analysis["ends_at"]),
                measurements=int(analysis["measurements"]),
                failures=int(analysis["failures"]),
                last_failure=str(analysis["last_failure"]),
            ),
            observed=None
            if observed is None
            else Observation(
                at=_required_time(observed["at"]),
                releases=tuple(
                    ReleaseHealth(int(r), int(run), int(ok), int(bad))
                    for r, run, ok, bad in observed["releases"]
                ),
            ),
            target=_opt_int(doc["target"]),
            failure=str(doc["failure"]),
            lost_hosts=tuple(str(h) for h in doc["lost_hosts"]),
            settled=bool(doc["settled"]),
            generation=int(doc["generation"]),
            applied=tuple(str(i) for i in doc["applied"]),
        )
    except RolloutError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RolloutError(
            f"stored rollout state is damaged ({type(exc).__name__}: {exc}); "
            "abort the rollout and start it again"
        ) from exc


def _step_to_json(step: Step) -> dict[str, Any]:
    if isinstance(step, SetWeight):
        return {"set_weight": step.weight}
    if isinstance(step, Pause):
        return {"pause": None if step.duration is None else _ms(step.duration)}
    checks = step.checks
    return {
        "analysis": {
            "window": _ms(step.window),
            "interval": _ms(step.interval),
            "failure_limit": step.failure_limit,
            "max_error_rate": checks.max_error_rate,
            "max_p99_latency": None
            if checks.max_p99_latency is None
            else _ms(checks.max_p99_latency),
            "min_health_success": checks.min_health_success,
        }
    }


def _step_from_json(doc: dict[str, Any]) -> Step:
    if "set_weight" in doc:
        return SetWeight(int(doc["set_weight"]))
    if "pause" in doc:
        return Pause(None if doc["pause"] is None else _from_ms(doc["pause"]))
    spec = doc["analysis"]
    p99 = spec["max_p99_latency"]
    return Analysis(
        checks=AnalysisChecks(
            max_error_rate=_opt_float(spec["max_error_rate"]),
            max_p99_latency=None if p99 is None else _from_ms(p99),
            min_health_success=_opt_float(spec["min_health_success"]),
        ),
        window=_from_ms(spec["window"]),
        interval=_from_ms(spec["interval"]),
        failure_limit=int(spec["failure_limit"]),
    )


def _options_to_json(options: RolloutOptions) -> dict[str, Any]:
    return {
        "max_surge": _count_to_json(options.max_surge),
        "max_unavailable": _count_to_json(options.max_unavailable),
        "abort_on_failure": options.abort_on_failure,
        "progress_deadline": _ms(options.progress_deadline),
    }


def _options_from_json(doc: dict[str, Any]) -> RolloutOptions:
    return RolloutOptions(
        max_surge=_count_from_json(doc["max_surge"]),
        max_unavailable=_count_from_json(doc["max_unavailable"]),
        abort_on_failure=bool(doc["abort_on_failure"]),
        progress_deadline=_from_ms(doc["progress_deadline"]),
    )


def _count_to_json(count: int | units.Percent) -> int | str:
    return count if isinstance(count, int) else f"{count.value!r}%"


def _count_from_json(value: int | str) -> int | units.Percent:
    return value if isinstance(value, int) else units.Percent(float(value.removesuffix("%")))


def _ms(value: timedelta) -> int:
    return value // timedelta(milliseconds=1)


def _from_ms(value: int) -> timedelta:
    return timedelta(milliseconds=int(value))


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return parsed


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
