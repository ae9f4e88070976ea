"""Whole HTML documents (pure): the dashboard, the login form, a build's log.

Documents load their style and script from ``/static`` only; the routes send a Content
Security Policy that forbids inline scripts, so nothing rendered into a page can run.
"""

from __future__ import annotations

from pipeline.web.model import BuildLogView, DashboardData
from pipeline.web.sections import SECTIONS, esc, render_sections, when

__all__ = ["build_page", "dashboard_page", "login_page", "message_page"]


def _document(title: str, body: str, *, script: bool = False) -> str:
    js = '<script src="/static/dashboard.js" defer></script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        f"{js}</head><body>{body}</body></html>\n"
    )


def _topbar(reader: str | None) -> str:
    who = ""
    if reader is not None:
        who = (
            f'<span class="reader">signed in as <strong>{esc(reader)}</strong></span>'
            '<form method="post" action="/logout" class="inline">'
            '<button type="submit" class="link">sign out</button></form>'
        )
    return (
        '<header class="topbar"><a class="brand" href="/">berth</a>'
        '<span id="live" class="live" data-state="connecting">connecting</span>'
        f'<span class="spacer"></span>{who}</header>'
    )


def dashboard_page(data: DashboardData, *, reader: str) -> str:
    """The dashboard with every section filled from ``data``."""
    fragments = render_sections(data)
    sections = "".join(
        f'<section id="section-{name}" class="section section-{name}">'
        + (f"<h2>{esc(title)}</h2>" if title else "")
        + f'<div class="section-body" data-section="{name}">{fragments[name]}</div></section>'
        for name, (title, _render) in SECTIONS.items()
    )
    body = (
        f"{_topbar(reader)}"
        f'<main data-event-id="{data.last_event_id}">{sections}'
        f'<p class="footer muted">updated <span id="updated">{when(data.generated_at)}</span> UTC'
        " &middot; read-only: promote, approve, roll back with the berth CLI or chat</p>"
        "</main>"
    )
    return _document("berth", body, script=True)


def login_page(*, error: str = "") -> str:
    """The form that trades an API token for a session."""
    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        f"{_topbar(None)}"
        '<main class="narrow"><section class="card login"><h2>Sign in</h2>'
        "<p>Paste a berth API token with the <code>read</code> scope (or wider). "
        "It is checked once; the browser keeps only a signed session cookie.</p>"
        f"{problem}"
        '<form method="post" action="/login">'
        '<label for="token">API token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        '<button type="submit">Sign in</button></form></section></main>'
    )
    return _document("berth - sign in", body)


def build_page(view: BuildLogView, *, reader: str) -> str:
    """One build and the tail of its log."""
    build = view.build
    cut = (
        f'<p class="muted">showing the last part of a {view.size} byte log</p>'
        if view.truncated
        else ""
    )
    reason = f"<p>{esc(build.reason)}</p>" if build.reason else ""
    digest = f"<p>image <code>{esc(build.digest)}</code></p>" if build.digest else ""
    log = view.text or "(no log output)"
    body = (
        f"{_topbar(reader)}"
        f'<main><p><a href="/">&larr; dashboard</a></p><section class="section">'
        f"<h2>Build #{build.id}: {esc(build.app)} <code>{esc(build.commit[:12])}</code> "
        f'<span class="badge">{esc(build.state)}</span></h2>'
        f"<p>queued {when(build.created_at)}, finished {when(build.finished_at)}</p>"
        f'{digest}{reason}{cut}<pre class="log">{esc(log)}</pre></section></main>'
    )
    return _document(f"berth - build {build.id}", body)


def message_page(title: str, message: str, *, reader: str | None) -> str:
    """A short page for a missing build and the like."""
    body = (
        f"{_topbar(reader)}"
        f'<main class="narrow"><section class="card"><h2>{esc(title)}</h2>'
        f'<p>{esc(message)}</p><p><a href="/">&larr; dashboard</a></p></section></main>'
    )
    return _document(f"berth - {title}", body)
