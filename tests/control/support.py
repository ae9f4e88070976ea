"""Shared machinery of the control-plane tests: a live server in a thread, configs,
signed deliveries for each provider."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from tests.helpers.procs import free_port, wait_until

HOOK_SECRET = "hook-secret-value-1234"
TOKENS = {"reader": "read-token-aaaa", "deployer": "deploy-token-bbbb", "admin": "admin-token-cccc"}
TOKEN_ENV = {
    "BERTH_T_HOOK": HOOK_SECRET,
    "BERTH_T_READ": TOKENS["reader"],
    "BERTH_T_DEPLOY": TOKENS["deployer"],
    "BERTH_T_ADMIN": TOKENS["admin"],
}


def service_config(
    tmp_path: Path,
    port: int,
    repo_url: str,
    *,
    provider: str | None = "github",
    poll_interval: str = "1h",
    branch: str = "main",
) -> Path:
    """A service config watching one app, ``demo``, with tokens of every scope."""
    hook = (
        f"    webhook:\n      provider: {provider}\n      secret: {{env: BERTH_T_HOOK}}\n"
        if provider
        else ""
    )
    text = (
        f"data_dir: {tmp_path / 'data'}\n"
        f"listen: [127.0.0.1:{port}]\n"
        "cluster: {hosts: 1}\n"
        "apps:\n"
        "  - name: demo\n"
        f"    repo: {repo_url}\n"
        f"    branch: {branch}\n"
        f"    poll_interval: {poll_interval}\n" + hook + "api_tokens:\n"
        "  - {name: reader, token: {env: BERTH_T_READ}, scopes: [read]}\n"
        "  - {name: deployer, token: {env: BERTH_T_DEPLOY}, scopes: [deploy]}\n"
        "  - {name: admin, token: {env: BERTH_T_ADMIN}, scopes: [admin]}\n"
    )
    path = tmp_path / "berth.yml"
    path.write_text(text)
    return path


def github_push(repo_url: str, after: str, *, ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": after,
        "deleted": False,
        "repository": {"full_name": "team/demo", "clone_url": repo_url},
        "pusher": {"name": "alice"},
    }


def gitlab_push(repo_url: str, after: str, *, ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "object_kind": "push",
        "ref": ref,
        "before": "0" * 40,
        "after": after,
        "checkout_sha": after,
        "user_username": "bob",
        "project": {"git_http_url": repo_url, "path_with_namespace": "team/demo"},
    }


def gitea_push(repo_url: str, after: str, *, ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": after,
        "repository": {"clone_url": repo_url},
        "pusher": {"login": "carol"},
    }


def signed(
    provider: str,
    payload: dict[str, Any] | bytes,
    *,
    secret: str = HOOK_SECRET,
    event: str = "push",
    delivery: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers a provider would send, signed with ``secret``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json"}
    if provider == "github":
        headers |= {
            "x-github-event": event,
            "x-github-delivery": delivery,
            "x-hub-signature-256": "sha256=" + mac,
        }
    elif provider == "gitlab":
        name = {"push": "Push Hook"}.get(event, event)
        headers |= {
            "x-gitlab-event": name,
            "x-gitlab-token": secret,
            "x-gitlab-event-uuid": delivery,
        }
    elif provider == "gitea":
        headers |= {"x-gitea-event": event, "x-gitea-delivery": delivery, "x-gitea-signature": mac}
    else:
        raise ValueError(provider)
    return body, headers


PUSH_PAYLOADS = {"github": github_push, "gitlab": gitlab_push, "gitea": gitea_push}


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def live_server(app: ASGIApp, port: int | None = None) -> Iterator[LiveServer]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1 (lifespan included)."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20)
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the test server did not stop"
