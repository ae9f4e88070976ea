"""Rollout steps and options as written in the service config and in an app's berth.yml.

A rollout is a list of steps, each a mapping with exactly one key::

    - set_weight: 10            # 10 % of instances and traffic on the new release
    - pause: 2m                 # wait two minutes
    - analysis:                 # measure, roll back if the checks fail
        window: 2m
        checks: {max_error_rate: 1%, max_p99_latency: 500ms}
    - pause: {}                 # wait until someone runs `berth promote`

In Python the steps are a tagged union, ``SetWeight | Pause | AnalysisStep``;
:func:`check_steps` holds the rules that span steps (weights must strictly increase).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    Tag,
    WithJsonSchema,
    model_validator,
)

from pipeline import units
from pipeline.configmodel import (
    TAG_PREFIX,
    Bool,
    ConfigModel,
    Count,
    NonEmpty,
    PercentField,
    PositiveDuration,
)
from pipeline.yamldoc import KeyPath

__all__ = [
    "Analysis",
    "AnalysisChecks",
    "AnalysisStep",
    "Pause",
    "RolloutSettings",
    "RolloutStep",
    "SetWeight",
    "check_steps",
]


class SetWeight(ConfigModel):
    """Move this share of instances and of traffic to the new release."""

    set_weight: Annotated[int, Strict(), Field(ge=0, le=100)]
    """Percent of instances (rounded up, at least one) and of traffic on the new release."""


def _pause(value: object) -> timedelta | None:
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k != "duration")
        if unknown:
            raise ValueError(
                f"unknown key {units.show_value(unknown[0])} in pause; write pause: 2m, "
                "pause: {duration: 2m} or pause: {} (wait for berth promote)"
            )
        if "duration" not in value:
            return None
        value = value["duration"]
    if value is None:
        raise ValueError("must be a duration like 2m, or {} to wait until someone promotes")
    return units.parse_duration(value, minimum=timedelta(milliseconds=1))


class Pause(ConfigModel):
    """Wait: for a duration, or (``pause: {}``) until someone promotes the rollout."""

    pause: Annotated[
        timedelta | None,
        PlainValidator(_pause),
        PlainSerializer(lambda d: {} if d is None else units.format_duration(d)),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": units.DURATION_PATTERN},
                    {
                        "type": "object",
                        "properties": {
                            "duration": {"type": "string", "pattern": units.DURATION_PATTERN}
                        },
                        "additionalProperties": False,
                    },
                ]
            }
        ),
    ]
    """How long to wait (``2m``), or ``{}`` to wait for ``berth promote``."""

    @property
    def indefinite(self) -> bool:
        """True for ``pause: {}``: only a person moves the rollout on."""
        return self.pause is None


class AnalysisChecks(ConfigModel):
    """Thresholds measured over an analysis window; any one failing fails the measurement."""

    max_error_rate: PercentField | None = None
    """Highest share of failed requests (5xx or connection errors), e.g. 1%."""
    max_p99_latency: PositiveDuration | None = None
    """Highest 99th-percentile response time, e.g. 500ms."""
    min_health_success: PercentField | None = None
    """Lowest share of successful health probes of the new instances, e.g. 99%."""

    @model_validator(mode="after")
    def _at_least_one(self) -> AnalysisChecks:
        if (self.max_error_rate, self.max_p99_latency, self.min_health_success) == (None,) * 3:
            raise ValueError(
                "name at least one check: max_error_rate, max_p99_latency or min_health_success"
            )
        return self


class Analysis(ConfigModel):
    """Measure the new release for a while; too many failed measurements roll it back."""

    window: PositiveDuration = Field(default="2m")  # type: ignore[assignment]
    """How long to measure."""
    interval: PositiveDuration = Field(default="10s")  # type: ignore[assignment]
    """How often to take a measurement within the window."""
    checks: AnalysisChecks
    """What a measurement checks."""
    failure_limit: Annotated[int, Strict(), Field(ge=0)] = 0
    """How many failed measurements to tolerate before rolling back."""

    @model_validator(mode="after")
    def _interval_fits(self) -> Analysis:
        if self.interval > self.window:
            raise ValueError(
                f"interval ({units.format_duration(self.interval)}) must not be longer than "
                f"window ({units.format_duration(self.window)})"
            )
        return self


class AnalysisStep(ConfigModel):
    """An analysis step: ``{analysis: {...}}``."""

    analysis: Analysis


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in ("set_weight", "pause", "analysis"):
            return TAG_PREFIX + str(key)
    for cls, key in ((SetWeight, "set_weight"), (Pause, "pause"), (AnalysisStep, "analysis")):
        if isinstance(value, cls):
            return TAG_PREFIX + key
    return None


RolloutStep = Annotated[
    Annotated[SetWeight, Tag(TAG_PREFIX + "set_weight")]
    | Annotated[Pause, Tag(TAG_PREFIX + "pause")]
    | Annotated[AnalysisStep, Tag(TAG_PREFIX + "analysis")],
    Discriminator(
        _step_kind,
        custom_error_type="rollout_step",
        custom_error_message=(
            "a rollout step is a mapping with exactly one key: set_weight: N, "
            "pause: DURATION (or {}), or analysis: {...}"
        ),
    ),
]


class RolloutSettings(ConfigModel):
    """How an environment moves from its stable release to a new one."""

    steps: Annotated[tuple[RolloutStep, ...], NonEmpty] = Field(
        default=({"set_weight": 100},)  # type: ignore[arg-type]
    )
    """The steps, in order; weights must strictly increase. Default: all at once."""
    max_surge: Count = Field(default="25%")  # type: ignore[assignment]
    """Extra instances allowed above replicas during the rollout (a count or a percentage)."""
    max_unavailable: Count = 0
    """Instances allowed to be unready during the rollout (a count or a percentage)."""
    abort_on_failure: Bool = True
    """Roll back to the stable release at once when a step fails."""

    @model_validator(mode="after")
    def _can_progress(self) -> RolloutSettings:
        if self.max_surge in (0, units.Percent(0)) and self.max_unavailable in (
            0,
            units.Percent(0),
        ):
            raise ValueError(
                "max_surge and max_unavailable are both 0, so no instance could ever be "
                "replaced; raise one of them"
            )
        return self


def check_steps(steps: tuple[SetWeight | Pause | AnalysisStep, ...]) -> list[tuple[KeyPath, str]]:
    """Rules across steps: weights strictly increase. Paths are relative to ``steps``."""
    problems: list[tuple[KeyPath, str]] = []
    previous: int | None = None
    for index, step in enumerate(steps):
        if isinstance(step, SetWeight):
            if previous is not None and step.set_weight <= previous:
                problems.append(
                    (
                        (index, "set_weight"),
                        f"must be more than the previous weight {previous} "
                        f"(got {step.set_weight}); weights must increase step by step",
                    )
                )
            previous = step.set_weight
    return problems
