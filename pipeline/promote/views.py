"""What ``berth status`` and ``berth history`` show, as JSON-ready data (reads only).

- :func:`status`: for every app and environment the stable release (commit, digest), any
  rollout in progress, the gate state, pending approvals, the lock and what waits to
  come in.
- :func:`history`: what ran in one environment, when, who promoted it and how it ended.

Neither includes secrets: events never hold them, and gate output was masked when it
was recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.promote.facts import GATE_ACTIONS
from pipeline.promote.policy import approval_state, auto_promotions, candidate
from pipeline.promote.service import PromotionService
from pipeline.store import Release

__all__ = ["history", "render_history", "render_status", "status"]


def _release(service: PromotionService, release_id: int | None) -> dict[str, Any] | None:
    if release_id is None:
        return None
    release: Release = service.store.get_release(release_id)
    return {"id": release.id, "commit": release.commit, "digest": release.digest}


def status(service: PromotionService, app: str | None = None) -> list[dict[str, Any]]:
    """One entry per app and environment, in chain order."""
    apps = [app] if app is not None else [a.name for a in service.settings.apps]
    rows: list[dict[str, Any]] = []
    for name in apps:
        facts = service.facts(name)
        held = {p.to_env: p for p in auto_promotions(facts)}
        for position, env in enumerate(facts.environments):
            state = service.store.get_environment(name, env.name)
            rollout = service.store.get_current_rollout(name, env.name)
            stable = env.stable_release
            gate: dict[str, Any] = {"kind": env.gate}
            if stable is not None:
                record = env.gates.get(stable)
                gate["release"] = stable
                gate["status"] = record.status if record else "pending"
                gate["message"] = record.message if record else ""
            approvals: dict[str, Any] | None = None
            if env.gate == "approval" and stable is not None:
                given = approval_state(env, stable)
                approvals = {
                    "release": stable,
                    "given": list(given.given),
                    "required": given.required,
                    "missing": given.missing,
                }
            waiting: dict[str, Any] | None = None
            if position > 0:
                previous = facts.environments[position - 1]
                ready = candidate(previous)
                if ready is not None and ready != stable and ready not in env.entered:
                    plan = held.get(env.name)
                    waiting = {
                        "release": ready,
                        "from": previous.name,
                        "held": plan.held if plan is not None else "promote by hand",
                    }
            rows.append(
                {
                    "app": name,
                    "env": env.name,
                    "stable": _release(service, stable),
                    "previous": _release(service, state.previous_release_id),
                    "pinned": env.pinned,
                    "rollout": None
                    if rollout is None or not rollout.active
                    else {
                        "id": rollout.id,
                        "to_release": rollout.to_release_id,
                        "phase": rollout.phase,
                        "weight": rollout.weight,
                    },
                    "gate": gate,
                    "approvals": approvals,
                    "lock": None
                    if state.lock is None
                    else {
                        "holder": state.lock.holder,
                        "reason": state.lock.reason,
                        "since": state.lock.since.isoformat(),
                    },
                    "waiting": waiting,
                }
            )
    return rows


_ENDINGS = {
    "release.entered": "running",
    **{action: status for action, status in GATE_ACTIONS.items() if status != "running"},
}


def history(
    service: PromotionService, app: str, env: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """What ran in ``env`` of ``app``, newest first: one entry per promotion."""
    service.require_app(app)
    service.environment(env)
    events = service.store.list_events(app=app, env=env, limit=1000, newest_first=True)
    entries: list[dict[str, Any]] = []
    open_entry: dict[int, dict[str, Any]] = {}
    for event in reversed(events):
        if event.release_id is None:
            continue
        if event.action == "release.promoted":
            entry = {
                "release": event.release_id,
                "commit": event.detail.get("commit"),
                "digest": event.detail.get("digest"),
                "promoted_by": event.actor,
                "source": event.source,
                "at": event.at.isoformat(),
                "forced": bool(event.detail.get("forced")),
                "from_env": event.detail.get("from_env"),
                "outcome": "rolling out",
                "message": "",
            }
            entries.append(entry)
            open_entry[event.release_id] = entry
            continue
        entry_for = open_entry.get(event.release_id)
        if entry_for is None:
            continue
        if event.action in _ENDINGS:
            entry_for["outcome"] = _ENDINGS[event.action]
            entry_for["message"] = str(event.detail.get("message", ""))
        elif event.action.startswith("rollout."):
            entry_for["outcome"] = event.action.removeprefix("rollout.")
            entry_for["message"] = str(event.detail.get("message", ""))
    entries.reverse()
    return entries[:limit]


def render_status(rows: Sequence[dict[str, Any]]) -> str:
    """Plain text for chat and terminals: one line per app and environment."""
    lines: list[str] = []
    for row in rows:
        stable = row["stable"]
        text = f"{row['app']}/{row['env']}: "
        text += f"release {stable['id']} ({stable['commit'][:12]})" if stable else "nothing yet"
        gate = row["gate"]
        if gate["kind"] != "none" and stable:
            text += f", {gate['kind']} gate {gate['status']}"
        if row["approvals"]:
            a = row["approvals"]
            text += f", approvals {len(a['given'])}/{a['required']}"
        if row["rollout"]:
            text += f", rolling out release {row['rollout']['to_release']}"
        if row["lock"]:
            text += f", locked by {row['lock']['holder']} ({row['lock']['reason']})"
        if row["waiting"]:
            w = row["waiting"]
            text += f", release {w['release']} waiting ({w['held']})"
        lines.append(text)
    return "\n".join(lines)


def render_history(entries: Sequence[dict[str, Any]]) -> str:
    """Plain text: one line per promotion, newest first."""
    if not entries:
        return "nothing ran there yet"
    return "\n".join(
        f"{e['at'][:19]} release {e['release']} ({str(e['commit'] or '')[:12]}) "
        f"by {e['promoted_by']}{' (forced)' if e['forced'] else ''}: {e['outcome']}"
        + (f" - {e['message']}" if e["message"] else "")
        for e in entries
    )
