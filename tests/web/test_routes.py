"""The dashboard's routes through Starlette's TestClient: sign-in, escaping, the stream."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from pipeline.store import FixedClock
from pipeline.web import (
    DashboardAuth,
    DashboardData,
    StoreDashboardSource,
    StreamLimits,
    WebOptions,
    web_routes,
)
from pipeline.web.model import BuildLogView, ReleaseRef, RolloutView, TrafficShare
from pipeline.web.session import COOKIE
from tests.web.support import (
    DEPLOY_TOKEN,
    HOSTILE,
    HOSTILE_LOCK,
    READ_TOKEN,
    World,
    seed,
    token_auth,
)

with warnings.catch_warnings():
    # starlette's testclient touches an alias this anyio release deprecates, at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.unit

FAST = StreamLimits(poll=0.01, refresh=0.01, max_seconds=5, max_events=3)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = seed(tmp_path)
    yield world
    world.store.close()


def app_for(world: World, limits: StreamLimits = FAST) -> Starlette:
    source = StoreDashboardSource(world.store, environments=("dev", "prod"), logs=world.logs)
    return Starlette(routes=web_routes(source, token_auth(), options=WebOptions(stream=limits)))


def signed_in(client: TestClient, token: str = READ_TOKEN) -> None:
    response = client.post("/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text


def sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == "snapshot":
            events.append(json.loads(lines["data"]))
    return events


def test_pages_need_a_session(world: World) -> None:
    with TestClient(app_for(world)) as client:
        page = client.get("/", follow_redirects=False)
        build = client.get(f"/builds/{world.build.id}", follow_redirects=False)
        stream = client.get("/events")
        form = client.get("/login")
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    assert build.status_code == 303
    assert stream.status_code == 401
    assert "sign in" in stream.json()["error"]
    assert form.status_code == 200
    assert 'name="token"' in form.text


@pytest.mark.parametrize(
    "token", ["", "nope", READ_TOKEN[:-1], READ_TOKEN[:-1] + "X", READ_TOKEN + "0", "Bearer x"]
)
def test_wrong_tokens_are_refused(world: World, token: str) -> None:
    with TestClient(app_for(world)) as client:
        response = client.post("/login", data={"token": token}, follow_redirects=False)
        after = client.get("/", follow_redirects=False)
    assert response.status_code == 401
    assert "not valid" in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")
    assert after.status_code == 303


def test_a_valid_token_gives_an_httponly_strict_session(world: World) -> None:
    with TestClient(app_for(world)) as client:
        response = client.post("/login", data={"token": READ_TOKEN}, follow_redirects=False)
        page = client.get("/")
        logout = client.post("/logout", follow_redirects=False)
        client.cookies.clear()
        after = client.get("/", follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert READ_TOKEN not in cookie
    assert page.status_code == 200
    assert "signed in as <strong>viewer</strong>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert logout.status_code == 303
    assert f'{COOKIE}=""' in logout.headers["set-cookie"]
    assert after.status_code == 303


def test_a_deploy_token_may_read_too(world: World) -> None:
    with TestClient(app_for(world)) as client:
        signed_in(client, DEPLOY_TOKEN)
        page = client.get("/")
    assert page.status_code == 200
    assert "<strong>ci</strong>" in page.text


def test_a_bearer_header_works_without_a_session(world: World) -> None:
    with TestClient(app_for(world)) as client:
        good = client.get("/", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        bad = client.get(
            "/", headers={"Authorization": f"Bearer {READ_TOKEN}x"}, follow_redirects=False
        )
    assert good.status_code == 200
    assert "web" in good.text
    assert bad.status_code == 303


def test_forged_tampered_and_expired_sessions_are_refused() -> None:
    clock = FixedClock()
    auth = DashboardAuth(token_auth(), clock=clock, lifetime=timedelta(minutes=10))
    principal = auth.check_token(READ_TOKEN)
    assert principal is not None
    value = auth.issue(principal)
    payload, _, signature = value.partition(".")
    other = DashboardAuth(token_auth(), clock=clock).issue(principal)
    assert auth.verify(value) == "viewer"
    assert (
        auth.verify(payload + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B")) is None
    )
    assert auth.verify(other) is None  # signed under another key
    assert auth.verify(payload) is None
    assert auth.verify("not.base64!") is None
    clock.advance(timedelta(minutes=10))
    assert auth.verify(value) is None


def test_user_controlled_text_is_escaped(world: World) -> None:
    with TestClient(app_for(world)) as client:
        signed_in(client)
        page = client.get("/").text
        log = client.get(f"/builds/{world.build.id}").text
        missing = client.get(f"/builds/{world.build.id + 50}")
    first_line = HOSTILE.splitlines()[0]
    assert first_line not in page
    assert "<script>alert" not in page
    assert "<b>tags</b>" not in page
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in page
    assert HOSTILE_LOCK not in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "zone=&lt;b&gt;" in page
    assert "<b>not bold</b>" not in log
    assert "&lt;b&gt;not bold&lt;/b&gt;" in log
    assert missing.status_code == 404


def test_static_files_are_served(world: World) -> None:
    with TestClient(app_for(world)) as client:
        css = client.get("/static/dashboard.css")
        js = client.get("/static/dashboard.js")
    assert css.status_code == 200
    assert ".matrix" in css.text
    assert js.status_code == 200
    assert "EventSource" in js.text


def test_the_stream_sends_the_sections(world: World) -> None:
    with TestClient(app_for(world)) as client:
        signed_in(client)
        response = client.get("/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("retry: ")
    events = sse_events(response.text)
    assert len(events) == 3  # bounded by max_events; a rollout is active so it refreshes
    first = events[0]
    assert first["rolling"] is True
    sections = first["sections"]
    assert isinstance(sections, dict)
    assert set(sections) == {"notes", "rollouts", "matrix", "history", "builds", "hosts"}
    assert "10 %" in sections["rollouts"]
    assert events[1]["sections"] == {}  # nothing changed: no section is sent again


def test_the_stream_refuses_when_full(world: World) -> None:
    with TestClient(app_for(world, replace(FAST, max_streams=0))) as client:
        signed_in(client)
        response = client.get("/events")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


class Scripted:
    """A dashboard source that plays a list of snapshots, one per event-log entry."""

    def __init__(self, snapshots: list[DashboardData]) -> None:
        self.snapshots = snapshots
        self.calls = 0

    def latest_event_id(self) -> int:
        return min(self.calls, len(self.snapshots) - 1) + 1

    def snapshot(self) -> DashboardData:
        data = self.snapshots[min(self.calls, len(self.snapshots) - 1)]
        self.calls += 1
        return data

    def build_log(self, build_id: int) -> BuildLogView | None:
        return None


def test_the_stream_sends_only_what_changed(world: World) -> None:
    canary = ReleaseRef(2, "b" * 40, "sha256:" + "2" * 64)
    view = RolloutView(
        1,
        "web",
        "prod",
        "progressing",
        1,
        3,
        "set weight 10 %",
        10,
        canary,
        shares=(TrafficShare(2, "canary", 10),),
    )
    base = DashboardData(generated_at=world.clock.now(), apps=("web",), rollouts=(view,))
    later = replace(
        base,
        last_event_id=2,
        rollouts=(replace(view, weight=40, shares=(TrafficShare(2, "canary", 40),)),),
    )
    source = Scripted([replace(base, last_event_id=1), later])
    limits = replace(FAST, max_events=2, refresh=60)
    app = Starlette(routes=web_routes(source, token_auth(), options=WebOptions(stream=limits)))
    with TestClient(app) as client:
        response = client.get("/events", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    first, second = sse_events(response.text)
    assert first["event_id"] == 1
    assert second["event_id"] == 2
    assert "10 %" in str(first["sections"])
    assert set(second["sections"]) == {"rollouts"}
    assert "40 %" in second["sections"]["rollouts"]
