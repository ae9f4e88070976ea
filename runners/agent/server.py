"""The agent's listeners: a unix socket and/or TCP (IPv4, IPv6, optionally TLS), at once.

``unix:PATH`` serves the API without authentication to whoever may open the socket
(mode 0600: root); ``tcp://ADDR:PORT`` and ``tcp://[ADDR]:PORT`` require the bearer
token. Sockets are bound before uvicorn starts, so an address in use is an error naming
it. Unix and TCP listeners run as two uvicorn servers in one event loop, because only
the TCP one gets TLS and the token check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from runners.agent.app import BodyReader, TokenAuth
from runners.agent.errors import AgentError


class ListenError(AgentError):
    """A listen address that does not parse or cannot be bound."""

    status = 400


@dataclass(frozen=True)
class Listener:
    """One address to serve on: ``unix`` with a path, or ``tcp`` with host and port."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Listener:
        if text.startswith("unix:"):
            path = text[len("unix:") :].removeprefix("//")
            if not path.startswith("/"):
                raise ListenError(f"listen address {text!r}: the socket path must be absolute")
            return cls("unix", path=path)
        if text.startswith("tcp://"):
            rest = text[len("tcp://") :].rstrip("/")
            if rest.startswith("["):
                host, sep, port_text = rest[1:].partition("]:")
            else:
                host, sep, port_text = rest.rpartition(":")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ListenError(
                    f"listen address {text!r}: use tcp://ADDR:PORT or tcp://[IPV6]:PORT"
                )
            return cls("tcp", host=host, port=int(port_text))
        raise ListenError(f"listen address {text!r}: use unix:/PATH or tcp://ADDR:PORT")

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def bind(listener: Listener) -> socket.socket:
    """A listening socket for ``listener``; a stale unix socket file is replaced."""
    if listener.kind == "unix":
        return _bind_unix(Path(listener.path))
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listener.host, listener.port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {listener}: {exc.strerror}; stop what uses it or pick another"
        ) from exc
    return sock


def _bind_unix(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenError(f"cannot listen on unix:{path}: a file that is not a socket is there")
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as probe:
            try:
                probe.connect(str(path))
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
            else:
                raise ListenError(f"cannot listen on unix:{path}: another agent serves it")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_mask = os.umask(0o177)  # the socket is born 0600: no window for others
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_mask)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on unix:{path}: {exc.strerror}") from exc
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the loop below owns SIGTERM/SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(
    app: ASGIApp,
    listeners: Sequence[Listener],
    *,
    token: str | None,
    tls: tuple[Path, Path] | None = None,
    verbose: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT; TCP listeners need ``token`` (and use ``tls`` if given)."""
    unix = [l for l in listeners if l.kind == "unix"]  # noqa: E741
    tcp = [l for l in listeners if l.kind == "tcp"]  # noqa: E741
    if tcp and not token:
        raise ListenError("TCP listeners need a token: pass --token-file FILE")
    sockets: list[socket.socket] = []
    try:
        unix_socks = [bind(l) for l in unix]  # noqa: E741
        sockets += unix_socks
        tcp_socks = [bind(l) for l in tcp]  # noqa: E741
        sockets += tcp_socks
        servers: list[tuple[_Server, list[socket.socket]]] = []
        common = {"log_level": "info" if verbose else "warning", "access_log": verbose,
                  "lifespan": "off", "server_header": False, "timeout_graceful_shutdown": 5}  # fmt: skip
        if unix_socks:
            servers.append((_Server(uvicorn.Config(BodyReader(app), **common)), unix_socks))  # type: ignore[arg-type]
        if tcp_socks:
            assert token is not None
            ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
            config = uvicorn.Config(TokenAuth(BodyReader(app), token), **common, **ssl)  # type: ignore[arg-type]
            servers.append((_Server(config), tcp_socks))
        asyncio.run(_serve_all(servers))
    finally:
        for sock in sockets:
            sock.close()
        for listener in unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listener.path)


async def _serve_all(servers: list[tuple[_Server, list[socket.socket]]]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve(sockets=socks) for server, socks in servers))
