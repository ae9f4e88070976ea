"""Promotion operations over the store: promote, approve, lock, unlock, gate runs and
auto-promotion. Every change is an event naming the actor and the source; a refused
request raises :class:`~pipeline.promote.errors.PromotionRefused` and changes nothing.

The policy (:mod:`pipeline.promote.policy`) decides; this module reads the facts, asks it,
and applies the answer: it starts rollouts (:class:`~pipeline.promote.rollouts.Rollouts`),
records what happened, and runs gates when an environment reports it reached 100 %.
Gate runs are *derived* from the store (:meth:`PromotionService.pending_gates`), so a
restarted control plane finds the ones it still owes.

Read-only views (status, history) are in :mod:`pipeline.promote.views`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipeline.appspec import AppSpec
from pipeline.logs import get_logger
from pipeline.promote.errors import PromotionRefused
from pipeline.promote.facts import app_facts
from pipeline.promote.gates import (
    GateResult,
    GateRunner,
    GateStatus,
    run_functional_gate,
    run_perf_gate,
)
from pipeline.promote.loadgen import LoadProfile, LoadReport, generate_load
from pipeline.promote.policy import (
    Actor,
    AppFacts,
    Decision,
    Refusal,
    auto_promotions,
    decide_approval,
    decide_promotion,
    passed,
)
from pipeline.promote.rollouts import EntryPoints, Rollouts
from pipeline.settings import Environment, Settings
from pipeline.store import EnvironmentState, LockedError, Release, Store, system_source

__all__ = ["SYSTEM_ACTOR", "GateJob", "PromotionService"]

log = get_logger("promote")

SYSTEM_ACTOR = "berth"
AUTO_SOURCE = system_source("auto-promote")
GATE_SOURCE = system_source("gates")


@dataclass(frozen=True)
class GateJob:
    """A gate owed: run ``env``'s gate for ``release_id`` of ``app``."""

    app: str
    env: str
    release_id: int
    attempt: int = 1


def _identity(text: str) -> str:
    return text


class PromotionService:
    """Promotion of one control plane (see the module docstring).

    ``schedule`` hands gate jobs to a background worker (:class:`~pipeline.promote.
    worker.GateWorker`); without one, gates run in the calling thread.
    ``mask`` scrubs secret values from gate output before it is stored.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        rollouts: Rollouts,
        gate_runner: GateRunner,
        entry_points: EntryPoints,
        load: Callable[[LoadProfile], LoadReport] = generate_load,
        image_reference: Callable[[Release], str] | None = None,
        mask: Callable[[str], str] = _identity,
        schedule: Callable[[GateJob], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._rollouts = rollouts
        self._runner = gate_runner
        self._entry = entry_points
        self._load = load
        self._image = image_reference or (lambda r: f"{r.app}@{r.digest}")
        self._mask = mask
        self._schedule = schedule
        # promotions of one control plane take turns, so two threads never both act on
        # the same facts (a gate worker and an API request, say)
        self._lock = threading.RLock()

    def use_scheduler(self, schedule: Callable[[GateJob], None] | None) -> None:
        """Run gate jobs through ``schedule`` from now on (None: inline)."""
        self._schedule = schedule

    # --- facts ----------------------------------------------------------------------

    def require_app(self, app: str) -> None:
        """Refuse (``unknown``) an app the service config does not watch."""
        if not any(a.name == app for a in self.settings.apps):
            known = ", ".join(a.name for a in self.settings.apps) or "none"
            raise PromotionRefused(
                f"unknown app {app!r} (berth watches: {known})", refusal=Refusal.UNKNOWN.value
            )

    def environment(self, env: str) -> Environment:
        """The configured environment ``env``, or a refusal naming the chain."""
        try:
            return self.settings.environment(env)
        except KeyError:
            chain = " → ".join(e.name for e in self.settings.environments)
            raise PromotionRefused(
                f"there is no environment {env} (the chain is {chain})",
                refusal=Refusal.UNKNOWN.value,
            ) from None

    def facts(self, app: str) -> AppFacts:
        """The policy's view of ``app``'s chain, read now."""
        self.require_app(app)
        return app_facts(self.store, app, self.settings.environments)

    # --- promotion ------------------------------------------------------------------

    def promote(
        self,
        actor: Actor,
        app: str,
        env: str,
        *,
        source: str,
        release: int | None = None,
        force: bool = False,
        detail: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Promote ``release`` (default: the candidate) of ``app`` into ``env``."""
        with self._lock:
            decision = decide_promotion(self.facts(app), env, actor, release=release, force=force)
            if not decision.allowed:
                self._refuse(decision, actor, source)
            assert decision.release is not None
            self._start(decision, actor.identity, source, detail)
            return decision

    def release_created(self, app: str, release_id: int) -> Decision | None:
        """A new release enters the first environment (unless it is locked or pinned, or
        runs something newer); None when it is held."""
        with self._lock:
            facts = self.facts(app)
            first = facts.environments[0]
            held = ""
            if first.lock is not None:
                held = f"{first.name} is locked by {first.lock.holder}"
            elif first.pinned:
                held = f"{first.name} is pinned"
            elif first.stable_release is not None and first.stable_release >= release_id:
                held = f"{first.name} runs release {first.stable_release} already"
            if held:
                log.info("release held", extra={"fields": {"app": app, "why": held}})
                return None
            decision = Decision(
                True, f"release {release_id} enters {first.name}", app, first.name, release_id
            )
            self._start(decision, SYSTEM_ACTOR, AUTO_SOURCE, None)
            return decision

    def auto_promote(self, app: str) -> list[Decision]:
        """Start every promotion auto-promotion allows now; return them."""
        started: list[Decision] = []
        with self._lock:
            for _ in range(2 * len(self.settings.environments)):
                plans = [p for p in auto_promotions(self.facts(app)) if not p.held]
                if not plans:
                    break
                plan = plans[0]
                decision = Decision(
                    True,
                    f"auto-promoting {app} release {plan.release} from {plan.from_env} "
                    f"to {plan.to_env}",
                    app,
                    plan.to_env,
                    plan.release,
                    from_env=plan.from_env,
                )
                self._start(decision, SYSTEM_ACTOR, AUTO_SOURCE, None)
                started.append(decision)
        return started

    def _start(
        self, decision: Decision, actor: str, source: str, detail: Mapping[str, Any] | None
    ) -> None:
        release_id = decision.release
        assert release_id is not None
        release = self.store.get_release(release_id)
        completed = self._rollouts.start(
            decision.app, decision.env, release_id, actor=actor, source=source
        )
        self.store.append_event(
            actor,
            "release.promoted",
            source=source,
            app=decision.app,
            env=decision.env,
            release_id=release_id,
            detail={
                **(detail or {}),
                "from_env": decision.from_env,
                "commit": release.commit,
                "digest": release.digest,
                "forced": decision.forced,
                "overridden": list(decision.overridden),
            },
        )
        log.info(
            decision.message,
            extra={"fields": {"actor": actor, "source": source, "release": release_id}},
        )
        if completed:
            self.environment_reached(decision.app, decision.env, release_id)

    def _refuse(self, decision: Decision, actor: Actor, source: str) -> None:
        log.info(
            "refused",
            extra={"fields": {"actor": actor.identity, "source": source, "why": decision.message}},
        )
        refusal = decision.refusal or Refusal.INVALID
        raise PromotionRefused(decision.message, refusal=refusal.value)

    # --- an environment reached a release ---------------------------------------------

    def environment_reached(self, app: str, env: str, release_id: int) -> None:
        """``release_id`` runs at 100 % in ``env``: approvals of what ran before lapse,
        and the environment's gate starts (or passes at once for ``gate: none``)."""
        environment = self.environment(env)
        with self._lock:
            with self.store.transaction() as tx:
                tx.lapse_approvals(app, env)
                tx.append_event(
                    SYSTEM_ACTOR,
                    "release.entered",
                    source=system_source("rollout"),
                    app=app,
                    env=env,
                    release_id=release_id,
                )
            if environment.gate == "none":
                self._record(app, env, release_id, GateResult("none", GateStatus.PASSED, "no gate"))
                self.auto_promote(app)
            elif environment.gate == "approval":
                self.store.append_event(
                    SYSTEM_ACTOR,
                    "approval.needed",
                    source=GATE_SOURCE,
                    app=app,
                    env=env,
                    release_id=release_id,
                    detail={
                        "required": environment.approval.required,
                        "approvers": list(environment.approval.approvers),
                    },
                )
            else:
                self._record(
                    app, env, release_id, GateResult(environment.gate, GateStatus.RUNNING, "")
                )
        job = GateJob(app, env, release_id)
        if environment.gate in ("functional", "perf"):
            if self._schedule is not None:
                self._schedule(job)
            else:
                self.run_gate(job)

    # --- gates ----------------------------------------------------------------------

    def pending_gates(self) -> list[GateJob]:
        """Gate runs owed now: each stable release of a functional or perf environment
        whose gate has no final result (after a restart: the ones that were running)."""
        owed: list[GateJob] = []
        for app in self.settings.apps:
            facts = app_facts(self.store, app.name, self.settings.environments)
            for env in facts.environments:
                release = env.stable_release
                if env.gate not in ("functional", "perf") or release is None:
                    continue
                record = env.gates.get(release)
                if record is None or record.status in ("running", "errored"):
                    owed.append(GateJob(app.name, env.name, release))
        return owed

    def run_gate(self, job: GateJob) -> GateResult:
        """Run ``job``'s gate now (blocking), record the result, auto-promote on a pass."""
        environment = self.environment(job.env)
        state = self.store.get_environment(job.app, job.env)
        gate = environment.gate
        if state.stable_release_id != job.release_id:
            result = GateResult(
                gate,
                GateStatus.ERRORED,
                f"release {job.release_id} no longer runs in {job.env}; gate not run",
                terminal=True,
            )
        else:
            result = self._run(job, environment, self.store.get_release(job.release_id))
        self._record(job.app, job.env, job.release_id, result)
        if result.status is GateStatus.PASSED:
            self.auto_promote(job.app)
        return result

    def _run(self, job: GateJob, environment: Environment, release: Release) -> GateResult:
        try:
            spec = AppSpec.model_validate(dict(release.spec))
        except ValidationError as exc:
            return GateResult(
                environment.gate,
                GateStatus.FAILED,
                f"the app spec of release {release.id} is not valid: {exc.error_count()} problems",
                terminal=True,
            )
        target = self._entry.url(job.app, job.env)
        if environment.gate == "perf":
            return run_perf_gate(spec, target_url=target, generate=self._load)
        variables = {**environment.variables, **spec.run.variables.get(job.env, {})}
        return run_functional_gate(
            spec,
            name=_instance_name(job),
            image=self._image(release),
            target_url=target,
            runner=self._runner,
            variables=variables,
            host_selector=environment.host_selector,
            mask=self._mask,
        )

    def _record(self, app: str, env: str, release_id: int, result: GateResult) -> None:
        detail = result.to_json()
        detail["message"] = self._mask(result.message)
        self.store.append_event(
            SYSTEM_ACTOR,
            f"gate.{result.status.value}",
            source=GATE_SOURCE,
            app=app,
            env=env,
            release_id=release_id,
            detail=detail,
        )

    # --- approvals ------------------------------------------------------------------

    def approve(
        self,
        actor: Actor,
        app: str,
        env: str,
        *,
        source: str,
        release: int | None = None,
        comment: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Record ``actor``'s approval of the release running in ``env``; when that makes
        enough, the gate passes and auto-promotion may move the release on."""
        with self._lock:
            facts = self.facts(app)
            decision = decide_approval(facts, env, actor, release=release)
            if not decision.allowed:
                self._refuse(decision, actor, source)
            assert decision.release is not None
            was_passed = passed(facts.env(env), decision.release)[0]
            with self.store.transaction() as tx:
                _, added = tx.add_approval(decision.release, env, actor.identity, comment=comment)
                if added:
                    tx.append_event(
                        actor.identity,
                        "approval.added",
                        source=source,
                        app=app,
                        env=env,
                        release_id=decision.release,
                        detail={**(detail or {}), "comment": comment},
                    )
            now_passed, why = passed(self.facts(app).env(env), decision.release)
            if now_passed and not was_passed:
                self._record(
                    app, env, decision.release, GateResult("approval", GateStatus.PASSED, why)
                )
                self.auto_promote(app)
            return decision

    # --- locks ----------------------------------------------------------------------

    def lock(
        self,
        actor: Actor,
        app: str,
        env: str,
        reason: str,
        *,
        source: str,
        detail: Mapping[str, Any] | None = None,
    ) -> EnvironmentState:
        """Lock ``env`` of ``app`` against every promotion, held by ``actor``."""
        self._may_change(actor, app, env, "lock")
        try:
            with self.store.transaction() as tx:
                state = tx.lock_environment(app, env, actor.identity, reason)
                tx.append_event(
                    actor.identity,
                    "environment.locked",
                    source=source,
                    app=app,
                    env=env,
                    detail={**(detail or {}), "reason": reason},
                )
        except LockedError as exc:
            raise PromotionRefused(str(exc), refusal=Refusal.LOCKED.value) from exc
        return state

    def unlock(
        self,
        actor: Actor,
        app: str,
        env: str,
        *,
        source: str,
        force: bool = False,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Release the lock of ``env``; someone else's only with ``force`` (admin)."""
        self._may_change(actor, app, env, "unlock")
        if force and not actor.allows("admin"):
            raise PromotionRefused(
                f"cannot unlock {app} in {env} by force: {actor.identity} lacks the admin scope",
                refusal=Refusal.FORBIDDEN.value,
            )
        try:
            with self.store.transaction() as tx:
                released = tx.unlock_environment(app, env, holder=None if force else actor.identity)
                if released:
                    tx.append_event(
                        actor.identity,
                        "environment.unlocked",
                        source=source,
                        app=app,
                        env=env,
                        detail={**(detail or {}), "forced": force},
                    )
        except LockedError as exc:
            raise PromotionRefused(str(exc), refusal=Refusal.LOCKED.value) from exc
        if released:
            self.auto_promote(app)
        return released

    def require_rollback_target(self, app: str, env: str, release: int) -> None:
        """Refuse a rollback of ``env`` to ``release`` unless that release of ``app`` ran
        there before: a rollback skips the gates, so it must not carry a release past
        environments it never passed."""
        found = self.store.get_release(release)
        if found.app != app:
            raise PromotionRefused(
                f"release {release} belongs to {found.app}, not {app}",
                refusal=Refusal.INVALID.value,
            )
        facts = self.facts(app)
        position = facts.index(env)
        if position is None or release not in facts.environments[position].entered:
            raise PromotionRefused(
                f"cannot roll {app} in {env} back to release {release}: it never ran there; "
                f"promote it instead (berth promote {app} --to {env} --release {release})",
                refusal=Refusal.CONFLICT.value,
            )

    def require_operator(self, actor: Actor, app: str, env: str, verb: str) -> None:
        """Refuse unless ``actor`` may steer rollouts of ``app`` in ``env`` (rollback,
        abort, resume, retry): the deploy scope and, where the environment names its
        approvers, being one of them (or admin)."""
        self._may_change(actor, app, env, verb)
        approvers = self.environment(env).approval.approvers
        if approvers and actor.identity not in approvers and not actor.allows("admin"):
            raise PromotionRefused(
                f"cannot {verb} {app} in {env}: only {', '.join(approvers)} (or an admin) "
                f"may do that there, not {actor.identity}",
                refusal=Refusal.FORBIDDEN.value,
            )

    def _may_change(self, actor: Actor, app: str, env: str, verb: str) -> None:
        self.require_app(app)
        self.environment(env)
        if not actor.allows("deploy"):
            raise PromotionRefused(
                f"cannot {verb} {app} in {env}: {actor.identity} lacks the deploy scope",
                refusal=Refusal.FORBIDDEN.value,
            )


def _instance_name(job: GateJob) -> str:
    """A gate container's instance id: a hostname label, unique per attempt."""
    raw = f"gate-{job.release_id}-{job.attempt}-{job.env}-{job.app}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", raw)[:63].strip("-")
