"""A small, working OCI distribution server for fault-injection tests.

It implements enough of the distribution spec for a client to push and pull images
(blobs with ``Range``, monolithic and chunked uploads, mounts, manifests, paginated tag
lists) plus an optional bearer-token server, and it can be told to misbehave: serve a
corrupted blob, drop the connection halfway through a blob, ignore ``Range``, or answer
503 for a while. It runs on loopback in a thread and records every request.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from runners.oci.reference import Reference


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Faults:
    """Misbehaviour to inject; sets hold blob digests (``sha256:…``)."""

    corrupt: set[str] = field(default_factory=set)
    cut_once: set[str] = field(default_factory=set)
    ignore_range: bool = False
    # (method, path regex) -> statuses to answer before behaving, consumed in order;
    # a 0 lets that request through
    statuses: dict[tuple[str, str], list[int]] = field(default_factory=dict)


_NAME = r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
_ROUTES = [
    ("blob", re.compile(rf"^/v2/{_NAME}/blobs/(?P<digest>sha256:[a-f0-9]{{64}})$")),
    ("uploads", re.compile(rf"^/v2/{_NAME}/blobs/uploads/$")),
    ("upload", re.compile(rf"^/v2/{_NAME}/blobs/uploads/(?P<uuid>[a-f0-9-]+)$")),
    ("manifest", re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[^/]+)$")),
    ("tags", re.compile(rf"^/v2/{_NAME}/tags/list$")),
]


class FakeRegistry:
    """The server's state and switches; ``host`` is ``127.0.0.1:PORT`` once started."""

    def __init__(self, *, bearer: bool = False, users: dict[str, str] | None = None) -> None:
        self.bearer = bearer
        self.users = users or {}
        self.faults = Faults()
        self.blobs: dict[str, bytes] = {}
        self.links: set[tuple[str, str]] = set()  # (repository, digest)
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.requests: list[Seen] = []
        self.token_requests: list[dict[str, list[str]]] = []
        self.tokens: dict[str, set[str]] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.host = ""

    def start(self) -> FakeRegistry:
        registry = self

        class Handler(_Handler):
            state = registry

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.host = f"127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def add_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with self._lock:
            self.blobs[digest] = data
            self.links.add((repository, digest))
        return digest

    def ref(self, text: str) -> Reference:
        return Reference.parse(f"{self.host}/{text}")

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for r in self.requests if r.method == method and re.search(pattern, r.path))

    def methods(self) -> Counter[str]:
        return Counter(r.method for r in self.requests)


class _Handler(BaseHTTPRequestHandler):
    state: FakeRegistry
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read FakeRegistry.requests instead

    # plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _dispatch(self) -> None:
        state = self.state
        url = urlsplit(self.path)
        with state._lock:
            state.requests.append(Seen(self.command, self.path, dict(self.headers.items())))
        for (method, pattern), statuses in state.faults.statuses.items():
            if method == self.command and re.search(pattern, url.path) and statuses:
                status = statuses.pop(0)
                if status:  # 0 lets this request through
                    self._body()
                    self._error(status, "UNAVAILABLE", "injected failure")
                    return
                break
        if url.path == "/token":
            self._token(parse_qs(url.query))
            return
        if url.path == "/v2/":
            if self._authorized(None, "pull"):
                self._send(200, b"{}", {"Content-Type": "application/json"})
            return
        for kind, pattern in _ROUTES:
            match = pattern.match(url.path)
            if match:
                name = match.group("name")
                action = "pull" if self.command in ("GET", "HEAD") else "push"
                if not self._authorized(name, action):
                    self._body()
                    return
                getattr(self, f"_{kind}")(match, parse_qs(url.query))
                return
        self._error(404, "NOT_FOUND", f"no route for {url.path}")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # auth

    def _authorized(self, name: str | None, action: str) -> bool:
        state = self.state
        header = self.headers.get("Authorization", "")
        if state.bearer:
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            granted = state.tokens.get(token, set())
            if name is None or f"repository:{name}:{action}" in granted:
                if name is None and not token:
                    return self._challenge("")
                return True
            return self._challenge(
                f"repository:{name}:pull,push" if action == "push" else f"repository:{name}:pull"
            )
        if state.users:
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if state.users.get(user) == password:
                    return True
            self._error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                {"WWW-Authenticate": 'Basic realm="fake"'},
            )
            return False
        return True

    def _challenge(self, scope: str) -> bool:
        realm = f"http://{self.state.host}/token"
        value = f'Bearer realm="{realm}",service="fake"'
        if scope:
            value += f',scope="{scope}"'
        self._error(401, "UNAUTHORIZED", "token required", {"WWW-Authenticate": value})
        return False

    def _token(self, query: dict[str, list[str]]) -> None:
        state = self.state
        if state.users:
            header = self.headers.get("Authorization", "")
            ok = False
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                ok = state.users.get(user) == password
            if not ok:
                self._error(401, "UNAUTHORIZED", "bad credentials")
                return
        granted = set()
        for scope in query.get("scope", []):
            resource, _, actions = scope.rpartition(":")
            granted.update(f"{resource}:{a}" for a in actions.split(","))
        token = f"token-{next(state._counter)}"
        with state._lock:
            state.token_requests.append(query)
            state.tokens[token] = granted
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    # blobs

    def _blob(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        state = self.state
        name, digest = match.group("name"), match.group("digest")
        data = state.blobs.get(digest)
        if data is None or (name, digest) not in state.links:
            self._error(404, "BLOB_UNKNOWN", f"{digest} unknown")
            return
        if self.command == "DELETE":
            state.links.discard((name, digest))
            self._send(202)
            return
        if digest in state.faults.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not state.faults.ignore_range and self.command == "GET":
            found = re.match(r"bytes=(\d+)-$", range_header)
            if found:
                start = int(found.group(1))
        if self.command == "GET" and digest in state.faults.cut_once:
            state.faults.cut_once.discard(digest)
            half = len(data) // 2
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:half])
            self.wfile.flush()
            self.close_connection = True
            return
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers)
        else:
            self._send(200, data, headers)

    def _uploads(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        state = self.state
        name = match.group("name")
        mount, source = query.get("mount", [None])[0], query.get("from", [None])[0]
        self._body()
        if mount and source and (source, mount) in state.links:
            state.links.add((name, mount))
            self._send(
                201,
                headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
            )
            return
        upload = str(uuid.uuid4())
        state.uploads[upload] = (name, bytearray())
        self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": "0-0"})

    def _upload(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        state = self.state
        name, upload = match.group("name"), match.group("uuid")
        entry = state.uploads.get(upload)
        body = self._body()
        if entry is None or entry[0] != name:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
            return
        buffer = entry[1]
        if self.command == "DELETE":
            del state.uploads[upload]
            self._send(204)
            return
        if self.command == "PATCH":
            content_range = self.headers.get("Content-Range")
            if content_range:
                start = int(content_range.split("-")[0])
                if start != len(buffer):
                    self._error(416, "BLOB_UPLOAD_INVALID", f"expected range from {len(buffer)}")
                    return
            buffer.extend(body)
            self._send(
                202,
                headers={
                    "Location": f"/v2/{name}/blobs/uploads/{upload}",
                    "Range": f"0-{len(buffer) - 1}",
                },
            )
            return
        if self.command == "PUT":
            buffer.extend(body)
            digest = query.get("digest", [""])[0]
            actual = "sha256:" + hashlib.sha256(buffer).hexdigest()
            if digest != actual:
                self._error(400, "DIGEST_INVALID", f"got {actual}")
                return
            del state.uploads[upload]
            with state._lock:
                state.blobs[digest] = bytes(buffer)
                state.links.add((name, digest))
            self._send(
                201,
                headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
            )
            return
        self._error(405, "UNSUPPORTED", self.command)

    # manifests and tags

    def _manifest(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        state = self.state
        name, ref = match.group("name"), match.group("ref")
        if self.command == "PUT":
            body = self._body()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            media_type = self.headers.get("Content-Type", "")
            with state._lock:
                state.manifests[(name, digest)] = (media_type, body)
                state.manifests[(name, ref)] = (media_type, body)
            self._send(
                201,
                headers={
                    "Docker-Content-Digest": digest,
                    "Location": f"/v2/{name}/manifests/{digest}",
                },
            )
            return
        found = state.manifests.get((name, ref))
        if found is None:
            self._error(404, "MANIFEST_UNKNOWN", f"{name}:{ref} unknown")
            return
        media_type, body = found
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if self.command == "DELETE":
            for key in [k for k, v in state.manifests.items() if k[0] == name and v[1] == body]:
                del state.manifests[key]
            self._send(202)
            return
        self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest})

    def _tags(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        state = self.state
        name = match.group("name")
        names = sorted(
            ref for (repo, ref) in state.manifests if repo == name and not ref.startswith("sha256:")
        )
        last = query.get("last", [""])[0]
        if last:
            names = [n for n in names if n > last]
        headers = {"Content-Type": "application/json"}
        count = query.get("n", [""])[0]
        if count:
            page = names[: int(count)]
            if len(names) > len(page):
                headers["Link"] = f'</v2/{name}/tags/list?n={count}&last={page[-1]}>; rel="next"'
            names = page
        self._send(200, json.dumps({"name": name, "tags": names}).encode(), headers)
