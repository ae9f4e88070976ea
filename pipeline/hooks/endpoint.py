"""``POST /hooks/github|gitlab|gitea`` (and per-app secret paths): deliveries in, builds out.

A delivery is checked in this order, and the first failing check answers with a JSON
error and changes nothing: content type (415), size (413, refused early from
Content-Length and counted while reading), JSON (400), a watched repository (404, the
same answer whatever apps exist), the app's secret (401). Then ``ping`` answers 200,
other events 202 "ignored", a repeated delivery id 200 "duplicate", and a push to the
tracked branch queues its commit (202) in the same transaction that records the
delivery id.

Per-app paths ``/hooks/app/{key}`` are for git hosts that cannot sign: the key is an
HMAC of the app name under the app's webhook secret, so knowing the path is the proof.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.api.errors import HTTPProblem
from pipeline.git.remote import normalize_repo_url
from pipeline.hooks.providers import PROVIDERS, PayloadError, Provider, hmac_sha256
from pipeline.metrics import Metrics
from pipeline.queue.service import BuildService
from pipeline.secrets import Secret
from pipeline.store import webhook_source

MAX_BODY = 25 * 1024 * 1024


def hook_path_key(app: str, secret: Secret) -> str:
    """The secret path component of ``app``'s own hook URL ``/hooks/app/{key}``."""
    return hmac_sha256(secret, f"berth webhook path for app {app}".encode())[:40]


@dataclass(frozen=True)
class HookTarget:
    """An app that accepts webhooks: its provider, secret, repository and branch."""

    app: str
    provider: str
    secret: Secret
    repo: str
    """The repository URL as configured (compared after :func:`normalize_repo_url`)."""
    branch: str

    @property
    def repo_key(self) -> str:
        return normalize_repo_url(self.repo)

    @property
    def path_key(self) -> str:
        return hook_path_key(self.app, self.secret)


@dataclass(frozen=True)
class HookResult:
    """What a delivery did: HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]
    result: str


class WebhookHandler:
    """Decides what a verified delivery does; all store work happens here."""

    def __init__(
        self,
        service: BuildService,
        targets: Sequence[HookTarget],
        *,
        metrics: Metrics | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.service = service
        self.targets = tuple(targets)
        self.metrics = metrics
        self.max_body = max_body
        self._by_path = {t.path_key: t for t in self.targets}

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes of the webhook endpoints."""
        return [
            Route("/hooks/app/{key}", self._endpoint, methods=["POST"]),
            Route("/hooks/{provider}", self._endpoint, methods=["POST"]),
        ]

    async def _endpoint(self, request: Request) -> Response:
        provider_name = request.path_params.get("provider")
        key = request.path_params.get("key")
        target: HookTarget | None = None
        label = provider_name if provider_name in PROVIDERS else "unknown"
        try:
            if key is not None:
                target = self._lookup_path(str(key))
                provider_name = label = target.provider
            provider = PROVIDERS.get(str(provider_name))
            if provider is None:
                raise HTTPProblem(
                    404,
                    "not_found",
                    "no such webhook endpoint: use /hooks/github, /hooks/gitlab or /hooks/gitea",
                )
            _check_content_type(request)
            body = await self._read_body(request)
            payload = _parse_json(body)
            outcome = await asyncio.to_thread(
                self.handle, provider, dict(request.headers), body, payload, target
            )
        except HTTPProblem as problem:
            self._count(label, problem.code)
            return problem.response()
        self._count(label, outcome.result)
        return JSONResponse(outcome.body, status_code=outcome.status)

    def _lookup_path(self, key: str) -> HookTarget:
        found: HookTarget | None = None
        for known, target in self._by_path.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = target
        if found is not None:
            return found
        raise HTTPProblem(404, "not_found", "no such webhook endpoint")

    def _count(self, provider: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhooks.labels(provider, result).inc()

    async def _read_body(self, request: Request) -> bytes:
        too_large = HTTPProblem(
            413,
            "too_large",
            f"the body is larger than {self.max_body // (1024 * 1024)} MiB; "
            "webhook payloads are far smaller",
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise too_large
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > self.max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def handle(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        payload: Mapping[str, Any],
        target: HookTarget | None = None,
    ) -> HookResult:
        """Verify and act on one parsed delivery (blocking: call it off the event loop)."""
        if target is None:
            target = self._match(provider, headers, body, payload)
        event = provider.event(headers)
        if event is None:
            raise HTTPProblem(
                400, "bad_request", f"no event header: is this a {provider.name} hook?"
            )
        if event == "ping":
            return HookResult(200, {"result": "pong", "app": target.app}, "pong")
        if event != "push":
            return HookResult(202, {"result": "ignored", "reason": f"event {event!r}"}, "ignored")
        try:
            push = provider.parse_push(payload)
        except PayloadError as exc:
            raise HTTPProblem(400, "bad_request", str(exc)) from exc
        if push.branch is None:
            reason = f"{push.ref} is not a branch (tag pushes are not built)"
            return HookResult(202, {"result": "ignored", "reason": reason}, "ignored")
        if push.branch != target.branch:
            reason = (
                f"branch {push.branch!r} is not tracked (app {target.app} builds {target.branch!r})"
            )
            return HookResult(202, {"result": "ignored", "reason": reason}, "ignored")
        if push.after is None:
            reason = f"branch {push.branch!r} was deleted"
            return HookResult(202, {"result": "ignored", "reason": reason}, "ignored")
        delivery = provider.delivery_id(headers, body)[:255]
        queued = self.service.submit(
            target.app,
            push.after,
            actor=push.pusher or provider.name,
            source=webhook_source(provider.name, delivery),
            delivery=(provider.name, delivery),
            detail={"trigger": "webhook", "delivery": delivery, "ref": push.ref},
        )
        if queued is None:
            return HookResult(200, {"result": "duplicate", "delivery": delivery}, "duplicate")
        result = "queued" if queued.created else "exists"
        body_out: dict[str, Any] = {
            "result": result,
            "app": target.app,
            "commit": push.after,
            "build": queued.build.id,
            "superseded": [b.id for b in queued.superseded],
        }
        return HookResult(202 if queued.created else 200, body_out, result)

    def _match(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        payload: Mapping[str, Any],
    ) -> HookTarget:
        keys = {normalize_repo_url(url) for url in provider.repo_urls(payload)}
        candidates = [t for t in self.targets if t.provider == provider.name and t.repo_key in keys]
        if not candidates:
            raise HTTPProblem(
                404,
                "unknown_repo",
                "no app watches this repository with this provider; check the app's repo "
                "and webhook settings in the service config",
            )
        # Every candidate is checked, so the time does not tell which secret came close.
        verified = [t for t in candidates if provider.verify(headers, body, t.secret)]
        if not verified:
            raise HTTPProblem(
                401,
                "unauthorized",
                "the delivery's signature or token does not match the app's webhook secret",
            )
        return verified[0]


def _check_content_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPProblem(
            415,
            "unsupported_media",
            f"content type {media or 'none'!r} is not supported: set the webhook's content "
            "type to application/json",
        )


def _parse_json(body: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPProblem(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HTTPProblem(400, "bad_request", "the body must be a JSON object")
    return payload
