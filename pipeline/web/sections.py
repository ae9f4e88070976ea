"""The dashboard's sections as HTML fragments (pure): data in, escaped markup out.

Every value that comes from outside berth's own code (commit messages, authors, lock
reasons, host labels, gate messages, log text) passes through :func:`esc` exactly where
it is written into markup; nothing here builds markup from unescaped input. The page
(:mod:`pipeline.web.page`) puts the fragments in place; the live stream sends the same
fragments again when they change, and the browser swaps them in.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import datetime

from pipeline.web.model import (
    BuildView,
    Cell,
    DashboardData,
    HistoryEntry,
    HostView,
    ReleaseRef,
    RolloutView,
    TrafficShare,
)

__all__ = ["SECTIONS", "esc", "render_sections", "when"]


def esc(value: object) -> str:
    """``value`` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def when(value: datetime | None) -> str:
    """A ``<time>`` element in UTC, or a dash."""
    if value is None:
        return '<span class="muted">-</span>'
    return (
        f'<time datetime="{esc(value.isoformat())}">'
        f"{esc(value.strftime('%Y-%m-%d %H:%M:%S'))}</time>"
    )


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge badge-{esc(kind)}">{esc(text)}</span>'


_STATE_KIND = {
    "passed": "ok",
    "succeeded": "ok",
    "completed": "ok",
    "running": "busy",
    "progressing": "busy",
    "analysing": "busy",
    "pending": "wait",
    "queued": "wait",
    "paused": "wait",
    "rolling out": "busy",
    "failed": "bad",
    "errored": "bad",
    "aborted": "bad",
    "rolled_back": "bad",
    "interrupted": "bad",
    "cancelled": "muted",
    "skipped": "muted",
}


def _state(text: str) -> str:
    return _badge(text.replace("_", " "), _STATE_KIND.get(text, "muted"))


def _release(ref: ReleaseRef | None, *, subject: bool = True) -> str:
    if ref is None:
        return '<span class="muted">nothing yet</span>'
    parts = [
        f'<span class="release">#{ref.id}</span> '
        f'<code class="commit" title="{esc(ref.commit)}">{esc(ref.short_commit)}</code>',
        f'<code class="digest" title="{esc(ref.digest)}">{esc(ref.short_digest)}</code>',
    ]
    if subject and ref.subject:
        by = f" ({ref.author})" if ref.author else ""
        parts.append(
            f'<span class="subject" title="{esc(ref.subject + by)}">{esc(ref.subject)}</span>'
        )
    return "<br>".join(parts)


# --- rollouts ---------------------------------------------------------------------------


def _share_row(share: TrafficShare, rollout: RolloutView) -> str:
    ref = rollout.canary if share.release == rollout.canary.id else rollout.stable
    commit = ref.short_commit if ref is not None and ref.id == share.release else ""
    connections = "" if share.connections is None else f"<td>{share.connections}</td>"
    return (
        f'<tr class="share share-{esc(share.role)}" data-release="{share.release}">'
        f"<td>#{share.release} <code>{esc(commit)}</code></td>"
        f"<td>{_badge(share.role, 'canary' if share.role == 'canary' else 'muted')}</td>"
        f'<td class="num share-weight">{share.weight} %</td>'
        f'<td class="num">{share.healthy}/{share.running} of {share.replicas}'
        + (f' <span class="bad-text">{share.failed} failed</span>' if share.failed else "")
        + f"</td>{connections}</tr>"
    )


def _rollout(rollout: RolloutView) -> str:
    steps = f"step {rollout.step} of {rollout.steps}" if rollout.steps else f"step {rollout.step}"
    label = f" - {esc(rollout.step_label)}" if rollout.step_label else ""
    head = "<th>connections</th>" if rollout.connections_known else ""
    failure = f'<p class="failure">{esc(rollout.failure)}</p>' if rollout.failure else ""
    rows = "".join(_share_row(share, rollout) for share in rollout.shares)
    return (
        f'<article class="card rollout" id="rollout-{rollout.id}" '
        f'data-app="{esc(rollout.app)}" data-env="{esc(rollout.env)}">'
        f'<header><h3>{esc(rollout.app)} <span class="arrow">&rarr;</span> {esc(rollout.env)}</h3>'
        f"{_state(rollout.phase)}</header>"
        f'<div class="rollout-main"><div class="weight" data-weight="{rollout.weight}">'
        f'<span class="weight-value">{rollout.weight} %</span>'
        f'<span class="weight-caption">on the new release</span></div>'
        f'<div class="rollout-detail"><p class="step">{steps}{label}</p>'
        f'<progress max="100" value="{rollout.weight}">{rollout.weight} %</progress>'
        f'<p class="releases"><span class="rel">{_release(rollout.stable, subject=False)}</span> '
        f'<span class="arrow">&rarr;</span> '
        f'<span class="rel">{_release(rollout.canary, subject=False)}</span></p>'
        f"</div></div>{failure}"
        f'<table class="shares"><thead><tr><th>release</th><th>role</th><th>traffic</th>'
        f"<th>healthy/running of wanted</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"</article>"
    )


def rollouts_section(data: DashboardData) -> str:
    if not data.rollouts:
        return '<p class="empty">No rollout in progress.</p>'
    return '<div class="cards">' + "".join(_rollout(r) for r in data.rollouts) + "</div>"


# --- the app x environment matrix -------------------------------------------------------


def _cell(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="cell empty-cell"><span class="muted">-</span></td>'
    badges: list[str] = []
    if cell.rollout_id is not None:
        badges.append(
            f'<a class="badge badge-busy" href="#rollout-{cell.rollout_id}">rolling out</a>'
        )
    if cell.gate is not None:
        badges.append(_badge(f"{cell.gate.kind} gate {cell.gate.status}", _gate_kind(cell)))
    if cell.approvals is not None:
        a = cell.approvals
        who = ", ".join(a.given) or "nobody yet"
        badges.append(
            f'<span class="badge badge-{"ok" if a.missing == 0 else "wait"}" '
            f'title="approved by {esc(who)}">approvals {len(a.given)}/{a.required}</span>'
        )
    if cell.lock is not None:
        reason = cell.lock.reason or "no reason given"
        badges.append(
            f'<span class="badge badge-lock" title="{esc(reason)}">locked by '
            f"{esc(cell.lock.holder)}</span>"
        )
    if cell.pinned:
        badges.append(_badge("pinned", "pin"))
    waiting = f'<p class="waiting">{esc(cell.waiting)}</p>' if cell.waiting else ""
    gate_message = (
        f'<p class="gate-message">{esc(cell.gate.message)}</p>'
        if cell.gate is not None and cell.gate.message and cell.gate.status != "passed"
        else ""
    )
    return (
        f'<td class="cell" data-app="{esc(cell.app)}" data-env="{esc(cell.env)}">'
        f'<div class="cell-release">{_release(cell.stable)}</div>'
        f'<div class="badges">{"".join(badges)}</div>{gate_message}{waiting}</td>'
    )


def _gate_kind(cell: Cell) -> str:
    assert cell.gate is not None
    return _STATE_KIND.get(cell.gate.status, "muted")


def matrix_section(data: DashboardData) -> str:
    if not data.apps:
        return '<p class="empty">No apps yet: add one to the service config (apps:).</p>'
    head = "".join(f"<th>{esc(env)}</th>" for env in data.environments)
    rows = "".join(
        f'<tr><th class="app" scope="row">{esc(app)}</th>'
        + "".join(_cell(data.cell(app, env)) for env in data.environments)
        + "</tr>"
        for app in data.apps
    )
    return (
        f'<div class="scroll"><table class="matrix"><thead><tr><th>app</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


# --- history, builds, hosts -------------------------------------------------------------


def _history_row(entry: HistoryEntry) -> str:
    message = f'<span class="muted">{esc(entry.message)}</span>' if entry.message else ""
    return (
        f"<tr><td>{esc(entry.app)}</td><td>{esc(entry.env)}</td>"
        f"<td>#{entry.release} <code>{esc(entry.commit[:12])}</code></td>"
        f"<td>{when(entry.at)}</td><td>{esc(entry.actor) or '-'}</td>"
        f"<td>{_state(entry.outcome)} {message}</td></tr>"
    )


def history_section(data: DashboardData) -> str:
    if not data.history:
        return '<p class="empty">Nothing was deployed yet.</p>'
    rows = "".join(_history_row(e) for e in data.history)
    return (
        '<div class="scroll"><table class="list"><thead><tr><th>app</th><th>environment</th>'
        "<th>release</th><th>at</th><th>by</th><th>outcome</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _build_row(build: BuildView) -> str:
    digest = (
        f'<code title="{esc(build.digest)}">{esc(build.digest[:19])}</code>' if build.digest else ""
    )
    reason = f'<span class="muted">{esc(build.reason)}</span>' if build.reason else ""
    return (
        f'<tr><td><a href="/builds/{build.id}">#{build.id}</a></td><td>{esc(build.app)}</td>'
        f"<td><code>{esc(build.commit[:12])}</code></td><td>{_state(build.state)}</td>"
        f"<td>{when(build.created_at)}</td><td>{digest} {reason}</td></tr>"
    )


def builds_section(data: DashboardData) -> str:
    if not data.builds:
        return '<p class="empty">No builds yet.</p>'
    rows = "".join(_build_row(b) for b in data.builds)
    return (
        '<div class="scroll"><table class="list"><thead><tr><th>build</th><th>app</th>'
        "<th>commit</th><th>state</th><th>queued</th><th>image / reason</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _host(host: HostView) -> str:
    labels = "".join(
        f'<span class="label">{esc(k)}={esc(v)}</span>' for k, v in sorted(host.labels.items())
    )
    if host.instances is None:
        instances = '<p class="muted">instances: not reported</p>'
    elif not host.instances:
        instances = '<p class="muted">no instances</p>'
    else:
        instances = (
            '<ul class="instances">'
            + "".join(
                f"<li><code>{esc(i.id)}</code> {esc(i.app)}/{esc(i.env)}"
                + (f" #{i.release}" if i.release is not None else "")
                + f" {_state(i.state)}"
                + (
                    ""
                    if i.healthy is None
                    else " "
                    + _badge("healthy" if i.healthy else "unhealthy", "ok" if i.healthy else "bad")
                )
                + "</li>"
                for i in host.instances
            )
            + "</ul>"
        )
    return (
        f'<article class="card host"><header><h3><span class="dot dot-{esc(host.health)}" '
        f'title="{esc(host.health)}"></span>{esc(host.name)}</h3>'
        f"<code>{esc(host.address)}</code></header>"
        f'<p class="muted">last heartbeat {when(host.last_heartbeat)} ({esc(host.health)})</p>'
        f'<div class="labels">{labels}</div>{instances}</article>'
    )


def hosts_section(data: DashboardData) -> str:
    if not data.hosts:
        return '<p class="empty">No hosts registered.</p>'
    return '<div class="cards">' + "".join(_host(h) for h in data.hosts) + "</div>"


def notes_section(data: DashboardData) -> str:
    return "".join(f'<p class="note">{esc(note)}</p>' for note in data.notes)


SECTIONS: dict[str, tuple[str, Callable[[DashboardData], str]]] = {
    "notes": ("", notes_section),
    "rollouts": ("Rollouts in progress", rollouts_section),
    "matrix": ("Environments", matrix_section),
    "history": ("History", history_section),
    "builds": ("Builds", builds_section),
    "hosts": ("Hosts", hosts_section),
}


def render_sections(data: DashboardData, names: Iterable[str] = SECTIONS) -> dict[str, str]:
    """Section id -> its inner HTML."""
    return {name: SECTIONS[name][1](data) for name in names}
