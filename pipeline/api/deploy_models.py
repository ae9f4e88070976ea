"""Request and response bodies of the deploy endpoints (promotion, approvals, locks,
rollouts, gates), in the same pydantic style as :mod:`pipeline.api.models` so the
OpenAPI document is generated from the models the answers are serialised with.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.api.models import _Model


class ReleaseRef(_Model):
    """A release as status shows it: id, commit and image digest."""

    id: int
    commit: str
    digest: str


class RolloutOut(_Model):
    """A rollout in progress: the release it moves to, its phase and where it stands."""

    id: int
    to_release: int
    phase: str
    weight: int = Field(description="The new release's share of traffic, in percent")
    step: int = Field(description="Index of the current step (0-based)")
    steps: int = Field(description="How many steps the rollout has (0: unknown)")
    traffic: dict[str, int] = Field(description="Release id -> share of traffic, in percent")
    health: dict[str, dict[str, int]] = Field(
        description="Release id -> instances running, healthy and failed, as last observed"
    )
    failure: str = ""


class GateOut(_Model):
    """The environment's gate and how the stable release fares at it."""

    kind: str
    release: int | None = None
    status: str | None = None
    message: str | None = None


class ApprovalsOut(_Model):
    release: int
    given: list[str]
    required: int
    missing: int


class LockOut(_Model):
    holder: str
    reason: str
    since: str


class WaitingOut(_Model):
    """A release that passed the previous environment and is not here yet."""

    release: int
    from_env: str
    held: str = Field(description="Why it waits (auto-promotion held, or: promote by hand)")


class EnvironmentStatus(_Model):
    """One app in one environment."""

    app: str
    env: str
    stable: ReleaseRef | None
    previous: ReleaseRef | None
    pinned: bool
    rollout: RolloutOut | None
    gate: GateOut
    approvals: ApprovalsOut | None
    lock: LockOut | None
    waiting: WaitingOut | None
    url: str | None = Field(description="The environment's entry address, once it has one")


class StatusList(_Model):
    environments: list[EnvironmentStatus]


class HistoryEntry(_Model):
    """One promotion into an environment and how it ended."""

    release: int
    commit: str | None
    digest: str | None
    promoted_by: str
    source: str
    at: str
    forced: bool
    from_env: str | None
    outcome: str
    message: str


class HistoryList(_Model):
    app: str
    env: str
    entries: list[HistoryEntry]


class PromoteIn(_Model):
    """Promote the candidate (or ``release``) into the environment; ``force`` needs admin."""

    release: int | None = Field(default=None, ge=1)
    force: bool = False


class ApproveIn(_Model):
    """Approve the release running in the environment (or check it is ``release``)."""

    release: int | None = Field(default=None, ge=1)
    comment: str = Field(default="", max_length=1000)


class LockIn(_Model):
    reason: str = Field(min_length=1, max_length=1000)


class UnlockIn(_Model):
    """Release the lock; someone else's only with ``force`` (admin)."""

    force: bool = False


class RollbackIn(_Model):
    """Return to the previous release, or to release ``to``."""

    to: int | None = Field(default=None, ge=1)


class DecisionOut(_Model):
    """What a promotion or approval did."""

    app: str
    env: str
    release: int | None
    message: str
    forced: bool
    overridden: list[str]


class LockResult(_Model):
    app: str
    env: str
    locked: bool
    changed: bool
    lock: LockOut | None


class UrlOut(_Model):
    app: str
    env: str
    url: str


class GateRun(_Model):
    """One recorded gate result, with the (masked) output of the gate's container."""

    app: str
    env: str
    release: int
    gate: str
    status: str
    message: str
    output: str
    at: str
    report: dict[str, Any] | None = None
