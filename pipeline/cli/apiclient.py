"""The CLI's client of the control plane's REST API (the CLI has no other way in).

Where the server is and which token to send, first found wins:

1. ``--server`` / ``--token`` flags,
2. ``BERTH_SERVER`` / ``BERTH_TOKEN`` environment variables,
3. the CLI config file (``--cli-config``, ``BERTH_CLI_CONFIG``, or
   ``$XDG_CONFIG_HOME/berth/cli.yml``, default ``~/.config/berth/cli.yml``)::

       server: http://127.0.0.1:8420
       token: ...            # or token_file: PATH

4. ``http://127.0.0.1:8420`` and no token.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import click
import httpx
import yaml

from pipeline.errors import APIError, BerthError

DEFAULT_SERVER = "http://127.0.0.1:8420"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Connection:
    """Where the API is and how to authenticate."""

    server: str
    token: str | None


def default_cli_config(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/berth/cli.yml`` or ``~/.config/berth/cli.yml``."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "berth" / "cli.yml"


def _read_cli_config(path: Path) -> dict[str, str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise BerthError(f"{path}: cannot read the CLI config: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BerthError(f"{path}: the CLI config must be a mapping with server: and token:")
    unknown = set(doc) - {"server", "token", "token_file"}
    if unknown:
        raise BerthError(
            f"{path}: unknown keys {', '.join(sorted(unknown))}; known: server, token, token_file"
        )
    found = {k: str(v) for k, v in doc.items() if v is not None}
    if "token_file" in found and "token" not in found:
        token_path = (path.parent / found["token_file"]).expanduser()
        try:
            found["token"] = token_path.read_text().strip()
        except OSError as exc:
            raise BerthError(f"{path}: token_file {token_path}: {exc.strerror}") from exc
    return found


def resolve_connection(
    server: str | None,
    token: str | None,
    cli_config: Path | None,
    environ: Mapping[str, str],
) -> Connection:
    """Apply the precedence of the module docstring."""
    config_path = cli_config or (
        Path(environ["BERTH_CLI_CONFIG"])
        if environ.get("BERTH_CLI_CONFIG")
        else default_cli_config(environ)
    )
    from_file = _read_cli_config(config_path)
    chosen_server = (
        server or environ.get("BERTH_SERVER") or from_file.get("server") or DEFAULT_SERVER
    )
    chosen_token = token or environ.get("BERTH_TOKEN") or from_file.get("token")
    if not chosen_server.startswith(("http://", "https://")):
        raise BerthError(f"server {chosen_server!r}: give a URL like {DEFAULT_SERVER}")
    return Connection(chosen_server.rstrip("/"), chosen_token or None)


class APIClient:
    """A thin, typed-enough client of ``/api/v1``; errors become :class:`APIError`."""

    def __init__(
        self, connection: Connection, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.connection = connection
        headers = {"user-agent": "berth-cli"}
        if connection.token:
            headers["authorization"] = f"Bearer {connection.token}"
        self._http = httpx.Client(
            base_url=connection.server + "/api/v1",
            headers=headers,
            timeout=httpx.Timeout(60.0, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> APIClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=_clean(params))

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=dict(body) if body is not None else None)

    def stream_text(self, path: str, **params: Any) -> Iterator[bytes]:
        """The body of a streamed text answer, chunk by chunk as it arrives."""
        try:
            with self._http.stream("GET", path, params=_clean(params), timeout=None) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise self._error(answer)
                yield from answer.iter_bytes()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if answer.status_code >= 400:
            raise self._error(answer)
        if answer.headers.get("content-type", "").startswith("application/json"):
            return answer.json()
        return answer.content

    def _unreachable(self, exc: httpx.HTTPError) -> APIError:
        return APIError(
            f"cannot reach the berth API at {self.connection.server}: {exc}; is berth serve "
            "running? (set --server, BERTH_SERVER or server: in the CLI config)"
        )

    def _error(self, answer: httpx.Response) -> APIError:
        message = answer.text[:500]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = answer.json()["error"]["message"]
        hint = ""
        if answer.status_code == 401:
            hint = " (set --token, BERTH_TOKEN or token: in the CLI config)"
        return APIError(f"{answer.status_code}: {message}{hint}", status=answer.status_code)


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def api_options(func: F) -> F:
    """``--server``, ``--token`` and ``--cli-config``: the same on every API command."""
    func = click.option(
        "--cli-config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="CLI config file (default ~/.config/berth/cli.yml).",
    )(func)
    func = click.option("--token", default=None, help="API token (or BERTH_TOKEN).")(func)
    func = click.option(
        "--server", default=None, help=f"berth API URL (or BERTH_SERVER; {DEFAULT_SERVER})."
    )(func)
    return func


def client_from(server: str | None, token: str | None, cli_config: Path | None) -> APIClient:
    """An :class:`APIClient` for the options of :func:`api_options`."""
    return APIClient(resolve_connection(server, token, cli_config, os.environ))


def with_client(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the three connection options into a ``client`` argument (closed afterwards)."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, server: str | None, token: str | None, cli_config: Path | None, **kwargs: Any
    ) -> Any:
        with client_from(server, token, cli_config) as client:
            return func(*args, client=client, **kwargs)

    return api_options(wrapper)
