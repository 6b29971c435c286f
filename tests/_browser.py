"""Helpers for the TensorFlow.js tests: real Node.js, real headless Chromium.

* :func:`ensure_tfjs` installs ``@tensorflow/tfjs`` with npm once into
  ``~/.cache/modelzoo-tests/tfjs-<version>/`` (``$XDG_CACHE_HOME`` respected), so later
  runs reuse it; the install happens in a temp folder renamed into place.
* :class:`LocalServer` serves folders and files on 127.0.0.1 (port 0) and collects the
  JSON documents pages POST to ``/report``.
* :func:`run_chromium` opens a URL in headless Chromium and returns the first report;
  :func:`screenshot` saves a PNG of a page (used by ``scripts/screenshot_demo.py``).
* :func:`run_node_predictions` loads exported models from disk in Node.js and predicts.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from modelzoo.export.tfjs import TFJS_VERSION

__all__ = [
    "TFJS_VERSION",
    "CHROMIUM_FLAGS",
    "node_path",
    "chromium_path",
    "ensure_tfjs",
    "tfjs_bundle",
    "LocalServer",
    "run_chromium",
    "screenshot",
    "run_node_predictions",
    "write_png",
]

#: Flags for a quiet, hermetic headless Chromium (no network chatter, fresh profile).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-default-browser-check",
    "--mute-audio",
)


def node_path() -> str | None:
    """The ``node`` executable, or None when Node.js/npm are not installed."""
    node = shutil.which("node")
    return node if node and shutil.which("npm") else None


def chromium_path() -> str | None:
    """A Chromium/Chrome executable: ``$CHROME_BIN``, ``/usr/bin/chromium``, or on PATH."""
    env = os.environ.get("CHROME_BIN", "").strip()
    if env and os.access(env, os.X_OK):
        return env
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
    return Path(base) / "modelzoo-tests"


def _installed(prefix: Path, version: str) -> bool:
    pkg = prefix / "node_modules" / "@tensorflow" / "tfjs"
    try:
        meta = json.loads((pkg / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("version") == version and (pkg / "dist" / "tf.min.js").is_file()


def tfjs_cached(version: str = TFJS_VERSION) -> bool:
    """Whether :func:`ensure_tfjs` would find ``@tensorflow/tfjs`` without installing it."""
    return _installed(_cache_root() / f"tfjs-{version}", version)


def ensure_tfjs(version: str = TFJS_VERSION) -> Path:
    """The npm prefix holding ``node_modules/@tensorflow/tfjs@version``, installed once."""
    from filelock import FileLock

    prefix = _cache_root() / f"tfjs-{version}"
    if _installed(prefix, version):
        return prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(prefix) + ".lock", timeout=900):
        if _installed(prefix, version):
            return prefix
        tmp = Path(tempfile.mkdtemp(prefix=f".tfjs-{version}.", dir=prefix.parent))
        try:
            (tmp / "package.json").write_text('{"private": true}\n', "utf-8")
            cmd = [
                shutil.which("npm") or "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",  # tfjs needs none; core-js's postinstall only prints
                "--save-exact",
                "--prefix",
                str(tmp),
                f"@tensorflow/tfjs@{version}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0 or not _installed(tmp, version):
                raise RuntimeError(
                    f"npm could not install @tensorflow/tfjs@{version} (exit {proc.returncode}):"
                    f"\n{proc.stderr[-3000:]}"
                )
            if prefix.exists():
                shutil.rmtree(prefix)
            os.replace(tmp, prefix)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return prefix


def tfjs_bundle(prefix: Path) -> Path:
    """The browser bundle ``tf.min.js`` inside an :func:`ensure_tfjs` prefix."""
    return prefix / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"


_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".json": "application/json",
    ".png": "image/png",
    ".bin": "application/octet-stream",
}


class LocalServer:
    """Serve ``routes`` (URL path or prefix ending in ``/`` -> file or folder) on 127.0.0.1.

    Pages POST JSON to ``/report``; each document lands in :attr:`reports`.
    """

    def __init__(self, routes: dict[str, str | os.PathLike[str]]):
        self.routes = {k: Path(v) for k, v in routes.items()}
        self.reports: queue.Queue[Any] = queue.Queue()
        self.requests: list[str] = []
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _resolve(self, path: str) -> Path | None:
        for route in sorted(self.routes, key=len, reverse=True):
            target = self.routes[route]
            if route.endswith("/") and path.startswith(route):
                base = target.resolve()
                candidate = (base / path[len(route) :]).resolve()
                if candidate.is_dir():
                    candidate = candidate / "index.html"
                if candidate.is_relative_to(base) and candidate.is_file():
                    return candidate
                return None
            if path == route:
                return target if target.is_file() else None
        return None

    def __enter__(self) -> LocalServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                server.requests.append(path)
                found = server._resolve(path)
                if found is None:
                    self.send_error(404)
                    return
                body = found.read_bytes()
                self.send_response(200)
                self.send_header(
                    "Content-Type", _TYPES.get(found.suffix, "application/octet-stream")
                )
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path != "/report":
                    self.send_error(404)
                    return
                try:
                    server.reports.put(json.loads(raw))
                except ValueError:
                    server.reports.put({"error": f"unparsable report: {raw[:200]!r}"})
                self.send_response(204)
                self.end_headers()

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop a Chromium we started, with its helper processes (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def run_chromium(
    chromium: str, url: str, server: LocalServer, *, workdir: Path, timeout: float = 60.0
) -> dict[str, Any]:
    """Open ``url`` headless and return the first JSON document POSTed to ``/report``.

    Chromium is killed on return or on timeout; a timeout raises with its log tail.
    """
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    log_path = workdir / "chromium.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its renderers share the group we kill
        )
        try:
            try:
                return server.reports.get(timeout=timeout)
            except queue.Empty:
                pass
            exited = proc.poll()
        finally:
            _stop(proc)
    tail = log_path.read_text("utf-8", "replace")[-4000:]
    raise AssertionError(
        f"No report from the page within {timeout:.0f}s (chromium exit code: {exited}). "
        f"Requests served: {server.requests}\nChromium log tail:\n{tail}"
    )


def screenshot(
    chromium: str,
    url: str,
    out: Path,
    *,
    window_size: tuple[int, int] = (960, 640),
    budget_ms: int = 15000,
    timeout: float = 90.0,
) -> Path:
    """Save a PNG of ``url`` after ``budget_ms`` of (virtual) page time."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            f"--window-size={window_size[0]},{window_size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            output = b""
        finally:
            _stop(proc)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot:\n{output.decode(errors='replace')}")
    return out


# Loads layers-models from folders (a file IOHandler: @tensorflow/tfjs has none for Node)
# and predicts on given inputs; prints nothing, writes one JSON document.
_NODE_SCRIPT = r"""
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function fromFolder(dir) {
  return {
    load: async () => {
      const mj = JSON.parse(fs.readFileSync(path.join(dir, "model.json"), "utf8"));
      const specs = [];
      const chunks = [];
      for (const group of mj.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) chunks.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(chunks);
      return {
        modelTopology: mj.modelTopology,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        format: mj.format, generatedBy: mj.generatedBy, convertedBy: mj.convertedBy,
      };
    },
  };
}

async function main() {
  const jobs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  await tf.setBackend("cpu");
  await tf.ready();
  const out = {
    tfjs: tf.version.tfjs, backend: tf.getBackend(),
    classes: Object.keys(tf.serialization.SerializationMap.getMap().classNameMap),
    results: {},
  };
  for (const [key, job] of Object.entries(jobs)) {
    try {
      const model = await tf.loadLayersModel(fromFolder(job.dir));
      const x = tf.tensor(job.data, job.shape, "float32");
      const y = model.predict(x);
      out.results[key] = { pred: await y.array(), n_weights: model.weights.length };
      tf.dispose([x, y]);
    } catch (e) {
      out.results[key] = { error: String((e && e.stack) || e) };
    }
  }
  fs.writeFileSync(process.argv[3], JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def run_node_predictions(
    prefix: Path, jobs: dict[str, tuple[Path, np.ndarray]], *, workdir: Path, timeout: float = 120
) -> dict[str, Any]:
    """Predict with TF.js in Node on each ``name -> (export folder, float32 inputs)``.

    Returns ``{"tfjs", "backend", "classes", "results": {name: {"pred"} | {"error"}}}``.
    """
    script = workdir / "predict.js"
    script.write_text(_NODE_SCRIPT, "utf-8")
    jobs_path, out_path = workdir / "jobs.json", workdir / "node-out.json"
    payload = {
        name: {"dir": str(folder), "data": x.ravel().tolist(), "shape": list(x.shape)}
        for name, (folder, x) in jobs.items()
    }
    jobs_path.write_text(json.dumps(payload), "utf-8")
    env = dict(os.environ, NODE_PATH=str(prefix / "node_modules"))
    proc = subprocess.run(
        [node_path() or "node", str(script), str(jobs_path), str(out_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=workdir,
    )
    if proc.returncode != 0:
        raise AssertionError(f"node failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out_path.read_text("utf-8"))


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an 8-bit RGB image (H, W, 3) as a minimal PNG (no colour profile chunks)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, channels = rgb.shape
    assert channels == 3
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))  # filter 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    path = Path(path)
    path.write_bytes(png)
    return path
