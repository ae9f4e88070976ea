"""Steps and options from the configured form; counts and weights."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline import units
from pipeline.rollout.model import (
    Analysis,
    AnalysisChecks,
    Pause,
    RolloutOptions,
    SetWeight,
    canary_count,
    normalise_steps,
    options_from_spec,
    steps_from_spec,
)
from pipeline.rolloutspec import RolloutSettings

pytestmark = pytest.mark.unit


def test_configured_steps_convert_to_the_machine_steps() -> None:
    spec = RolloutSettings.model_validate(
        {
            "steps": [
                {"set_weight": 10},
                {"pause": "2m"},
                {
                    "analysis": {
                        "window": "1m",
                        "checks": {"max_error_rate": "1%", "max_p99_latency": "500ms"},
                        "failure_limit": 2,
                    }
                },
                {"pause": {}},
                {"set_weight": 100},
            ],
            "max_surge": 1,
            "max_unavailable": "10%",
            "abort_on_failure": False,
        }
    )
    assert steps_from_spec(spec.steps) == (
        SetWeight(10),
        Pause(timedelta(minutes=2)),
        Analysis(
            AnalysisChecks(0.01, timedelta(milliseconds=500), None),
            window=timedelta(minutes=1),
            interval=timedelta(seconds=10),
            failure_limit=2,
        ),
        Pause(None),
        SetWeight(100),
    )
    options = options_from_spec(spec)
    assert options == RolloutOptions(1, units.Percent(10), False)
    assert (options.surge(10), options.unavailable(10), options.unavailable(19)) == (1, 1, 1)
    assert RolloutOptions().surge(10) == 3  # 25 % rounds up


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [(10, 0, 0), (10, 1, 1), (10, 10, 1), (10, 11, 2), (3, 50, 2), (1, 1, 1), (4, 100, 4)],
)
def test_canary_count_rounds_up_and_is_at_least_one(
    replicas: int, weight: int, expected: int
) -> None:
    assert canary_count(replicas, weight) == expected


def test_steps_always_end_at_100_and_weights_must_increase() -> None:
    assert normalise_steps((SetWeight(10), Pause())) == (SetWeight(10), Pause(), SetWeight(100))
    assert normalise_steps((SetWeight(100),)) == (SetWeight(100),)
    with pytest.raises(ValueError, match="must increase step by step"):
        normalise_steps((SetWeight(50), SetWeight(20)))
    with pytest.raises(ValueError, match="from 0 to 100"):
        SetWeight(101)
