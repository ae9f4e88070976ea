"""A stand-in for ``berth agent`` that honours the cluster's contract and nothing more.

Usage: ``python standin_agent.py --data DIR --listen unix:PATH --listen tcp://ADDR:PORT
--token-file FILE``. It serves ``GET /v1/info`` on every listener (TCP requests must carry
``Authorization: Bearer <token>``) and answers with its pid, its listeners and the
host network from ``DIR/host.json``. SIGTERM stops it and removes the unix socket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType


class Handler(BaseHTTPRequestHandler):
    server_version = "standin-agent"
    token = ""
    info: dict[str, object] = {}

    def do_GET(self) -> None:
        tcp = isinstance(self.client_address, tuple) and bool(self.client_address)
        if tcp and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._answer(401, {"error": "missing or wrong token"})
        elif self.path == "/v1/info":
            self._answer(200, self.info)
        else:
            self._answer(404, {"error": f"no route {self.path}"})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path}\n")


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        request, _ = super().get_request()
        return request, ("", 0)[:0]  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--token-file", type=Path)
    args = parser.parse_args()
    Handler.token = args.token_file.read_text().strip() if args.token_file else ""
    host_file = args.data / "host.json"
    Handler.info = {
        "pid": os.getpid(),
        "listen": args.listen,
        "host": json.loads(host_file.read_text()) if host_file.exists() else None,
    }
    servers: list[socketserver.BaseServer] = []
    sockets: list[Path] = []
    for listen in args.listen:
        if listen.startswith("unix:"):
            path = Path(listen.removeprefix("unix:"))
            path.unlink(missing_ok=True)
            servers.append(UnixServer(str(path), Handler))
            sockets.append(path)
        else:
            address, _, port = listen.removeprefix("tcp://").rpartition(":")
            servers.append(ThreadingHTTPServer((address.strip("[]"), int(port)), Handler))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    sys.stderr.write(f"standin agent {os.getpid()} listening on {args.listen}\n")
    sys.stderr.flush()
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    for path in sockets:
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
