"""A real HTTP(S) server on 127.0.0.1 for tests: files from a folder, Range, ETag, and faults.

Every test in the project may use it (pytest puts ``tests/`` on ``sys.path``)::

    from _server import LocalServer

    with LocalServer(tmp_path) as server:
        url = server.url + "/model.h5"              # the file tmp_path/model.h5
        url = server.url + "/flaky/2/model.h5"      # 503 twice, then the file
        ...
        assert server.requests[-1].headers.get("Range") == "bytes=100-"

Plain paths serve files below ``root`` with ``ETag``, ``Last-Modified``, ``Accept-Ranges``,
single ``Range`` requests (206 / 416 with ``Content-Range``), ``If-Range``, ``HEAD`` and
conditional GETs (``If-None-Match`` / ``If-Modified-Since`` -> 304, counted in
``server.not_modified``).
Bodies go out with ``sendfile`` so the server stays cheap next to the code under test.

Fault routes are path prefixes; they can be stacked (``/flaky/1/truncate/100/x.bin``):

==================================  ======================================================
``/status/<code>/<file>``           answer ``code`` (404, 500, ...) with a short text body
``/flaky/<n>/<file>``               503 for the first ``n`` requests of this exact path
``/retry-after/<seconds>/<file>``   429 with ``Retry-After: <seconds>`` (stack after ``first``)
``/truncate/<nbytes>/<file>``       announce the full length, close after ``nbytes`` of body
``/lying-length/<file>``            Content-Length 100 bytes larger than the body, then close
``/stall/<seconds>/<file>``         send the headers, then wait ``seconds`` before the body
``/norange/<file>``                 ignore ``Range`` (always 200, no ``Accept-Ranges``)
``/nolength/<file>``                no Content-Length: the body ends when the connection closes
``/slow/<bytes-per-sec>/<file>``    send the body at about this rate, in 20 pieces a second
``/redirect/<quoted target>``       302 to ``urllib.parse.unquote(target)``, any scheme
``/range-ignored/<file>``           advertise ``Accept-Ranges: bytes`` but answer every
                                    ``Range`` with the whole file (200)
``/range-shift/<nbytes>/<file>``    answer a ``Range`` from ``nbytes`` past the asked start
                                    (an honest ``Content-Range`` for the wrong bytes)
``/range-short/<nbytes>/<file>``    answer a ``Range`` with at most ``nbytes`` bytes (an
                                    honest, shorter ``Content-Range``)
``/first/<n>/<faults...>/<file>``   the faults after it apply to the first ``n`` requests of
                                    this exact path only; later requests get the plain file
==================================  ======================================================

For example ``/first/1/truncate/1000/x.bin`` cuts the first response short and serves
the rest normally, and ``/first/1/slow/20000/x.bin`` is slow once (a download killed
mid-way can then be resumed at full speed from the same URL).

``server.rate`` (bytes/s, default None) caps every connection's body rate, as object
stores and CDNs do; ``server.bytes_sent`` counts body bytes and ``server.max_active`` the
most GETs served at once.

``LocalServer(root, tls=True)`` serves HTTPS with a throw-away self-signed certificate
(needs the ``openssl`` command); pass ``server.cafile`` as ``requests``' ``verify``.
"""

from __future__ import annotations

import collections
import email.utils
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["LocalServer", "Request"]

_ARG_ROUTES = (
    "first", "status", "flaky", "retry-after", "truncate", "stall", "slow", "range-shift",
    "range-short",
)  # fmt: skip
_FLAG_ROUTES = ("lying-length", "norange", "nolength", "range-ignored")
_LIE = 100  # extra bytes claimed by /lying-length/


@dataclass(frozen=True)
class Request:
    """One request the server received: ``path`` includes any query string."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """Serve ``root`` on ``127.0.0.1:<free port>`` from a background thread.

    Attributes:
        url: ``http://127.0.0.1:<port>`` (``https://`` with ``tls=True``), no trailing slash.
        requests: every request received, in order (a list of :class:`Request`).
        cafile: the certificate to trust for ``tls=True`` servers, else None.
    """

    def __init__(self, root: str | Path, *, tls: bool = False):
        self.root = Path(root).resolve()
        self.requests: list[Request] = []
        self.cafile: str | None = None
        self.not_modified = 0  # 304 answers sent
        self.rate: int | None = None  # per-connection body rate cap (bytes/s)
        self.bytes_sent = 0
        self.max_active = 0
        self._active = 0
        self._hits: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._tmp: str | None = None
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        if tls:
            self._httpd.ssl_context = self._make_tls_context()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _make_tls_context(self) -> ssl.SSLContext:
        if shutil.which("openssl") is None:
            raise RuntimeError("LocalServer(tls=True) needs the openssl command")
        self._tmp = tempfile.mkdtemp(prefix="localserver-tls-")
        cert, key = f"{self._tmp}/cert.pem", f"{self._tmp}/key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.cafile = cert
        return context

    def url_for(self, name: str, *routes: str) -> str:
        """``url_for("a.bin", "flaky/1")`` -> ``<url>/flaky/1/a.bin``."""
        return "/".join([self.url, *(r.strip("/") for r in routes), name.lstrip("/")])

    def paths(self, method: str | None = None) -> list[str]:
        """Paths of the requests received so far (optionally only one method's)."""
        return [r.path for r in self.requests if method is None or r.method == method]

    def close(self) -> None:
        """Stop serving; stalled and slow responses are cut short."""
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _count(self, active: int = 0, sent: int = 0) -> None:
        with self._lock:
            self._active += active
            self.max_active = max(self.max_active, self._active)
            self.bytes_sent += sent

    def _record(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            self._hits[request.path] += 1
            return self._hits[request.path]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # stalled handlers must not block close()
    owner: LocalServer
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:
        if self.ssl_context is not None:
            # Handshake in the handler thread so a bad client cannot block the accept loop.
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        socketserver.TCPServer.finish_request(self, request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # clients hanging up mid-body are part of the tests, not errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - base-class signature
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # -- routing -------------------------------------------------------------------------

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        hits = owner._record(Request(self.command, self.path, dict(self.headers.items())))
        segments = urllib.parse.urlsplit(self.path).path.lstrip("/").split("/")
        faults: dict[str, str | None] = {}
        active = True
        while segments and (segments[0] in _ARG_ROUTES or segments[0] in _FLAG_ROUTES):
            name = segments.pop(0)
            value = segments.pop(0) if name in _ARG_ROUTES and segments else None
            if name == "first":
                active = active and hits <= int(value or 0)
            elif active:
                faults[name] = value
        if segments and segments[0] == "redirect":
            target = urllib.parse.unquote("/".join(segments[1:]))
            return self._reply(302, f"redirect to {target}\n", head, {"Location": target})
        if "flaky" in faults and hits <= int(faults["flaky"] or 0):
            return self._reply(503, "flaky: try again\n", head, {"Retry-After": "0"})
        if "retry-after" in faults:
            wait = faults["retry-after"] or "0"
            return self._reply(429, "too many requests\n", head, {"Retry-After": wait})
        if "status" in faults:
            code = int(faults["status"] or 500)
            return self._reply(code, f"injected status {code}\n", head)
        path = self._resolve("/".join(segments))
        if path is None:
            return self._reply(404, f"no such file: {'/'.join(segments)}\n", head)
        self._send_file(path, faults, head)

    def _resolve(self, relative: str) -> Path | None:
        candidate = (self.server.owner.root / urllib.parse.unquote(relative)).resolve()
        if not candidate.is_relative_to(self.server.owner.root) or not candidate.is_file():
            return None
        return candidate

    def _reply(self, code: int, text: str, head: bool, headers: dict | None = None) -> None:
        body = text.encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    # -- files ---------------------------------------------------------------------------

    def _send_file(self, path: Path, faults: dict, head: bool) -> None:
        stat = path.stat()
        size = stat.st_size
        etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}-{stat.st_ino:x}"'
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        start, end = 0, size  # [start, end)
        status = 200
        wanted = self.headers.get("Range")
        if not wanted and _not_modified(self.headers, etag, stat.st_mtime):
            self.server.owner.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            self.end_headers()
            return
        if_range = self.headers.get("If-Range")
        ignored = "norange" in faults or "range-ignored" in faults
        if wanted and not ignored and if_range in (None, etag, modified):
            parsed = _parse_range(wanted, size)
            if parsed == "unsatisfiable":
                return self._reply(416, "range not satisfiable\n", head,
                                   {"Content-Range": f"bytes */{size}"})  # fmt: skip
            if parsed is not None:
                status, (start, end) = 206, parsed
                if "range-shift" in faults:
                    start = min(size - 1, start + int(faults["range-shift"] or 0))
                    end = max(end, start + 1)
                if "range-short" in faults:
                    end = min(end, start + max(1, int(faults["range-short"] or 1)))
        length = end - start
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        if "norange" not in faults:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if "nolength" in faults:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            claimed = length + (_LIE if "lying-length" in faults else 0)
            self.send_header("Content-Length", str(claimed))
        self.end_headers()
        if head:
            return
        closing = self.server.owner._closing
        if "stall" in faults and closing.wait(float(faults["stall"] or 0)):
            self.close_connection = True
            return
        if "truncate" in faults:
            length = min(length, int(faults["truncate"] or 0))
        if "truncate" in faults or "lying-length" in faults:
            self.close_connection = True
        rate = int(faults["slow"]) if "slow" in faults else None
        owner = self.server.owner
        owner._count(active=1)
        try:
            with path.open("rb") as fh:
                if rate is not None:
                    self._send_slowly(fh, start, length, rate, closing)
                elif owner.rate:
                    self._send_capped(fh, start, length, owner.rate, closing)
                elif length:
                    self.connection.sendfile(fh, start, length)
                    owner._count(sent=length)
        except OSError:  # the client went away
            self.close_connection = True
        finally:
            owner._count(active=-1)

    def _send_capped(self, fh, start: int, length: int, rate: int, closing) -> None:
        """sendfile in pieces of 1/50 s, paced against the clock (a per-connection cap)."""
        piece = max(1, rate // 50)
        began = time.monotonic()
        sent = 0
        while sent < length and not closing.is_set():
            n = self.connection.sendfile(fh, start + sent, min(piece, length - sent))
            if not n:
                break
            sent += n
            self.server.owner._count(sent=n)
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        if sent < length:
            self.close_connection = True

    def _send_slowly(self, fh, start: int, length: int, rate: int, closing) -> None:
        piece = max(1, rate // 20)
        fh.seek(start)
        while length > 0 and not closing.is_set():
            data = fh.read(min(piece, length))
            if not data:
                break
            self.wfile.write(data)
            self.server.owner._count(sent=len(data))
            length -= len(data)
            time.sleep(len(data) / rate)
        if length:
            self.close_connection = True


def _not_modified(headers, etag: str, mtime: float) -> bool:
    """Whether a conditional GET may be answered 304 (If-None-Match wins, as in RFC 9110)."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return etag in [t.strip() for t in if_none_match.split(",")] or if_none_match == "*"
    since = headers.get("If-Modified-Since")
    if since:
        try:
            return int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _parse_range(header: str, size: int):
    """``(start, end)`` for one ``bytes=a-b`` range; "unsatisfiable"; None to ignore it."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix range: the last N bytes
            count = int(last)
            return (max(0, size - count), size) if count > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size)) if end > start else None
