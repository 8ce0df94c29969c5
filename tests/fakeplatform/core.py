"""A stateful fake platform on 127.0.0.1: routes, recorded requests and injected faults.

Each platform module (``x.py``, ``reddit.py``, ...) registers its routes on a :class:`FakePlatform`
and keeps its own state (posts, issued tokens). Tests then inject faults with :meth:`fail`:
the next N requests whose path starts with a prefix get a canned answer (a status with headers,
an HTML page, malformed JSON, a trickle of bytes, a connection dropped) instead of the real one.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """What the fake server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """An answer: ``body`` may be bytes, str, or anything JSON-serializable."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float | None = None  # seconds between single bytes (a server that trickles)
    drop: bool = False  # close the connection without answering
    hang: float | None = None  # seconds to stay silent before answering (a server that times out)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain; charset=utf-8")
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


@dataclass
class Fault:
    prefix: str
    reply: Reply
    times: int


Handler = Callable[[Request, re.Match[str]], Reply]


class FakePlatform:
    """The server. Use as a context manager; ``url`` is its base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.stop_trickle = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing -------------------------------------------------------------------------------
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes.append((method.upper(), re.compile(pattern + r"\Z"), fn))
            return fn

        return register

    def reset(self) -> None:
        """Forget routes, recorded requests and faults: a fresh platform on the same server."""
        with self.lock:
            self.routes.clear()
            self.requests.clear()
            self.faults.clear()

    def fail(self, prefix: str, reply: Reply, *, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path starts with ``prefix`` with ``reply``."""
        with self.lock:
            self.faults.append(Fault(prefix, reply, times))

    def hits(self, prefix: str) -> list[Request]:
        """Recorded requests whose path starts with ``prefix``."""
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def dispatch(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            for fault in self.faults:
                if fault.times > 0 and req.path.startswith(fault.prefix):
                    fault.times -= 1
                    return fault.reply
        for method, pattern, handler in self.routes:
            if method == req.method and (m := pattern.match(req.path)):
                return handler(req, m)
        return Reply(404, {"error": f"fake platform has no route {req.method} {req.path}"})

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakePlatform:
        platform = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = platform.dispatch(req)
                if reply.hang is not None and platform.stop_trickle.wait(reply.hang):
                    return
                if reply.drop:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.close()
                    return
                payload, ctype = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                if req.headers.get("connection", "").lower() == "close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                for k, v in reply.headers.items():
                    if k.lower() != "content-type":
                        self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.trickle is None:
                    self.wfile.write(payload)
                    return
                for i in range(len(payload)):
                    if platform.stop_trickle.wait(reply.trickle):
                        break
                    try:
                        self.wfile.write(payload[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        break
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_trickle.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def html_error_page(status_text: str = "Service Temporarily Unavailable") -> Reply:
    """What a proxy or CDN sends when the API behind it is down: HTML, status 200."""
    return Reply(
        200,
        f"<!DOCTYPE html><html><head><title>{status_text}</title></head><body>{status_text}</body></html>",
        {"Content-Type": "text/html"},
    )


def malformed_json() -> Reply:
    return Reply(200, b'{"data": [{"id": "1", "text": "trunc', {"Content-Type": "application/json"})
