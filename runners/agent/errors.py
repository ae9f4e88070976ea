"""Errors of the agent, each carrying the HTTP status the API answers with.

::

    RunnerError
    └── AgentError            the agent refused or failed a request (``status``)
        ├── BadSpec           400: a request body or parameter is malformed
        ├── NotFound          404: no such instance, image or pin
        ├── Conflict          409: an id reused with another spec, a port already taken
        ├── OverCapacity      422: the host cannot give what the spec asks for
        ├── NotStarted        422: the runtime could not start the container
        ├── UnusableImage     422: the image's layers or manifest cannot be used
        ├── Unauthorized      401: a TCP request without the right bearer token
        └── AgentUnavailable  the agent could not be reached (client side)

Several share a status, so an error's body names its ``kind`` too (``over_capacity``,
``not_started``, ...), from which the client raises the same class again.
"""

from __future__ import annotations

from runners.errors import RunnerError


class AgentError(RunnerError):
    """The agent refused or failed a request; ``status`` is the HTTP status it maps to."""

    status = 500
    kind = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadSpec(AgentError):
    """A request body or parameter is malformed; the message names the field."""

    status = 400
    kind = "bad_spec"


class NotFound(AgentError):
    """The instance, image or pin named in the request does not exist on this host."""

    status = 404
    kind = "not_found"


class Conflict(AgentError):
    """The request contradicts what exists: an id with another spec, a port in use."""

    status = 409
    kind = "conflict"


class OverCapacity(AgentError):
    """The host cannot provide what the spec asks for (memory beyond its total)."""

    status = 422
    kind = "over_capacity"


class NotStarted(AgentError):
    """The runtime could not start the container (its error is in the message)."""

    status = 422
    kind = "not_started"


class UnusableImage(AgentError):
    """The image cannot be used on this host: a refused layer, a manifest it cannot run."""

    status = 422
    kind = "unusable_image"


class Unauthorized(AgentError):
    """A TCP request lacked the bearer token or carried a wrong one."""

    status = 401
    kind = "unauthorized"


class AgentUnavailable(AgentError):
    """The agent could not be reached or answered garbage (raised by the client)."""

    status = 503
    kind = "unavailable"
