"""A real HTTP file server on 127.0.0.1 for download tests (reusable by any test).

`ZooServer` serves in-memory files with Range support and can misbehave per file:
cut a response halfway, answer an HTTP error a number of times, hang, or trickle
slowly. Every request is logged (path and Range header) so tests can count them.

    with ZooServer() as server:
        server.add("model.th", payload)
        server.fail("model.th", status=500, times=1)
        url = server.url("model.th")
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    """How the server misbehaves for one file (each counter is spent as used)."""

    status: int | None = None
    status_times: int = 0
    cut_times: int = 0
    hang_seconds: float = 0.0
    hang_times: int = 0
    chunk_delay: float = 0.0


@dataclass
class Request:
    """One logged request."""

    path: str
    range: str | None


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on the per-server subclass
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/").split("?")[0]
        with self.state.lock:
            self.state.requests.append(Request(name, self.headers.get("Range")))
            behaviour = self.state.behaviours.setdefault(name, Behaviour())
            body = self.state.files.get(name)
            status = None
            if behaviour.status_times > 0:
                behaviour.status_times -= 1
                status = behaviour.status
            hang = 0.0
            if behaviour.hang_times > 0:
                behaviour.hang_times -= 1
                hang = behaviour.hang_seconds
            cut = behaviour.cut_times > 0
            if cut:
                behaviour.cut_times -= 1
        if hang:
            time.sleep(hang)
        if body is None or status is not None:
            self._send_error(status or 404)
            return
        start, end = 0, len(body)
        code = 200
        requested = self.headers.get("Range")
        if requested and requested.startswith("bytes="):
            first, _, last = requested[6:].partition("-")
            start = int(first)
            end = int(last) + 1 if last else len(body)
            if start >= len(body):
                self._send_error(416)
                return
            code = 206
        self.send_response(code)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:end]
        if cut:  # send half the promised bytes, then drop the connection
            payload = payload[: len(payload) // 2]
        step = 8192
        for offset in range(0, len(payload), step):
            self.wfile.write(payload[offset : offset + step])
            if behaviour.chunk_delay:
                self.wfile.flush()
                time.sleep(behaviour.chunk_delay)
        self.wfile.flush()
        if cut:
            self.close_connection = True

    def _send_error(self, code: int) -> None:
        message = f"error {code}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)


class ZooServer:
    """A threaded HTTP server on an ephemeral port of 127.0.0.1."""

    def __init__(self) -> None:
        self.state = _State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ZooServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def add(self, name: str, body: bytes) -> str:
        """Serve `body` as `name`; returns its URL."""
        with self.state.lock:
            self.state.files[name] = body
        return self.url(name)

    def behave(self, name: str, **changes: object) -> None:
        """Set fields of the file's Behaviour (status/status_times, cut_times, ...)."""
        with self.state.lock:
            behaviour = self.state.behaviours.setdefault(name, Behaviour())
            for key, value in changes.items():
                setattr(behaviour, key, value)

    def requests_for(self, name: str) -> list[Request]:
        with self.state.lock:
            return [r for r in self.state.requests if r.path == name]
