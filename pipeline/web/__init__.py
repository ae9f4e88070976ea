"""The dashboard: a read-only web page of every app, environment, rollout, build and host.

- :func:`~pipeline.web.routes.web_routes` - the routes to mount at ``/``
- :class:`~pipeline.web.session.DashboardAuth` - API tokens in, session cookies out
- :class:`~pipeline.web.source.DashboardSource` - where the data comes from;
  :class:`~pipeline.web.source.StoreDashboardSource` reads the state store
- :mod:`~pipeline.web.model` - the data; :mod:`~pipeline.web.sections` and
  :mod:`~pipeline.web.page` - the HTML (pure); :mod:`~pipeline.web.stream` - live updates

Server-rendered HTML, one style sheet and one small script from ``static/``; no build step.
"""

from __future__ import annotations

from pipeline.web.model import DashboardData, InstanceView
from pipeline.web.routes import WebOptions, web_routes
from pipeline.web.session import DashboardAuth
from pipeline.web.source import (
    DashboardSource,
    HostInventory,
    StoreDashboardSource,
    TrafficCounters,
)
from pipeline.web.stream import StreamLimits

__all__ = [
    "DashboardAuth",
    "DashboardData",
    "DashboardSource",
    "HostInventory",
    "InstanceView",
    "StoreDashboardSource",
    "StreamLimits",
    "TrafficCounters",
    "WebOptions",
    "web_routes",
]
