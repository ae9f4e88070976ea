"""The REST API's request and response bodies: pydantic models, serialised with the same
models the OpenAPI document is generated from, so the document cannot drift from the
answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.store import Build, Event, Release

COMMIT_PATTERN = "^([0-9a-f]{40}|[0-9a-f]{64})$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorDetail(_Model):
    code: str = Field(description="Stable error code for programs")
    message: str = Field(description="What failed and what to do")


class ErrorBody(_Model):
    """Every error answer."""

    error: ErrorDetail


class BuildOut(_Model):
    """A build: one commit of an app being turned into an image."""

    id: int
    ref: str = Field(description="The id as the CLI shows it, b-<id>")
    app: str
    commit: str
    state: Literal[
        "queued", "running", "succeeded", "failed", "skipped", "cancelled", "interrupted"
    ]
    reason: str
    digest: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, build: Build) -> BuildOut:
        return cls(
            id=build.id,
            ref=f"b-{build.id}",
            app=build.app,
            commit=build.commit,
            state=build.state.value,
            reason=build.reason,
            digest=build.digest,
            created_at=build.created_at,
            started_at=build.started_at,
            finished_at=build.finished_at,
        )


class ReleaseOut(_Model):
    """A release: a commit's image and the app spec it was built with."""

    id: int
    app: str
    commit: str
    digest: str
    author: str
    message: str
    created_at: datetime
    spec: dict[str, Any]

    @classmethod
    def of(cls, release: Release) -> ReleaseOut:
        return cls(
            id=release.id,
            app=release.app,
            commit=release.commit,
            digest=release.digest,
            author=release.author,
            message=release.message,
            created_at=release.created_at,
            spec=dict(release.spec),
        )


class AppOut(_Model):
    """A watched app and where it stands."""

    name: str
    repo: str
    branch: str
    webhook: str | None = Field(description="The webhook provider, if hooks are configured")
    poll_interval_seconds: float
    latest_build: BuildOut | None
    latest_release: ReleaseOut | None


class EventOut(_Model):
    """One audit-log entry."""

    id: int
    at: datetime
    actor: str
    action: str
    source: str
    app: str | None
    env: str | None
    release_id: int | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id,
            at=event.at,
            actor=event.actor,
            action=event.action,
            source=event.source,
            app=event.app,
            env=event.env,
            release_id=event.release_id,
            detail=dict(event.detail),
        )


class AppList(_Model):
    apps: list[AppOut]


class BuildList(_Model):
    builds: list[BuildOut]


class ReleaseList(_Model):
    releases: list[ReleaseOut]


class EventList(_Model):
    events: list[EventOut]


class TriggerIn(_Model):
    """Build a commit of an app: the branch head when no commit is given."""

    commit: str | None = Field(default=None, pattern=COMMIT_PATTERN)


class TriggerOut(_Model):
    result: Literal["queued", "exists"]
    build: BuildOut
    superseded: list[int]


class HookOut(_Model):
    """The app's own webhook path, for git hosts that cannot sign deliveries."""

    app: str
    provider: str
    path: str
