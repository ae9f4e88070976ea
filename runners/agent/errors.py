"""Errors of the agent, each carrying the HTTP status the API answers with.

::

    RunnerError
    └── AgentError            the agent refused or failed a request (``status``)
        ├── BadSpec           400: a request body or parameter is malformed
        ├── NotFound          404: no such instance, image or pin
        ├── Conflict          409: an id reused with another spec, a port already taken
        ├── OverCapacity      422: the host cannot give what the spec asks for
        ├── Unauthorized      401: a TCP request without the right bearer token
        └── AgentUnavailable  the agent could not be reached (client side)
"""

from __future__ import annotations

from runners.errors import RunnerError


class AgentError(RunnerError):
    """The agent refused or failed a request; ``status`` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadSpec(AgentError):
    """A request body or parameter is malformed; the message names the field."""

    status = 400


class NotFound(AgentError):
    """The instance, image or pin named in the request does not exist on this host."""

    status = 404


class Conflict(AgentError):
    """The request contradicts what exists: an id with another spec, a port in use."""

    status = 409


class OverCapacity(AgentError):
    """The host cannot provide what the spec asks for (memory beyond its total)."""

    status = 422


class Unauthorized(AgentError):
    """A TCP request lacked the bearer token or carried a wrong one."""

    status = 401


class AgentUnavailable(AgentError):
    """The agent could not be reached or answered garbage (raised by the client)."""

    status = 503
