"""Serving a Starlette application with uvicorn on one or more addresses.

Used by ``berth serve`` and ``berth registry serve``. The sockets are bound here, before
uvicorn starts, so that a port already in use is a berth error naming the address
(uvicorn would log it and exit the process). SIGTERM and SIGINT stop the server
gracefully: no new connections, running requests finish (bounded by
``graceful_timeout``), exit status 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp

from pipeline.errors import BerthError

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM/SIGINT after a graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` contains a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise BerthError(
            f"cannot listen on {shown}: {exc.strerror}; stop what uses it or pick another address"
        ) from exc
    return sock


def serve(
    app: ASGIApp,
    addresses: Sequence[tuple[str, int]],
    *,
    verbose: bool = False,
    graceful_timeout: float = 30.0,
) -> None:
    """Serve ``app`` on every address until SIGTERM/SIGINT (blocking)."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            sockets.append(bind(host, port))
        config = uvicorn.Config(
            app,
            # clients that probe with TLS first make uvicorn warn about every probe
            log_level="info" if verbose else "error",
            access_log=verbose,
            lifespan="on",
            timeout_graceful_shutdown=int(graceful_timeout),
            server_header=False,
        )
        _GracefulServer(config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
