"""The agent's client (httpx): what the control plane and the CLI use to drive a host.

``AgentClient("unix:/var/lib/berth/agent.sock")`` talks over the unix socket;
``AgentClient("https://10.0.0.5:7420", token=...)`` over TCP with the bearer token
(``tcp://`` is taken as ``http://``). Every error answer becomes the
:class:`~runners.agent.errors.AgentError` subclass of its status, with the agent's
message; an unreachable agent is :class:`~runners.agent.errors.AgentUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from runners.agent.errors import (
    AgentError,
    AgentUnavailable,
    BadSpec,
    Conflict,
    NotFound,
    NotStarted,
    OverCapacity,
    Unauthorized,
    UnusableImage,
)

_KINDS: dict[str, type[AgentError]] = {
    kind.kind: kind
    for kind in (BadSpec, Unauthorized, NotFound, Conflict, OverCapacity, NotStarted, UnusableImage)
}
# what a body without a known kind is taken for (422 has several meanings)
_BY_STATUS: dict[int, type[AgentError]] = {
    400: BadSpec,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
}


class AgentClient:
    """A connection (pool) to one agent."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        timeout: float = 120.0,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if address.startswith("unix:"):
            path = address[len("unix:") :].removeprefix("//")
            base = "http://agent"
            transport = transport or httpx.HTTPTransport(uds=path)
        elif address.startswith(("http://", "https://")):
            base = address.rstrip("/")
        elif address.startswith("tcp://"):
            base = "http://" + address[len("tcp://") :].rstrip("/")
        else:
            raise BadSpec(f"agent address {address!r}: use unix:/PATH, tcp://ADDR:PORT or https://")
        self._http = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- instances -----------------------------------------------------------------------

    def put_instance(self, instance_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/v1/instances/{instance_id}", body=spec)

    def delete_instance(self, instance_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/instances/{instance_id}")

    def instance(self, instance_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/instances/{instance_id}")

    def instances(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/v1/instances")["instances"]
        return found

    def logs(self, instance_id: str, *, tail: int | None = None, stream: str = "all") -> bytes:
        params: dict[str, str] = {"stream": stream}
        if tail is not None:
            params["tail"] = str(tail)
        response = self._send("GET", f"/v1/instances/{instance_id}/logs", params=params)
        return response.content

    def follow_logs(
        self, instance_id: str, *, tail: int | None = None, stream: str = "all"
    ) -> Iterator[bytes]:
        """The instance's output as it comes, until the instance stops."""
        params = {"stream": stream, "follow": "1"}
        if tail is not None:
            params["tail"] = str(tail)
        try:
            with self._http.stream(
                "GET", f"/v1/instances/{instance_id}/logs", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise AgentUnavailable(f"agent {self.address}: {exc}") from exc

    def exec(self, instance_id: str, command: list[str], timeout: float = 60.0) -> dict[str, Any]:
        body = {"command": command, "timeout": timeout}
        return self._call("POST", f"/v1/instances/{instance_id}/exec", body=body)

    # -- images and host -----------------------------------------------------------------

    def pull(self, image: str) -> dict[str, Any]:
        return self._call("POST", "/v1/images/pull", body={"image": image})

    def images(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/v1/images")["images"]
        return found

    def pin(self, digest: str) -> dict[str, Any]:
        return self._call("PUT", f"/v1/images/pins/{digest}")

    def unpin(self, digest: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/images/pins/{digest}")

    def gc(self) -> dict[str, Any]:
        return self._call("POST", "/v1/gc")

    def info(self) -> dict[str, Any]:
        """Capacity and identity; the heartbeat (a changed ``boot_id`` means a restart)."""
        return self._call("GET", "/v1/info")

    # -- plumbing ------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        response = self._send(method, path, body=body)
        try:
            data: dict[str, Any] = response.json()
        except json.JSONDecodeError as exc:
            raise AgentUnavailable(
                f"agent {self.address}: {method} {path} answered non-JSON: {response.text[:200]}"
            ) from exc
        return data

    def _send(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        try:
            response = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            raise AgentUnavailable(
                f"agent {self.address}: {exc}; is the agent running (berth agent --data DIR)?"
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response


def _error(response: httpx.Response) -> AgentError:
    message, named = response.text[:500], None
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        body = response.json()["error"]
        message = str(body["message"])
        named = _KINDS.get(str(body.get("kind")))
    kind = named or _BY_STATUS.get(response.status_code, AgentError)
    error = kind(message)
    error.status = response.status_code
    return error


def read_token_file(path: Path) -> str:
    """The token in ``path`` (whitespace stripped)."""
    return path.read_text().strip()
