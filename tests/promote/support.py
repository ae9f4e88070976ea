"""Shared pieces of the promotion and chat-ops tests: a service config with the five
environments, a store, releases, and real local HTTP servers (a Starlette app under
uvicorn with controllable latency and errors; a recorder of posted JSON)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.appspec import AppSpec
from pipeline.httpserve import bind
from pipeline.promote.gates import ProcessGateRunner
from pipeline.promote.loadgen import LoadProfile, LoadReport, generate_load
from pipeline.promote.rollouts import StaticEntryPoints, SwitchRollouts
from pipeline.promote.service import PromotionService
from pipeline.secrets import Secrets
from pipeline.settings import Settings, parse_settings, resolve_secrets
from pipeline.store import Release, Store, default_url

SLACK_SECRET = "slack-signing-5ec2e7-value"
MATTERMOST_TOKEN = "mm-token-7f3a1c-value"
DB_PASSWORD = "db-password-9d8e7f-value"
ENVIRON = {
    "SLACK_SIGNING": SLACK_SECRET,
    "MM_TOKEN": MATTERMOST_TOKEN,
    "DEMO_DB_PASSWORD": DB_PASSWORD,
    "ADMIN_TOKEN": "admin-token-value-1",
    "DEPLOY_TOKEN": "deploy-token-value-2",
}

CONFIG = """
cluster: {hosts: 1}
apps:
  - {name: demo, repo: "https://git.example.com/demo.git"}
api_tokens:
  - {name: root, token: {env: ADMIN_TOKEN}, scopes: [admin]}
  - {name: ci, token: {env: DEPLOY_TOKEN}, scopes: [deploy]}
environments:
  - name: dev
    secrets: {DB_PASSWORD: {env: DEMO_DB_PASSWORD}}
  - {name: functional-test, gate: functional, variables: {MODE: test}}
  - {name: perf-test, gate: perf}
  - name: pre-prod
    gate: approval
    approval: {required: 1, approvers: [alice, bob, carol]}
  - name: prod
    gate: approval
    approval: {required: 2, approvers: [alice, bob, carol]}
chatops:
  slack:
    signing_secret: {env: SLACK_SIGNING}
    users: {U01ALICE: alice, U02BOB: bob, U03CAROL: carol, U09MAL: mallory}
  mattermost:
    token: {env: MM_TOKEN}
    users: {mm-alice: alice, mm-mallory: mallory}
"""


def settings(tmp_path: Path, text: str = CONFIG) -> tuple[Settings, Secrets]:
    parsed = parse_settings(text, base_dir=tmp_path)
    return parsed, resolve_secrets(parsed, ENVIRON)


def spec(
    command: tuple[str, ...] = ("sh", "-c", 'test -n "$BERTH_TARGET_URL"'),
    **perf: Any,
) -> dict[str, Any]:
    thresholds = perf or {"max_p95_latency": "2s", "max_error_rate": "5%"}
    doc = {
        "tests": {
            "functional": {"command": list(command), "timeout": "20s"},
            "perf": {"requests": 20, "concurrency": 4, **thresholds},
        }
    }
    return AppSpec.model_validate(doc).model_dump(mode="json")


def new_release(store: Store, number: int, release_spec: Mapping[str, Any]) -> Release:
    commit = hashlib.sha1(f"commit {number}".encode()).hexdigest()
    digest = "sha256:" + hashlib.sha256(f"image {number}".encode()).hexdigest()
    release, _ = store.create_release("demo", commit, digest, release_spec)
    return release


@dataclass
class Harness:
    store: Store
    service: PromotionService
    settings: Settings
    secrets: Secrets
    loads: list[LoadProfile] = field(default_factory=list)


@contextmanager
def harness(tmp_path: Path, target_url: str, *, text: str = CONFIG) -> Iterator[Harness]:
    """A promotion service on a SQLite store, with instant rollouts, local gate processes
    and the real load generator against ``target_url``."""
    config, secrets = settings(tmp_path, text)
    store = Store.open(default_url(tmp_path))
    store.upsert_app("demo", "https://git.example.com/demo.git", "main")
    loads: list[LoadProfile] = []

    def load(profile: LoadProfile) -> LoadReport:
        loads.append(profile)
        return generate_load(profile)

    values = secrets.revealed_values()

    def mask(text: str) -> str:
        for value in values:
            text = text.replace(value, "******")
        return text

    entry = StaticEntryPoints({("demo", e.name): target_url for e in config.environments})
    service = PromotionService(
        store,
        config,
        rollouts=SwitchRollouts(store),
        gate_runner=ProcessGateRunner(cwd=str(tmp_path)),
        entry_points=entry,
        load=load,
        mask=mask,
    )
    try:
        yield Harness(store, service, config, secrets, loads)
    finally:
        store.close()


# --- a target app under uvicorn ---------------------------------------------------------


@dataclass
class Behaviour:
    """How the target app answers: sleep ``delay`` seconds; every ``fail_every``-th
    request (0: none) answers 500."""

    delay: float = 0.0
    fail_every: int = 0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def target_app(behaviour: Behaviour) -> Starlette:
    async def root(request: Request) -> Response:
        with behaviour.lock:
            behaviour.count += 1
            number = behaviour.count
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.fail_every and number % behaviour.fail_every == 0:
            return PlainTextResponse("boom", status_code=500)
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", root)])


@contextmanager
def serve_target(behaviour: Behaviour) -> Iterator[str]:
    """The target app on 127.0.0.1 in a thread; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(target_app(behaviour), log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the target app did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- a recorder of posted JSON -----------------------------------------------------------


@dataclass
class Recorder:
    """Records JSON bodies posted to it; answers ``statuses`` in turn, then 200."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    attempts: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.posts) >= count, timeout)
            return list(self.posts)


@contextmanager
def recorder() -> Iterator[Recorder]:
    record = Recorder("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with record.cond:
                record.attempts += 1
                status = record.statuses.pop(0) if record.statuses else 200
                if status == 200:
                    record.posts.append({"path": self.path, **json.loads(body)})
                record.cond.notify_all()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
