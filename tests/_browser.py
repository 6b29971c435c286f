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

import base64
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
from modelzoo.export.tfjs_runtime import NODE_LOADER_JS

__all__ = [
    "TFJS_VERSION",
    "CHROMIUM_FLAGS",
    "node_path",
    "chromium_path",
    "ensure_tfjs",
    "tfjs_bundle",
    "LocalServer",
    "run_chromium",
    "DevToolsPage",
    "screenshot",
    "run_node_predictions",
    "run_node_training",
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


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 10 or more (close-on-exec); ``fd`` is closed."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class DevToolsPage:
    """One headless Chromium tab driven over the DevTools protocol (``--remote-debugging-pipe``).

    Every request the tab makes, to any host, is recorded from ``Network.requestWillBeSent``
    (Chromium's own request log), so a test can assert what a page fetched. No host name
    resolves except 127.0.0.1, so nothing can leave the machine by accident::

        with DevToolsPage(chromium, workdir) as page:
            page.navigate(url)
            page.evaluate("window.modelzoo.ready")
            urls = page.request_urls()
    """

    def __init__(self, chromium: str, workdir: Path, *, flags: tuple[str, ...] = ()):
        self.chromium = chromium
        self.workdir = Path(workdir)
        self.flags = flags
        self.events: list[dict[str, Any]] = []
        self._responses: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._proc: subprocess.Popen | None = None
        self._session: str | None = None
        self._closed = False

    def __enter__(self) -> DevToolsPage:
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=self.workdir))
        cmd_read, cmd_write = os.pipe()  # we write commands; Chromium reads them on fd 3
        out_read, out_write = os.pipe()  # Chromium answers on fd 4
        # The child's ends move above 9, so the redirections below never clobber fd 3/4.
        cmd_read, out_write = (_high_fd(fd) for fd in (cmd_read, out_write))
        # bash, not sh: dash only redirects single-digit descriptors.
        shell = f'exec "$0" "$@" 3<&{cmd_read} 4>&{out_write} {cmd_read}<&- {out_write}>&-'
        args = [
            *CHROMIUM_FLAGS,
            "--remote-debugging-pipe",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
            *self.flags,
            "about:blank",
        ]
        self._log = open(self.workdir / "chromium.log", "wb")  # noqa: SIM115 - closed on exit
        self._proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", shell, self.chromium, *args],
            pass_fds=(cmd_read, out_write),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(cmd_read)
        os.close(out_write)
        self._write_fd, self._read_fd = cmd_write, out_read
        threading.Thread(target=self._reader, daemon=True).start()
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)
            attached = self.call(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
                browser=True,
            )
            self._session = attached["sessionId"]
            for method in ("Network.enable", "Page.enable", "Runtime.enable"):
                self.call(method)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.close(self._write_fd)
        if self._proc is not None:
            _stop(self._proc)
        with contextlib.suppress(OSError):
            os.close(self._read_fd)
        self._log.close()

    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        browser: bool = False,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Send one command (to the tab, or to the browser) and return its result."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self._session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(
                lambda: ident in self._responses or self._closed, timeout=timeout
            ):
                raise AssertionError(f"{method}: no answer within {timeout:.0f}s{self._tail()}")
            if ident not in self._responses:
                raise AssertionError(f"{method}: Chromium exited{self._tail()}")
            response = self._responses.pop(ident)
        if "error" in response:
            raise AssertionError(f"{method}: {response['error']}")
        return response.get("result", {})

    def wait_event(self, method: str, *, after: int = 0, timeout: float = 60) -> dict[str, Any]:
        """The first event ``method`` at or after index ``after`` of :attr:`events`."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("method") == method), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() or self._closed, timeout=timeout):
                raise AssertionError(f"no {method} within {timeout:.0f}s{self._tail()}")
            event = found()
        if event is None:
            raise AssertionError(f"Chromium exited before {method}{self._tail()}")
        return event["params"]

    def navigate(self, url: str, *, timeout: float = 60) -> None:
        """Open ``url`` and wait for its load event."""
        mark = len(self.events)
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", after=mark, timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float = 120) -> Any:
        """Run JavaScript in the page, await a returned Promise, and return its JSON value."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise AssertionError(f"JavaScript error: {text}{self._tail()}")
        return result["result"].get("value")

    def request_urls(self) -> list[str]:
        """Every URL the tab requested so far, in order (Chromium's own log)."""
        with self._cond:
            return [
                e["params"]["request"]["url"]
                for e in self.events
                if e.get("method") == "Network.requestWillBeSent"
            ]

    def screenshot(self, out: Path, *, width: int = 1000, height: int = 700) -> Path:
        """Save a PNG of the tab at ``width`` x ``height`` CSS pixels."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        Path(out).write_bytes(base64.b64decode(data))
        return Path(out)

    def _tail(self) -> str:
        logs = [
            e["params"]
            for e in self.events
            if e.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
        ]
        return f"\nconsole/exceptions: {json.dumps(logs)[-3000:]}" if logs else ""


# A file IOHandler that loads a layers-model from a folder (@tensorflow/tfjs has none for
# Node), and one that saves a model to a folder as model.json + weights.bin.
_NODE_IO = (
    NODE_LOADER_JS
    + r"""

function toFolder(dir) {
  return tf.io.withSaveHandler(async (artifacts) => {
    fs.mkdirSync(dir, { recursive: true });
    const data = [].concat(artifacts.weightData).map((b) => Buffer.from(b));
    fs.writeFileSync(path.join(dir, "weights.bin"), Buffer.concat(data));
    fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify({
      format: artifacts.format, generatedBy: artifacts.generatedBy,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
      userDefinedMetadata: artifacts.userDefinedMetadata,
    }));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
  });
}

"""
)

# Loads layers-models from folders and predicts on given inputs; writes one JSON document.
_NODE_SCRIPT = (
    _NODE_IO
    + r"""
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
)


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


# Trains a head with an export's own modelzoo-train.js on a frozen base, as the page does.
_NODE_TRAIN_SCRIPT = (
    _NODE_IO
    + r"""
async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const { Trainer } = require(path.join(job.dir, "modelzoo-train.js"));
  await tf.setBackend("cpu");
  await tf.ready();
  const config = JSON.parse(fs.readFileSync(path.join(job.dir, "browser-training.json"), "utf8"));
  const base = await tf.loadLayersModel(fromFolder(job.dir));
  const head = config.head;
  const trainer = new Trainer(tf, base, {
    classes: config.classes, hidden: head.hidden, activation: head.activation,
    learningRate: head.learning_rate, epochs: head.epochs, batchSize: head.batch_size,
    metadata: { base: config.base },
  });
  const shape = [job.shape[0], job.shape[1], job.shape[2]];
  const batch = (rows) => tf.tensor4d(rows.flat(), [rows.length, ...shape], "float32");
  const t0 = Date.now();
  for (const [label, rows] of job.train) {
    const x = batch(rows);
    trainer.addExamples(x, label);
    x.dispose();
  }
  const featureSeconds = (Date.now() - t0) / 1000;
  const xTest = batch(job.test);
  const f = trainer.features(xTest);
  const features = await f.array();
  f.dispose();
  const steps = [];
  const result = await trainer.train({
    epochs: job.epochs, batchSize: job.batch_size,
    onBatchEnd: ({ step, loss }) => { steps.push(step); },
  });
  const p = trainer.predict(xTest);
  const probs = await p.array();
  tf.dispose([p, xTest]);
  await trainer.save(toFolder(job.save));
  const out = { counts: trainer.counts(), losses: result.losses, steps, features, probs,
                featureSeconds, trainSeconds: result.seconds, tensors: tf.memory().numTensors };
  trainer.dispose();
  out.tensorsAfterDispose = tf.memory().numTensors;
  fs.writeFileSync(process.argv[3], JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""
)


def run_node_training(
    prefix: Path, job: dict[str, Any], *, workdir: Path, timeout: float = 180
) -> dict[str, Any]:
    """Train a head in Node.js with the export ``job["dir"]``'s own ``modelzoo-train.js``.

    ``job``: ``dir``, ``shape`` (H, W, C), ``train`` ([label, [flat image, ...]] pairs),
    ``test`` (flat images), ``epochs``, ``batch_size``, ``save`` (folder for the head).
    Returns ``counts, losses, steps, features (of test), probs (of test), ...``.
    """
    script = workdir / "train.js"
    script.write_text(_NODE_TRAIN_SCRIPT, "utf-8")
    job_path, out_path = workdir / "train-job.json", workdir / "train-out.json"
    job_path.write_text(json.dumps(job), "utf-8")
    env = dict(os.environ, NODE_PATH=str(prefix / "node_modules"))
    proc = subprocess.run(
        [node_path() or "node", str(script), str(job_path), str(out_path)],
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
