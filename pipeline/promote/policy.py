"""The promotion policy (pure): may release R enter environment E, who may approve, and
what moves on by itself.

Everything here decides from :class:`AppFacts`, a snapshot of one app's chain that
:mod:`pipeline.promote.facts` reads from the store. Decisions come back as data with a
reason a person can act on::

    cannot promote demo to perf-test: release 12 has not passed functional-test
    (gate failed: exit 3)

The rules (berth issue 8):

- a release enters environment k+1 only after it *passed* k: its gate there is green
  and, with ``gate: approval``, enough allowed people approved it;
- the first environment is entered when a release is built, never by a command;
- a lock on the target stops every promotion, forced or not;
- ``force`` needs the ``admin`` scope, skips the "passed" and "superseded" checks and is
  recorded with the checks it overrode;
- an environment's ``approvers`` list says who may approve *and* promote there (empty:
  anyone with the ``deploy`` scope);
- a newer release that passed k supersedes an older one still waiting to leave k;
- an approval belongs to one release in one environment and counts only while that
  release runs there (the store lapses it when another release takes its place).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "SCOPES",
    "Actor",
    "AppFacts",
    "ApprovalState",
    "AutoPromotion",
    "Decision",
    "EnvFacts",
    "GateRecord",
    "LockFacts",
    "Refusal",
    "approval_state",
    "auto_promotions",
    "candidate",
    "decide_approval",
    "decide_promotion",
    "passed",
]

SCOPES = ("read", "deploy", "admin")

GateKind = Literal["none", "functional", "perf", "approval"]
GateStatus = Literal["running", "passed", "failed", "errored"]


@dataclass(frozen=True)
class Actor:
    """Who asks: a berth identity (an API token's name or a mapped chat user) and the
    scopes it holds. ``admin`` implies ``deploy`` implies ``read``."""

    identity: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        rank = SCOPES.index(scope)
        return any(SCOPES.index(s) >= rank for s in self.scopes if s in SCOPES)


@dataclass(frozen=True)
class GateRecord:
    """The latest gate result of one release in one environment."""

    status: GateStatus
    message: str


@dataclass(frozen=True)
class LockFacts:
    """Who holds an environment's deploy lock, and why."""

    holder: str
    reason: str


@dataclass(frozen=True)
class EnvFacts:
    """One environment of one app, as far as the policy cares."""

    name: str
    gate: GateKind = "none"
    approvals_required: int = 1
    approvers: tuple[str, ...] = ()
    auto_promote: bool = True
    stable_release: int | None = None
    rolling_to: int | None = None
    pinned: bool = False
    lock: LockFacts | None = None
    entered: frozenset[int] = frozenset()
    """Releases that reached 100 % here at some time."""
    gates: Mapping[int, GateRecord] = field(default_factory=dict)
    """Release id -> its latest gate result here."""
    approvals: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """Release id -> identities whose approval of it here is active."""


@dataclass(frozen=True)
class AppFacts:
    """One app's chain, in order."""

    app: str
    environments: tuple[EnvFacts, ...]

    def index(self, env: str) -> int | None:
        for position, facts in enumerate(self.environments):
            if facts.name == env:
                return position
        return None

    def env(self, name: str) -> EnvFacts:
        position = self.index(name)
        if position is None:
            raise KeyError(name)
        return self.environments[position]

    @property
    def chain(self) -> str:
        return " → ".join(e.name for e in self.environments)


class Refusal(StrEnum):
    """Why a request was refused; the API maps these to status codes."""

    UNKNOWN = "unknown"
    INVALID = "invalid"
    FORBIDDEN = "forbidden"
    LOCKED = "locked"
    CONFLICT = "conflict"
    NOT_PASSED = "not-passed"


@dataclass(frozen=True)
class Decision:
    """The policy's answer. ``message`` is ready to show; ``overridden`` lists the checks
    a forced promotion skipped (recorded in the event)."""

    allowed: bool
    message: str
    app: str
    env: str
    release: int | None = None
    refusal: Refusal | None = None
    forced: bool = False
    overridden: tuple[str, ...] = ()
    from_env: str | None = None


@dataclass(frozen=True)
class ApprovalState:
    """How far a release is from being approved in an environment."""

    required: int
    given: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        return len(self.given) >= self.required

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.given))


@dataclass(frozen=True)
class AutoPromotion:
    """What auto-promotion found for one step of the chain: a promotion to start
    (``release`` set and ``held`` empty) or a candidate held back and why."""

    from_env: str
    to_env: str
    release: int
    held: str = ""


# --- what "passed" means ------------------------------------------------------------


def approval_state(env: EnvFacts, release: int) -> ApprovalState:
    """Active approvals of ``release`` in ``env`` that count: only allowed approvers,
    each once."""
    given = env.approvals.get(release, ())
    allowed = set(env.approvers)
    counted = tuple(sorted({a for a in given if not allowed or a in allowed}))
    return ApprovalState(env.approvals_required, counted)


def passed(env: EnvFacts, release: int) -> tuple[bool, str]:
    """Whether ``release`` passed ``env``, and if not, why (for messages)."""
    if env.gate == "approval":
        if release not in env.entered and release not in env.approvals:
            return False, f"it never ran in {env.name}"
        state = approval_state(env, release)
        if state.satisfied:
            return True, "approved by " + ", ".join(state.given)
        if env.stable_release != release:
            return False, f"its approvals in {env.name} lapsed when another release took its place"
        given = f": {', '.join(state.given)}" if state.given else ""
        return False, f"{len(state.given)} of {state.required} approvals{given}"
    record = env.gates.get(release)
    if record is None:
        if release in env.entered:
            return False, f"its {_gate_name(env)} gate has not run yet"
        return False, f"it never ran in {env.name}"
    if record.status == "passed":
        return True, record.message
    return False, f"gate {record.status}: {record.message}" if record.message else record.status


def candidate(env: EnvFacts) -> int | None:
    """The release waiting to leave ``env``: the newest that passed it."""
    for release in sorted(env.entered | set(env.gates) | set(env.approvals), reverse=True):
        if passed(env, release)[0]:
            return release
    return None


def _gate_name(env: EnvFacts) -> str:
    return {"functional": "functional-test", "perf": "perf-test"}.get(env.gate, env.gate)


def _furthest(facts: AppFacts, release: int) -> str | None:
    """The last environment ``release`` reached, for "not next" messages."""
    reached = [e.name for e in facts.environments if release in e.entered or release in e.gates]
    return reached[-1] if reached else None


# --- manual promotion ---------------------------------------------------------------


def decide_promotion(
    facts: AppFacts,
    env: str,
    actor: Actor,
    *,
    release: int | None = None,
    force: bool = False,
) -> Decision:
    """May ``actor`` promote ``release`` (default: the candidate) of the app into ``env``?"""
    app = facts.app
    prefix = f"cannot promote {app} to {env}"

    def refuse(why: str, refusal: Refusal, rel: int | None = release) -> Decision:
        return Decision(False, f"{prefix}: {why}", app, env, rel, refusal, force)

    position = facts.index(env)
    if position is None:
        return refuse(
            f"there is no environment {env} (the chain is {facts.chain})", Refusal.UNKNOWN
        )
    target = facts.environments[position]
    if position == 0:
        return refuse(
            f"{env} is the first environment; releases enter it when they are built",
            Refusal.INVALID,
        )
    if not actor.allows("deploy"):
        return refuse(
            f"{actor.identity} lacks the deploy scope needed to promote", Refusal.FORBIDDEN
        )
    if force and not actor.allows("admin"):
        return refuse(
            f"--force needs the admin scope, which {actor.identity} lacks", Refusal.FORBIDDEN
        )
    if target.approvers and actor.identity not in target.approvers and not force:
        return refuse(
            f"{actor.identity} may not promote into {env} (allowed: {', '.join(target.approvers)})",
            Refusal.FORBIDDEN,
        )
    if target.lock is not None:
        return refuse(
            f"{env} is locked by {target.lock.holder} "
            f"({target.lock.reason or 'no reason given'}); unlock it first",
            Refusal.LOCKED,
        )
    source = facts.environments[position - 1]
    chosen = release if release is not None else candidate(source)
    if chosen is None:
        # explain why what runs there cannot move on (or force it on)
        chosen = source.stable_release
    if chosen is None:
        return refuse(
            f"no release has passed {source.name} yet; see berth status {app}",
            Refusal.NOT_PASSED,
        )
    if target.rolling_to == chosen:
        return refuse(f"release {chosen} is already rolling out there", Refusal.CONFLICT, chosen)
    if target.stable_release == chosen and target.rolling_to is None:
        return refuse(f"release {chosen} already runs there", Refusal.CONFLICT, chosen)
    problems: list[tuple[str, Refusal]] = []
    ok, why = passed(source, chosen)
    if not ok:
        furthest = _furthest(facts, chosen)
        if furthest is None or facts.index(furthest) != position - 1:
            reached = f"it got as far as {furthest}" if furthest else "it has not run anywhere yet"
            problems.append(
                (
                    f"{env} is not next for release {chosen} ({reached}); "
                    f"it must pass {source.name} first",
                    Refusal.NOT_PASSED,
                )
            )
        else:
            problems.append(
                (f"release {chosen} has not passed {source.name} ({why})", Refusal.NOT_PASSED)
            )
    else:
        newer = candidate(source)
        if newer is not None and newer > chosen:
            problems.append(
                (
                    f"release {chosen} was superseded by release {newer}, which also passed "
                    f"{source.name}; promote {newer} instead",
                    Refusal.CONFLICT,
                )
            )
    if problems and not force:
        message, refusal = problems[0]
        return refuse(message, refusal, chosen)
    overridden = tuple(message for message, _ in problems)
    if force and target.approvers and actor.identity not in target.approvers:
        overridden += (f"{actor.identity} is not an approver of {env}",)
    return Decision(
        True,
        f"promoting {app} release {chosen} from {source.name} to {env}"
        + (" (forced)" if force else ""),
        app,
        env,
        chosen,
        None,
        force,
        overridden,
        source.name,
    )


# --- approvals ----------------------------------------------------------------------


def decide_approval(
    facts: AppFacts, env: str, actor: Actor, *, release: int | None = None
) -> Decision:
    """May ``actor`` approve ``release`` (default: the one running) in ``env``?"""
    app = facts.app
    prefix = f"cannot approve {app} in {env}"

    def refuse(why: str, refusal: Refusal, rel: int | None = release) -> Decision:
        return Decision(False, f"{prefix}: {why}", app, env, rel, refusal)

    position = facts.index(env)
    if position is None:
        return refuse(
            f"there is no environment {env} (the chain is {facts.chain})", Refusal.UNKNOWN
        )
    target = facts.environments[position]
    if target.gate != "approval":
        return refuse(f"{env} takes no approvals (its gate is {target.gate})", Refusal.INVALID)
    if target.approvers and actor.identity not in target.approvers:
        return refuse(
            f"{actor.identity} is not an approver of {env} "
            f"(allowed: {', '.join(target.approvers)})",
            Refusal.FORBIDDEN,
        )
    if not actor.allows("deploy"):
        return refuse(
            f"{actor.identity} lacks the deploy scope needed to approve", Refusal.FORBIDDEN
        )
    running = target.stable_release
    if running is None:
        return refuse(f"no release runs in {env} yet", Refusal.CONFLICT)
    chosen = running if release is None else release
    if chosen != running:
        return refuse(
            f"approvals belong to the release running in {env} (release {running}), "
            f"not release {chosen}",
            Refusal.CONFLICT,
            chosen,
        )
    state = approval_state(target, chosen)
    if actor.identity in state.given:
        message = f"{actor.identity} already approved release {chosen} in {env}"
    else:
        count = len(state.given) + 1
        message = (
            f"{actor.identity} approved {app} release {chosen} in {env} "
            f"({min(count, state.required)} of {state.required})"
        )
    return Decision(True, message, app, env, chosen)


# --- auto-promotion -----------------------------------------------------------------


def auto_promotions(facts: AppFacts) -> list[AutoPromotion]:
    """For every environment with ``auto_promote`` whose newest passed release has not
    gone on yet: the promotion to start, or why it is held."""
    found: list[AutoPromotion] = []
    for position, source in enumerate(facts.environments[:-1]):
        target = facts.environments[position + 1]
        release = candidate(source)
        if release is None or not source.auto_promote:
            continue
        if release in target.entered or release in target.gates or release == target.rolling_to:
            continue
        if target.stable_release is not None and target.stable_release > release:
            continue  # something newer runs there already (forced); never go back
        held = ""
        if target.lock is not None:
            held = f"{target.name} is locked by {target.lock.holder}"
        elif target.pinned:
            held = f"{target.name} is pinned (rolled back); promote by hand to unpin"
        elif target.rolling_to is not None:
            held = f"{target.name} is rolling out release {target.rolling_to}"
        found.append(AutoPromotion(source.name, target.name, release, held))
    return found
