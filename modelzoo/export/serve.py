"""A local static web server for exported pages (``modelzoo serve DIR``).

Browsers refuse to load ``model.json`` into a page opened from ``file://``, so an export
folder has to be served over HTTP. :class:`StaticServer` is the standard library's
``http.server`` bound to 127.0.0.1 only (nothing on the network can reach it), with the
content types TF.js pages need (``.json``, ``.bin``, ``.js``, ``.html``, ``.wasm``), no
caching (a re-export is picked up on reload) and requests logged through ``logging``.
TensorFlow-free.
"""

from __future__ import annotations

import errno
import functools
import http.server
import logging
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["StaticServer", "CONTENT_TYPES"]

logger = logging.getLogger(__name__)

#: Content types by file suffix (anything else: the standard library's guess).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".bin": "application/octet-stream",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".css": "text/css; charset=utf-8",
}


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.info("%s %s", self.address_string(), format % args)


class StaticServer:
    """Serve the files of ``folder`` on ``http://127.0.0.1:PORT/`` (in a background thread
    when used as a context manager, or in the caller's thread with :meth:`serve_forever`).

    Args:
        folder: the folder to serve (an export folder).
        port: TCP port; 0 picks a free one.

    Raises:
        UsageError: ``folder`` is not a folder, or the port is taken or not allowed.
    """

    def __init__(self, folder: str | os.PathLike[str], *, port: int = 8000):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise UsageError(
                f"{self.folder} is not a folder. Pass the folder an export wrote (its --out)."
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise UsageError(f"port must be 0..65535 (0: any free port). Received: {port!r}.")
        handler = functools.partial(_Handler, directory=str(self.folder))
        try:
            self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on 127.0.0.1 is already in use. Pick another with --port "
                    "(--port 0 takes any free port)."
                ) from exc
            raise UsageError(f"Cannot listen on 127.0.0.1 port {port}: {exc}.") from exc
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or KeyboardInterrupt."""
        logger.info("serving %s on %s", self.folder, self.url)
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def __enter__(self) -> StaticServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
