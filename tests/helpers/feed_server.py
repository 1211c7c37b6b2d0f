"""A real HTTP(S) server on 127.0.0.1 that serves feeds with scripted behaviours: ETag and
Last-Modified with 304, gzip as a file or as Content-Encoding, redirects, errors before a
good answer, a slow or a dropped body, credentials it requires.  It records every request
(the `feed_server` and `tls_feed_server` fixtures in conftest.py start one)."""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_CHUNK = 1 << 16


@dataclass
class Route:
    """What one path answers."""

    body: bytes = b""
    file: Path | None = None  # served from disk in chunks instead of body
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answered 304 to a matching If-None-Match
    last_modified: str | None = None  # answered 304 to an equal If-Modified-Since
    encode_gzip: bool = False  # send the body with Content-Encoding: gzip
    chunked: bool = False  # no Content-Length: Transfer-Encoding: chunked
    redirect: str | None = None  # 302 to this path or URL
    # Statuses answered (in turn) before the real answer: 500, (429, {"Retry-After": "1"}).
    failures: deque = field(default_factory=deque)
    delay: float = 0.0  # before the status line
    stall_after: int | None = None  # send this many body bytes, then go silent
    drop_after: int | None = None  # send this many body bytes, then close the connection
    require: dict[str, str] = field(default_factory=dict)  # headers it needs, else 401


@dataclass
class Seen:
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        server: FeedServer = self.server.feeds
        headers = {k.lower(): v for k, v in self.headers.items()}
        server.seen.append(Seen(self.path, headers))
        route = server.routes.get(urlsplit(self.path).path)
        if route is None:
            return self._answer(404, b"no such feed\n")
        if route.delay and server.closing.wait(route.delay):
            return None
        if route.failures:
            failure = route.failures.popleft()
            status, extra = failure if isinstance(failure, tuple) else (failure, {})
            return self._answer(status, b"try again\n", extra)
        if any(headers.get(k.lower()) != v for k, v in route.require.items()):
            return self._answer(401, b"who are you?\n", {"WWW-Authenticate": 'Basic realm="x"'})
        if route.redirect:
            return self._answer(302, b"", {"Location": route.redirect})
        validators = {}
        if route.etag:
            validators["ETag"] = route.etag
        if route.last_modified:
            validators["Last-Modified"] = route.last_modified
        if (route.etag and headers.get("if-none-match") == route.etag) or (
            route.last_modified and headers.get("if-modified-since") == route.last_modified
        ):
            return self._answer(304, None, validators)
        self._send_body(route, validators)
        return None

    def _answer(self, status: int, body: bytes | None, extra: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_body(self, route: Route, validators: dict) -> None:
        if route.file is not None:
            size = route.file.stat().st_size
            chunks = _file_chunks(route.file)
        else:
            body = gzip.compress(route.body, mtime=0) if route.encode_gzip else route.body
            size = len(body)
            chunks = iter([body[i : i + _CHUNK] for i in range(0, len(body), _CHUNK)])
        self.send_response(200)
        for name, value in {**validators, **route.headers}.items():
            self.send_header(name, value)
        if route.encode_gzip:
            self.send_header("Content-Encoding", "gzip")
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        limit = route.stall_after if route.stall_after is not None else route.drop_after
        try:
            for chunk in chunks:
                if limit is not None and sent + len(chunk) > limit:
                    chunk = chunk[: limit - sent]
                self._write(chunk, route.chunked)
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    break
            if route.stall_after is not None:
                self.wfile.flush()
                self.server.feeds.closing.wait(60)
            elif route.drop_after is not None:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
            elif route.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up

    def _write(self, data: bytes, chunked: bool) -> None:
        if chunked and data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        elif data:
            self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def _file_chunks(path: Path):
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up or refused the certificate: the test checks the client


class FeedServer:
    """Serves `routes` (path -> Route) on 127.0.0.1; https when given a server context."""

    def __init__(self, context: ssl.SSLContext | None = None):
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.feeds = self
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if context is not None else "http"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, **route) -> str:
        """Add a route; return its URL."""
        self.routes[path] = Route(**route)
        return self.url(path)

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        time.sleep(0)
