"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against
uvicorn on 127.0.0.1 serving the routes over a real SQLite store. The test moves a
rollout in the store while the page is open and waits for the page to show it.

Chromium and Playwright are required: without them this test fails (it never skips).
Install them with ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``: the browser comes from Debian and is used offline).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Dialog, sync_playwright
from starlette.applications import Starlette

from pipeline.httpserve import bind
from pipeline.store import Clock, Store
from pipeline.web import StoreDashboardSource, StreamLimits, WebOptions, web_routes
from tests.web.support import HOSTILE, READ_TOKEN, advance, seed, token_auth

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
WAIT_MS = 15_000


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium", pytrace=False)
    return found


def artifacts(tmp_path: Path) -> Path:
    configured = os.environ.get("BERTH_TEST_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def serving(store: Store, clock: Clock) -> Iterator[str]:
    """The dashboard under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    source = StoreDashboardSource(
        store,
        environments=("dev", "functional-test", "perf-test", "pre-prod", "prod"),
        clock=clock,
    )
    limits = StreamLimits(poll=0.1, refresh=0.3, max_seconds=60)
    app = Starlette(routes=web_routes(source, token_auth(), options=WebOptions(stream=limits)))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the dashboard server did not start"
            assert thread.is_alive(), "the dashboard server thread died"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the dashboard server did not stop"


def test_the_page_follows_a_rollout_live(tmp_path: Path) -> None:
    executable = chromium()
    world = seed(tmp_path / "state")
    shot = artifacts(tmp_path) / "dashboard-rollout.png"
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    try:
        with serving(world.store, world.clock) as url, sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=str(tmp_path / "chromium-profile"),
                executable_path=executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1360, "height": 900},
            )
            try:
                page = context.new_page()
                page.on("dialog", on_dialog)
                page.goto(url + "/", timeout=WAIT_MS)
                assert page.url == url + "/login"
                page.fill("#token", READ_TOKEN)
                page.click("button[type=submit]")
                page.wait_for_url(url + "/", timeout=WAIT_MS)
                # the stream is open once the indicator says a rollout is being followed
                page.wait_for_selector('#live[data-state="rolling"]', timeout=WAIT_MS)
                weight = page.locator(".rollout .weight-value")
                assert weight.inner_text() == "10 %"
                assert "step 1 of 4" in page.locator(".rollout .step").inner_text()
                # a marker a reload would wipe out
                page.evaluate("window.__stayed = true")

                advance(world.store, world.rollout.id, weight=40, step_index=2)
                page.locator(".rollout .weight-value", has_text="40 %").wait_for(timeout=WAIT_MS)
                assert "step 3 of 4" in page.locator(".rollout .step").inner_text()
                shares = page.locator(".rollout .share-weight").all_inner_texts()
                assert shares == ["60 %", "40 %"]
                assert page.evaluate("window.__stayed === true")
                subject = page.locator(".cell[data-env='dev'] .subject").inner_text()
                assert subject == HOSTILE.splitlines()[0]
                page.screenshot(path=str(shot), full_page=True)

                current = world.store.get_rollout(world.rollout.id)
                world.store.update_rollout(
                    current.id, expected_version=current.version, phase="completed", finished=True
                )
                world.store.append_event(
                    "berth", "rollout.finished", source="system:test", app="web", env="prod"
                )
                page.wait_for_selector("[data-section='rollouts'] .empty", timeout=WAIT_MS)
                assert page.evaluate("window.__stayed === true")
            finally:
                context.close()
    finally:
        world.store.close()
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert dialogs == []  # nothing rendered from the store ran as script
