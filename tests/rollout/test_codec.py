"""The rollout state survives the store: JSON round trips, damaged documents are refused."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import units
from pipeline.rollout.codec import state_from_json, state_to_json
from pipeline.rollout.errors import RolloutError
from pipeline.rollout.events import AnalysisResult, Measurement, Start
from pipeline.rollout.machine import new_rollout
from pipeline.rollout.model import (
    Analysis,
    AnalysisChecks,
    Pause,
    RolloutOptions,
    SetWeight,
)
from tests.rollout.world import Driver, World

pytestmark = pytest.mark.unit

STEPS = (
    SetWeight(10),
    Pause(timedelta(seconds=5)),
    Analysis(
        AnalysisChecks(0.01, timedelta(milliseconds=250), 0.99),
        window=timedelta(seconds=20),
        interval=timedelta(seconds=5),
        failure_limit=1,
    ),
    SetWeight(50),
    Pause(),
)


@given(rounds=st.integers(0, 40), replicas=st.integers(1, 5), surge=st.integers(0, 50))
def test_every_state_on_the_way_round_trips(rounds: int, replicas: int, surge: int) -> None:
    options = RolloutOptions(max_surge=units.Percent(surge + 0.5), max_unavailable=1)
    state = new_rollout("demo", "prod", stable=1, replicas=replicas, steps=STEPS, options=options)
    d = Driver(state, World(instances={1: replicas}, router={1: 100}, stable=1))
    d.send(Start("s", 2))
    for n in range(rounds):
        d.round(timedelta(seconds=2))
        if d.state.analysis is not None:
            d.send(AnalysisResult(f"m{n}", d.state.step_index, d.now, Measurement(5, 0.5)))
        document = json.loads(json.dumps(state_to_json(d.state)))
        assert state_from_json(document) == d.state


def test_a_damaged_document_is_refused_with_advice() -> None:
    document = state_to_json(new_rollout("demo", "prod", stable=1, replicas=1, steps=STEPS))
    del document["steps"]
    with pytest.raises(RolloutError, match=r"stored rollout state is damaged .*KeyError"):
        state_from_json(document)
    with pytest.raises(RolloutError, match="format 9 is not 1"):
        state_from_json(
            {
                **state_to_json(new_rollout("a", "b", stable=None, replicas=1, steps=STEPS)),
                "format": 9,
            }
        )
