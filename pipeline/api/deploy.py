"""The deploy endpoints of ``/api/v1``: status, history, promote, approve, lock, unlock,
rollback, abort, resume, retry, the entry address and gate logs.

They are :class:`~pipeline.api.openapi.Operation` objects like the rest of the API, so
:class:`~pipeline.api.routes.RestAPI` routes them and documents them in one go. Every
change is made by :class:`~pipeline.promote.service.PromotionService` or the rollout
control with the token's name as the actor and ``cli:<token>`` as the source; a
refusal changes nothing and answers a JSON error (see :func:`refusal_status`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.auth import Principal
from pipeline.api.deploy_models import (
    ApprovalsOut,
    ApproveIn,
    DecisionOut,
    EnvironmentStatus,
    GateOut,
    GateRun,
    HistoryEntry,
    HistoryList,
    LockIn,
    LockOut,
    LockResult,
    PromoteIn,
    ReleaseRef,
    RollbackIn,
    RolloutOut,
    StatusList,
    UnlockIn,
    UrlOut,
    WaitingOut,
)
from pipeline.api.errors import HTTPProblem
from pipeline.api.openapi import Operation, Param
from pipeline.api.routes import _NAME, _json, read_model, refusal_status
from pipeline.promote.errors import PromotionRefused
from pipeline.promote.policy import Actor, Decision
from pipeline.promote.rollouts import EntryPoints, RolloutControl
from pipeline.promote.service import PromotionService
from pipeline.promote.views import history, status
from pipeline.store import Rollout, cli_source

__all__ = ["DeployAPI", "refusal_status", "rollout_out"]


def _actor(principal: Principal | None) -> Actor:
    assert principal is not None  # every deploy operation has a scope
    return Actor(principal.name, principal.scopes)


def _ref(doc: dict[str, Any] | None) -> ReleaseRef | None:
    return None if doc is None else ReleaseRef(**doc)


def rollout_out(rollout: Rollout) -> RolloutOut:
    """A rollout as status shows it, with step, traffic and health read from the
    engine's state (when it kept one)."""
    state = dict(rollout.state)
    steps = state.get("steps")
    traffic = {
        str(entry[0]): int(entry[2])
        for entry in state.get("allocations") or []
        if isinstance(entry, list) and len(entry) == 3 and entry[2]
    }
    observed = state.get("observed") or {}
    health = {
        str(entry[0]): {"running": entry[1], "healthy": entry[2], "failed": entry[3]}
        for entry in observed.get("releases") or []
        if isinstance(entry, list) and len(entry) == 4
    }
    return RolloutOut(
        id=rollout.id,
        to_release=rollout.to_release_id,
        phase=rollout.phase,
        weight=rollout.weight,
        step=rollout.step_index,
        steps=len(steps) if isinstance(steps, list) else 0,
        traffic=traffic,
        health=health,
        failure=str(state.get("failure") or ""),
    )


class DeployAPI:
    """The deploy operations over a promotion service and a rollout control."""

    def __init__(
        self,
        service: PromotionService,
        control: RolloutControl,
        entry_points: EntryPoints,
        *,
        prefix: str = "/api/v1",
    ) -> None:
        self.service = service
        self.store = service.store
        self.control = control
        self.entry = entry_points
        self.prefix = prefix

    # --- declaration ------------------------------------------------------------------

    def operations(self) -> list[Operation]:
        app = Param("app", "path", _NAME, "App name")
        env = Param("env", "path", _NAME, "Environment name")
        release = Param("release", "query", {"type": "integer", "minimum": 1}, "Release id")
        base = self.prefix + "/apps/{app}/environments/{env}"
        here = (app, env)
        change = (400, 403, 404, 409)
        return [
            Operation("GET", self.prefix + "/status", "getStatus",
                      "Every app in every environment: stable release, rollout, gate, "
                      "approvals, lock", "read", self.get_status,
                      params=(Param("app", "query", _NAME, "Only this app"),),
                      response=StatusList, errors=(404,)),
            Operation("GET", base, "getEnvironment", "One app in one environment", "read",
                      self.get_environment, params=here, response=EnvironmentStatus,
                      errors=(404,)),
            Operation("GET", base + "/history", "getHistory",
                      "What ran in the environment, newest first", "read", self.get_history,
                      params=(*here, Param("limit", "query",
                                           {"type": "integer", "minimum": 1, "maximum": 500},
                                           "How many entries (50)")),
                      response=HistoryList, errors=(400, 404)),
            Operation("GET", base + "/url", "getUrl", "The environment's entry address",
                      "read", self.get_url, params=here, response=UrlOut, errors=(404, 409)),
            Operation("GET", base + "/gate", "getGateRun",
                      "The latest gate result of a release there, with its output", "read",
                      self.get_gate, params=(*here, release), response=GateRun,
                      errors=(400, 404)),
            Operation("POST", base + "/promote", "promote",
                      "Promote the candidate (or a release) into the environment; force "
                      "needs admin", "deploy", self.promote, params=here, body=PromoteIn,
                      response=DecisionOut, errors=change),
            Operation("POST", base + "/approve", "approve",
                      "Approve the release running in the environment", "deploy",
                      self.approve, params=here, body=ApproveIn, response=DecisionOut,
                      errors=change),
            Operation("POST", base + "/lock", "lock",
                      "Stop every promotion into the environment", "deploy", self.lock,
                      params=here, body=LockIn, response=LockResult, errors=change),
            Operation("POST", base + "/unlock", "unlock",
                      "Release the environment's lock (someone else's: force, admin)",
                      "deploy", self.unlock, params=here, body=UnlockIn, response=LockResult,
                      errors=change),
            Operation("POST", base + "/rollback", "rollback",
                      "Back to the previous (or a named) release at once, then pin",
                      "deploy", self.rollback, params=here, body=RollbackIn,
                      response=EnvironmentStatus, errors=change),
            Operation("POST", base + "/abort", "abort",
                      "Abort the rollout in progress: back to the stable release", "deploy",
                      self.abort, params=here, response=EnvironmentStatus, errors=change),
            Operation("POST", base + "/resume", "resume",
                      "Continue a rollout past an indefinite pause", "deploy", self.resume,
                      params=here, response=EnvironmentStatus, errors=change),
            Operation("POST", base + "/retry", "retry", "Start an aborted rollout again",
                      "deploy", self.retry, params=here, response=EnvironmentStatus,
                      errors=change),
        ]  # fmt: skip

    # --- reading ----------------------------------------------------------------------

    def _where(self, request: Request) -> tuple[str, str]:
        app = str(request.path_params["app"])
        env = str(request.path_params["env"])
        self.service.require_app(app)
        self.service.environment(env)
        return app, env

    def _status_of(self, row: dict[str, Any]) -> EnvironmentStatus:
        # status() read the active rollout already; only its full record is fetched here
        summary = row["rollout"]
        rollout = None if summary is None else self.store.get_rollout(summary["id"])
        gate = row["gate"]
        approvals, lock, waiting = row["approvals"], row["lock"], row["waiting"]
        return EnvironmentStatus(
            app=row["app"],
            env=row["env"],
            stable=_ref(row["stable"]),
            previous=_ref(row["previous"]),
            pinned=row["pinned"],
            rollout=None if rollout is None or not rollout.active else rollout_out(rollout),
            gate=GateOut(**gate),
            approvals=None if approvals is None else ApprovalsOut(**approvals),
            lock=None if lock is None else LockOut(**lock),
            waiting=None
            if waiting is None
            else WaitingOut(
                release=waiting["release"], from_env=waiting["from"], held=waiting["held"]
            ),
            url=self.entry.url(row["app"], row["env"]),
        )

    def environment_status(self, app: str, env: str) -> EnvironmentStatus:
        """``app`` in ``env`` now."""
        for row in status(self.service, app):
            if row["env"] == env:
                return self._status_of(row)
        raise PromotionRefused(f"there is no environment {env}", refusal="unknown")

    async def get_status(self, request: Request, principal: Principal | None) -> Response:
        app = request.query_params.get("app") or None

        def work() -> StatusList:
            if app is not None:
                self.service.require_app(app)
            return StatusList(environments=[self._status_of(r) for r in status(self.service, app)])

        return _json(await asyncio.to_thread(work))

    async def get_environment(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        return _json(await asyncio.to_thread(self.environment_status, app, env))

    async def get_history(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        raw = request.query_params.get("limit") or "50"
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise HTTPProblem(400, "bad_request", f"limit must be 1 to 500 (got {raw!r})")
        entries = await asyncio.to_thread(history, self.service, app, env, limit=int(raw))
        return _json(HistoryList(app=app, env=env, entries=[HistoryEntry(**e) for e in entries]))

    async def get_url(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        url = await asyncio.to_thread(self.entry.url, app, env)
        if url is None:
            raise HTTPProblem(
                409,
                "no_address",
                f"{app} has no entry address in {env} yet: nothing was rolled out there "
                "on hosts (see berth status)",
            )
        return _json(UrlOut(app=app, env=env, url=url))

    async def get_gate(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        raw = request.query_params.get("release")
        if raw is not None and (not raw.isdigit() or int(raw) < 1):
            raise HTTPProblem(400, "bad_request", f"release must be a release id (got {raw!r})")

        def work() -> GateRun:
            wanted = int(raw) if raw is not None else None
            if wanted is None:
                wanted = self.store.get_environment(app, env).stable_release_id
            if wanted is None:
                raise HTTPProblem(404, "not_found", f"nothing runs in {env} of {app} yet")
            for event in self.store.list_events(
                app=app, env=env, release_id=wanted, limit=200, newest_first=True
            ):
                if event.action.startswith("gate."):
                    detail = event.detail
                    report = detail.get("report")
                    return GateRun(
                        app=app,
                        env=env,
                        release=wanted,
                        gate=str(detail.get("gate", "")),
                        status=str(detail.get("status", event.action.removeprefix("gate."))),
                        message=str(detail.get("message", "")),
                        output=str(detail.get("output", "")),
                        at=event.at.isoformat(),
                        report=dict(report) if isinstance(report, dict) else None,
                    )
            raise HTTPProblem(
                404, "not_found", f"no gate ran for release {wanted} of {app} in {env}"
            )

        return _json(await asyncio.to_thread(work))

    # --- changing -----------------------------------------------------------------------

    async def promote(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        body = await read_model(request, PromoteIn)
        actor = _actor(principal)
        decision = await asyncio.to_thread(
            lambda: self.service.promote(
                actor, app, env, source=cli_source(actor.identity), release=body.release,
                force=body.force,
            )
        )  # fmt: skip
        return _json(_decision(decision))

    async def approve(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        body = await read_model(request, ApproveIn)
        actor = _actor(principal)
        decision = await asyncio.to_thread(
            lambda: self.service.approve(
                actor, app, env, source=cli_source(actor.identity), release=body.release,
                comment=body.comment,
            )
        )  # fmt: skip
        return _json(_decision(decision))

    async def lock(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        body = await read_model(request, LockIn)
        actor = _actor(principal)
        state = await asyncio.to_thread(
            lambda: self.service.lock(
                actor, app, env, body.reason, source=cli_source(actor.identity)
            )
        )
        assert state.lock is not None
        held = LockOut(
            holder=state.lock.holder, reason=state.lock.reason, since=state.lock.since.isoformat()
        )
        return _json(LockResult(app=app, env=env, locked=True, changed=True, lock=held))

    async def unlock(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        body = await read_model(request, UnlockIn)
        actor = _actor(principal)
        released = await asyncio.to_thread(
            lambda: self.service.unlock(
                actor, app, env, source=cli_source(actor.identity), force=body.force
            )
        )
        return _json(LockResult(app=app, env=env, locked=False, changed=released, lock=None))

    async def rollback(self, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        body = await read_model(request, RollbackIn)
        actor = _actor(principal)

        def work() -> EnvironmentStatus:
            self.service.require_operator(actor, app, env, "roll back")
            if body.to is not None:
                self.service.require_rollback_target(app, env, body.to)
            self.control.rollback(
                app, env, to=body.to, actor=actor.identity, source=cli_source(actor.identity)
            )
            return self.environment_status(app, env)

        return _json(await asyncio.to_thread(work))

    async def _command(self, verb: str, request: Request, principal: Principal | None) -> Response:
        app, env = self._where(request)
        actor = _actor(principal)
        command: Callable[..., object] = getattr(self.control, verb)

        def work() -> EnvironmentStatus:
            self.service.require_operator(actor, app, env, verb)
            command(app, env, actor=actor.identity, source=cli_source(actor.identity))
            return self.environment_status(app, env)

        return _json(await asyncio.to_thread(work))

    async def abort(self, request: Request, principal: Principal | None) -> Response:
        return await self._command("abort", request, principal)

    async def resume(self, request: Request, principal: Principal | None) -> Response:
        return await self._command("resume", request, principal)

    async def retry(self, request: Request, principal: Principal | None) -> Response:
        return await self._command("retry", request, principal)


def _decision(decision: Decision) -> DecisionOut:
    return DecisionOut(
        app=decision.app,
        env=decision.env,
        release=decision.release,
        message=decision.message,
        forced=decision.forced,
        overridden=list(decision.overridden),
    )
