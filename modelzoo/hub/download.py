"""Streaming, verified, resumable downloads over https, http and file URLs.

:func:`download` fills a *partial* file (a stable path in the cache's temp area, guarded
by the caller's lock) and returns only when it holds the complete bytes, checked against
the expected size and hash. The caller then moves it into place. What it guarantees:

* the hash is computed while the bytes arrive: a worker thread hashes and writes each
  chunk while the main thread reads the next one from the socket;
* an interrupted download (dropped connection, killed process) resumes with an HTTP
  ``Range`` request; the sidecar ``<partial>.meta`` records the URL, the server's
  validators (``ETag`` / ``Last-Modified``) and the expected hash, so bytes of two
  different files are never stitched together;
* connection errors, timeouts, truncated bodies, 429 and 5xx are retried with capped
  exponential backoff (a ``Retry-After`` is honoured up to a cap); other 4xx move on to
  the next URL at once;
* a URL that passes the per-artifact deadline or delivers less than the minimum
  throughput is given up with its bytes kept, so a later call resumes;
* ``MODELZOO_MIRROR`` rewrites URLs (mirrors first, originals after; see
  :mod:`modelzoo.hub.mirrors`) and ``MODELZOO_OFFLINE`` forbids the network (``file://``
  still works);
* a large file (``MODELZOO_PARALLEL_MIN_SIZE``) on a server that advertises ranges, whose
  first connection proves slow within ``MODELZOO_PARALLEL_PROBE`` seconds, keeps what that
  connection got and fetches the rest as ranged parts over ``MODELZOO_PARALLEL``
  connections, spread over the URL and
  the mirrors serving the same length (:class:`_Parallel`): parts are hashed in order as
  they arrive, each resumes on its own, their progress is saved in the sidecar, and a
  server that lies about ranges is dropped for one stream;
* every network rule (schemes, redirects, credentials, timeouts, deadline, minimum
  throughput, retries, Retry-After, User-Agent) is :mod:`modelzoo.hub.http`'s;
* a wrong size or hash deletes the partial and raises :class:`IntegrityError`; a full
  disk deletes it and raises :class:`CacheError`.

``ALLOWED_SCHEMES`` and :func:`rewrite_urls` are re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import config, files
from ..errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    ManifestError,
    OfflineError,
    UsageError,
)
from ..progress import ProgressBar, progress_bar
from .hashes import Hasher, HashingWriter, WriteFailed, algorithms_for, format_hash, matches
from .home import cache_error as _folder_error
from .home import write_json
from .http import (
    ALLOWED_SCHEMES,
    Pace,
    RetryableFailure,
    Stalled,
    UrlFailed,
    content_range,
    content_range_total,
    content_span,
    describe_failure,
    head,
    header_int,
    new_session,
    open_url,
    redact,
    retry_delay,
    scheme_of,
    status_failure,
    url_problem,
)
from .manifest import Hash, parse_hash
from .mirrors import rewrite_urls

if TYPE_CHECKING:  # requests is imported lazily: `import modelzoo.hub.download` stays cheap
    import requests

__all__ = ["ALLOWED_SCHEMES", "DownloadResult", "download", "rewrite_urls"]

logger = logging.getLogger(__name__)

# Resumes that made progress do not use up retries; this bounds them all the same, so a
# server that drip-feeds a few bytes per connection cannot keep a download alive forever.
_MAX_RESUMES = 100
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True)
class DownloadResult:
    """A finished, verified download.

    Attributes:
        path: the partial file, now holding the complete bytes.
        size: its size in bytes.
        sha256: lowercase hex sha256 of the bytes.
        md5: lowercase hex md5, or None when it was not asked for.
        url: the URL (from the list tried) the bytes came from.
    """

    path: Path
    size: int
    sha256: str
    md5: str | None
    url: str

    @property
    def digest(self) -> str:
        """``"sha256:<hex>"``."""
        return format_hash("sha256", self.sha256)


# -- the partial file and its sidecar --------------------------------------------------


def _meta_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".meta")


def _read_meta(partial: Path) -> dict | None:
    try:
        meta = files.read(_meta_path(partial))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _discard(partial: Path) -> None:
    for path in (partial, _meta_path(partial)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.debug("could not delete %s: %s", path, exc)


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _cache_error(partial: Path, exc: OSError, *, needed: int | None) -> CacheError:
    """A CacheError for a failed write; disk-full errors say how much space is missing."""
    try:
        free = shutil.disk_usage(partial.parent).free
        free_text = f"{free:,} bytes free"
    except OSError:
        free_text = "free space unknown"
    if exc.errno in _DISK_FULL:
        need = f"{needed:,} more bytes needed, " if needed else ""
        return CacheError(
            f"Not enough space to write {partial} ({exc.strerror or exc}; {need}{free_text}). "
            "The partial download was deleted. Free some space, or set MODELZOO_HOME to a "
            "folder on a larger disk."
        )
    return _folder_error(exc, partial, "write")


# -- one download ----------------------------------------------------------------------


class _Job:
    """State shared by the attempts of one :func:`download` call."""

    def __init__(self, partial, *, expected, size, desc, progress, session, backoff):
        self.partial: Path = partial
        self.expected: Hash | None = expected
        self.expected_text = str(expected) if expected else None
        self.size: int | None = size
        self.desc: str = desc
        self.progress: bool | None = progress
        self.session = session
        self.backoff = backoff
        self.fresh_retry_used = False  # one clean restart after a mismatch on resumed bytes
        self.no_range = False
        self.parallel = 1  # > 1: a large file on a server with ranges goes to _fetch_parallel
        self.pace: Pace | None = None
        self.served_by: str | None = None  # the URL the last response came from
        # (hasher, bytes): the probe's one-stream hash, carried into the parts so that its
        # bytes are not read back from the file.
        self.carried: tuple[Hasher, int] | None = None
        # One bar for the artifact across retries, resumes, the probe and the parts.
        self._bars = contextlib.ExitStack()
        self._bar: ProgressBar | None = None

    def bar_at(self, done: int, total: int | None) -> ProgressBar:
        """The artifact's progress bar, showing ``done`` of ``total`` bytes."""
        if self._bar is None:
            bar = progress_bar(total, desc=self.desc, enabled=self.progress)
            self._bar = self._bars.enter_context(bar)
        self._bar.set(done, total)
        return self._bar

    def close_bar(self) -> None:
        self._bars.close()
        self._bar = None

    # -- retry loop per URL --

    def fetch(self, url: str) -> DownloadResult:
        failures = resumes = 0
        best = _size_of(self.partial) or 0
        self.pace = pace = Pace()  # deadline and minimum throughput, per URL
        while True:
            try:
                if scheme_of(url) == "file":
                    return self._copy_file(url)
                pace.check()
                return self._attempt(url)
            except RetryableFailure as exc:
                pace.check()  # a stall or the deadline ends this URL, bytes kept
                now = _size_of(self.partial) or 0
                if now > best and resumes < _MAX_RESUMES:
                    # Bytes were saved: the server works, the link is flaky. Resume at once,
                    # without spending a retry, as long as every attempt gets further.
                    best = now
                    resumes += 1
                    logger.info("%s: %s; resuming from byte %d", url, exc, now)
                    continue
                failures += 1
                if failures > config.max_retries():
                    attempts = "1 attempt" if failures == 1 else f"{failures} attempts"
                    raise UrlFailed(f"{exc} (gave up after {attempts})", status=exc.status) from exc
                delay = retry_delay(failures, self.backoff, exc.retry_after)
                logger.info("%s: %s; retrying in %.2g s", url, exc, delay)
                pace.sleep(delay)

    # -- http(s) --

    def _resume_plan(self, url: str) -> tuple[int, dict[str, str]]:
        _collapse_parts(self.partial)  # left by a parallel download: keep its prefix
        have = _size_of(self.partial)
        if not have:
            _discard(self.partial)
            return 0, {}
        meta = _read_meta(self.partial)
        reason = None
        if meta is None:
            reason = "nothing records where it came from"
        elif meta.get("expected") != self.expected_text:
            reason = "it was started for a different expected hash"
        elif self.expected is None and meta.get("url") != url:
            reason = "it came from another URL and there is no hash to check it"
        elif self.expected is None and not (meta.get("etag") or meta.get("last_modified")):
            reason = "the server gave no ETag or Last-Modified to check it against"
        elif self.size is not None and have > self.size:
            reason = "it is larger than the expected size"
        elif self.no_range:
            reason = "this server cannot resume"
        if reason:
            logger.info("Discarding partial download %s (%d bytes): %s", self.partial, have, reason)
            _discard(self.partial)
            return 0, {}
        headers = {"Range": f"bytes={have}-"}
        if meta.get("url") == url:
            etag = meta.get("etag")
            validator = etag if etag and not etag.startswith("W/") else meta.get("last_modified")
            if validator:
                headers["If-Range"] = validator
        logger.info("Resuming %s from byte %d", url, have)
        return have, headers

    def _attempt(self, url: str) -> DownloadResult:
        offset, headers = self._resume_plan(url)
        headers = {"Accept-Encoding": "identity", **headers}
        response = open_url(self.session, url, headers, pace=self.pace)
        with response:
            self.served_by = response.url or url
            status = response.status_code
            if status == 416 and offset:
                total = content_range_total(response.headers.get("Content-Range"))
                if total == offset:  # the previous attempt already had every byte
                    return self._finish(url, None, resumed=True)
                _discard(self.partial)
                raise RetryableFailure("the server refused to resume (HTTP 416); starting again")
            reason = f"HTTP {status} {response.reason or ''}".strip()
            verdict = status_failure(response)
            if verdict is not None:
                raise verdict
            if status not in (200, 206):
                raise UrlFailed(f"unexpected {reason}", status=status)
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            decode = encoding not in ("", "identity")
            if status == 206:
                offset = self._check_partial_response(url, response, offset, decode)
            elif offset:
                logger.info("%s ignored the Range request; downloading from the start", url)
                offset = 0
            length = None if decode else header_int(response.headers.get("Content-Length"))
            total = offset + length if length is not None else None
            if self.size is not None and total is not None and total != self.size:
                _discard(self.partial)
                raise UrlFailed(
                    f"the server announces {total:,} bytes but {self.size:,} are expected"
                )
            probe = None
            if (
                self.parallel > 1
                and status == 200
                and not decode
                and total
                and total >= config.parallel_min_size()
                and response.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
            ):
                probe = config.parallel_probe()
                if not probe:
                    raise _GoParallel(url, response.headers)  # before a byte is read
            self._write_meta(url, response, total)
            hasher = Hasher(algorithms_for(self.expected))
            if offset:
                hasher.update_from_file(self.partial)
            self._stream(response, hasher, offset=offset, total=total, decode=decode, probe=probe)
            return self._finish(url, hasher, resumed=offset > 0)

    def _check_partial_response(self, url: str, response, offset: int, decode: bool) -> int:
        meta = _read_meta(self.partial) or {}
        start, total = content_range(response.headers.get("Content-Range"))
        etag = response.headers.get("ETag")
        problem = None
        if decode:
            self.no_range = True
            problem = "the server compressed a partial response"
        elif start != offset:
            problem = f"the server resumed at byte {start} instead of {offset}"
        elif self.size is not None and total is not None and total != self.size:
            problem = f"the server's file has {total:,} bytes, {self.size:,} expected"
        elif meta.get("url") == url and meta.get("etag") and etag and etag != meta["etag"]:
            problem = "the file changed on the server since the partial download"
        if problem:
            _discard(self.partial)
            raise RetryableFailure(f"{problem}; starting again")
        return offset

    def _write_meta(self, url: str, response, total: int | None) -> None:
        meta = {
            "url": url,
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
            "expected": self.expected_text,
            "size": total,
        }
        try:
            files.atomic_write(_meta_path(self.partial), json.dumps(meta))
        except OSError as exc:
            _discard(self.partial)
            raise _cache_error(self.partial, exc, needed=total) from exc

    def _stream(
        self, response, hasher: Hasher, *, offset: int, total, decode: bool, probe=None
    ) -> None:
        try:
            sink = HashingWriter(self.partial, hasher, append=offset > 0)
        except OSError as exc:
            raise _cache_error(self.partial, exc, needed=total) from exc
        failure: Exception | None = None
        try:
            received = self._pump(
                response, sink, offset=offset, total=total, decode=decode, probe=probe
            )
        except (RetryableFailure, UrlFailed, WriteFailed, _GoParallel) as exc:
            failure = exc
        finally:
            # Always let the writer finish: the bytes received so far are kept for a resume
            # (also on KeyboardInterrupt), unless writing them failed.
            write_error = sink.finish()
        if write_error is not None:
            _discard(self.partial)
            needed = total - offset - sink.written if total is not None else None
            raise _cache_error(self.partial, write_error, needed=needed) from write_error
        if isinstance(failure, UrlFailed) and not isinstance(failure, Stalled):
            _discard(self.partial)
        if isinstance(failure, _GoParallel):
            self.carried = (hasher, offset + sink.written)
        if failure is not None:
            raise failure
        if total is not None and received < total:
            raise RetryableFailure(f"connection closed after {received:,} of {total:,} bytes")

    def _pump(
        self, response, sink: HashingWriter, *, offset: int, total, decode: bool, probe=None
    ) -> int:
        """Stream the body into ``sink``; returns the bytes the partial then holds.

        With ``probe`` seconds (a large file on a server with ranges), a connection that
        has not delivered :data:`_PROBE_BYTES` by then is too slow for one stream: the
        bytes so far are kept and :class:`_GoParallel` fetches the rest in parts. A fast
        connection (loopback, a fast link) stays one stream, which costs less CPU.
        """
        import requests
        import urllib3

        network_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
        limit = total if total is not None else self.size
        received = offset
        probe_until = time.monotonic() + probe if probe else None
        read = response.raw.read1
        bar = self.bar_at(offset, total)
        while True:
            try:
                # read1 returns what has arrived (up to a chunk): large pieces on fast
                # links, steady progress and little to lose on slow ones.
                chunk = read(config.CHUNK_SIZE, decode_content=decode)
            except network_errors as exc:
                raise RetryableFailure(describe_failure(exc, self.pace.read_timeout())) from exc
            if not chunk:
                return received
            received += len(chunk)
            if limit is not None and received > limit:
                raise UrlFailed(f"the server sent more than the expected {limit:,} bytes")
            sink.put(chunk)
            bar.update(len(chunk))
            self.pace.got(len(chunk))
            self.pace.check()
            if probe_until is not None:
                if received - offset >= _PROBE_BYTES:
                    probe_until = None  # fast enough: stay one stream
                elif time.monotonic() >= probe_until:
                    raise _GoParallel(self.served_by or "", response.headers)

    # -- file:// --

    def _copy_file(self, url: str) -> DownloadResult:
        from urllib.request import url2pathname  # pulls in http.client: only when needed

        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise UrlFailed("file URLs must name a local path (file:///path/to/file)")
        source = Path(url2pathname(parts.path))
        if not source.is_file():
            raise UrlFailed(f"no such file: {source}")
        _discard(self.partial)  # a local copy never needs resuming
        total = source.stat().st_size
        if self.size is not None and total != self.size:
            raise UrlFailed(f"the file has {total:,} bytes but {self.size:,} are expected")
        hasher = Hasher(algorithms_for(self.expected))
        try:
            sink = HashingWriter(self.partial, hasher, append=False)
        except OSError as exc:
            raise _cache_error(self.partial, exc, needed=total) from exc
        read_error: OSError | None = None
        try:
            with (
                progress_bar(total, desc=self.desc, enabled=self.progress) as bar,
                source.open("rb", buffering=0) as fh,
            ):
                while chunk := fh.read(config.CHUNK_SIZE):
                    sink.put(chunk)
                    bar.update(len(chunk))
        except WriteFailed:
            pass  # reported just below
        except OSError as exc:
            read_error = exc
        finally:
            write_error = sink.finish()
        if write_error is not None:
            _discard(self.partial)
            raise _cache_error(self.partial, write_error, needed=total - sink.written)
        if read_error is not None:
            _discard(self.partial)
            raise UrlFailed(f"could not read {source}: {read_error.strerror or read_error}")
        return self._finish(url, hasher, resumed=False)

    # -- verification --

    def _finish(self, url: str, hasher: Hasher | None, *, resumed: bool) -> DownloadResult:
        if hasher is None:
            hasher = Hasher(algorithms_for(self.expected))
            hasher.update_from_file(self.partial)
        digests = hasher.hexdigests()
        size = hasher.size
        problem = None
        if self.size is not None and size != self.size:
            problem = ("size", f"{self.size:,} bytes", f"{size:,} bytes")
        elif not matches(digests, self.expected):
            actual = format_hash(self.expected.algorithm, digests[self.expected.algorithm])
            problem = ("hash", str(self.expected), actual)
        if problem:
            _discard(self.partial)
            if resumed and not self.fresh_retry_used:
                # The old prefix may be the culprit (a file replaced on the server between
                # attempts without a validator saying so): try once more from zero.
                self.fresh_retry_used = True
                raise RetryableFailure(f"{problem[0]} mismatch after resuming; starting again")
            what, want, got = problem
            source = url if scheme_of(url) == "file" else (self.served_by or url)
            shown = url if source == url else f"{url} (served from {source})"
            raise IntegrityError(
                f"{shown} does not match its published {what}: expected {want}, got {got}. "
                "The download was deleted. If this happens again the file on the server has "
                "changed: tell the registry's maintainers, or check the manifest's hash.",
                path=str(self.partial),
                expected=want,
                actual=got,
                url=source,
            )
        with contextlib.suppress(FileNotFoundError):
            _meta_path(self.partial).unlink()
        logger.info("Downloaded %s (%d bytes, sha256:%s)", url, size, digests["sha256"])
        return DownloadResult(
            path=self.partial, size=size, sha256=digests["sha256"], md5=digests.get("md5"), url=url
        )


# -- parallel ranged parts ---------------------------------------------------------------

#: Bounds of one ranged request: small enough that N connections work near the hashing
#: frontier (so the hash reads the bytes from memory), large enough to keep the number
#: of requests low.
_BLOCK_MIN = 1 << 20
_BLOCK_MAX = 2 << 20
#: Bytes received ahead of the hashing frontier that are kept in memory for the hash.
#: When it is full the connections ahead wait for the hash (the one fetching the
#: frontier never waits), so memory stays flat and nothing is read back from the file.
_MEMORY_BUDGET = 24 << 20
#: Largest read per connection: smaller than CHUNK_SIZE so that N connections' buffers
#: (and malloc's per-thread arenas) stay small.
_PART_READ = 256 << 10
#: A connection that delivers this much within ``MODELZOO_PARALLEL_PROBE`` seconds stays
#: one stream (16 MiB in 0.5 s: 32 MiB/s); parts pay off only below such rates.
_PROBE_BYTES = 16 << 20
#: Seconds between two saves of the per-part progress (what a SIGKILL may lose).
_SAVE_EVERY = 0.5


class _GoParallel(Exception):
    """The first GET found a large file on a server with ranges: fetch it in parts."""

    def __init__(self, url: str, headers):
        super().__init__(url)
        self.url = url
        self.headers = headers


class _RangeLie(Exception):
    """A source answered a range request with other bytes than asked: stop using it."""


@dataclass(eq=False)
class _Source:
    url: str
    validator: str | None  # strong ETag or Last-Modified, sent as If-Range
    etag: str | None
    last_modified: str | None
    failed: str | None = None
    lied: bool = False


@dataclass(eq=False)
class _Block:
    start: int
    end: int  # exclusive
    done: int = 0  # bytes written from ``start`` on, contiguous
    hashed: int = 0
    taken: bool = False
    buf: list[bytes] | None = None  # chunks covering [buf_from, done) of this block
    buf_from: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


class _Parallel:
    """One artifact fetched as ranged parts over several connections (and mirrors).

    Workers take the lowest unfinished block, write what arrives at its offset in the
    preallocated partial and keep it in memory; one hashing thread follows the blocks in
    order, so the digest is computed in a single pass while the bytes arrive. The main
    thread saves the per-block progress in the sidecar every :data:`_SAVE_EVERY` s.
    """

    def __init__(self, job: _Job, sources: list[_Source], total: int, parallel: int, blocks):
        self.job = job
        self.sources = sources
        self.total = total
        self.parallel = parallel
        self.blocks: list[_Block] = blocks
        self.cond = threading.Condition()
        self.frontier = 0  # index of the block being hashed
        self.buffered = 0
        self.stop = False
        self.fatal: BaseException | None = None
        self.hasher = Hasher(algorithms_for(job.expected))
        self.fd: int | None = None
        self.served: set[str] = set()
        self.bar = None

    # -- scheduling --

    def _take(self, worker: int) -> _Block | None:
        window = self.frontier + 4 * self.parallel
        with self.cond:
            while not self.stop:
                waiting = False
                for i in range(self.frontier, len(self.blocks)):
                    block = self.blocks[i]
                    if block.done >= block.size:
                        continue
                    if block.taken:
                        waiting = True
                        continue
                    if i >= window:
                        waiting = True
                        break
                    block.taken = True
                    if block.buf is None:
                        block.buf, block.buf_from = [], block.done
                    return block
                if not waiting:
                    return None  # every block is done or being fetched by others
                self.cond.wait(0.5)
                window = self.frontier + 4 * self.parallel
            return None

    def _release(self, block: _Block) -> None:
        with self.cond:
            block.taken = False
            self.cond.notify_all()

    def _source_for(self, worker: int, current: _Source | None) -> _Source | None:
        with self.cond:
            good = [s for s in self.sources if s.failed is None]
            if current in good:
                return current
            return good[worker % len(good)] if good else None

    # -- one worker: one connection --

    def _worker(self, worker: int) -> None:
        session = new_session()
        if self.job.session is not None:  # the caller's TLS settings, proxies and netrc use
            session.verify = self.job.session.verify
            session.cert = self.job.session.cert
            session.trust_env = self.job.session.trust_env
            session.proxies = dict(self.job.session.proxies)
        pace = Pace()  # deadline and minimum throughput, per connection
        source: _Source | None = None
        failures = resumes = 0
        try:
            while not self.stop:
                source = self._source_for(worker, source)
                if source is None:
                    return
                block = self._take(worker)
                if block is None:
                    return
                if source.failed is not None:  # it failed while we waited for a block
                    self._release(block)
                    continue
                pace.restart_window()  # time spent waiting for a block is not a stall
                before = block.done
                try:
                    pace.check()
                    self._fetch(session, source, block, pace)
                    failures = 0
                except _RangeLie as exc:
                    logger.info("%s: %s; not using it for ranged parts", source.url, exc)
                    with self.cond:
                        source.failed, source.lied = str(exc), True
                except RetryableFailure as exc:
                    if pace.remaining() <= 0:
                        with self.cond:
                            source.failed = f"{exc} (deadline passed)"
                        continue
                    if block.done > before and resumes < _MAX_RESUMES:
                        resumes += 1  # bytes arrived: resume the part at once
                        logger.info("%s: %s; resuming part at byte %d", source.url, exc,
                                    block.start + block.done)  # fmt: skip
                        continue
                    failures += 1
                    if failures > config.max_retries():
                        attempts = "1 attempt" if failures == 1 else f"{failures} attempts"
                        with self.cond:
                            source.failed = f"{exc} (gave up after {attempts})"
                        failures = 0
                        continue
                    delay = retry_delay(failures, self.job.backoff, exc.retry_after)
                    logger.info("%s: %s; retrying part in %.2g s", source.url, exc, delay)
                    self._release(block)
                    pace.sleep(delay)
                except Stalled as exc:
                    # One slow connection: the part goes back to the queue; the deadline
                    # (not the rate) ends the source.
                    if pace.remaining() <= 0:
                        with self.cond:
                            source.failed = str(exc)
                    else:
                        failures += 1
                        logger.info("%s: %s; retrying the part", source.url, exc)
                        if failures > config.max_retries():
                            with self.cond:
                                source.failed = str(exc)
                        pace.restart_window()
                except UrlFailed as exc:
                    with self.cond:
                        source.failed = str(exc)
                finally:
                    self._release(block)
        except BaseException as exc:  # a write error or a bug: stop every worker
            with self.cond:
                self.fatal = self.fatal or exc
                self.stop = True
                self.cond.notify_all()
        finally:
            session.close()

    def _fetch(self, session, source: _Source, block: _Block, pace: Pace) -> None:
        import requests
        import urllib3

        start = block.start + block.done
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{block.end - 1}"}
        if source.validator:
            headers["If-Range"] = source.validator
        response = open_url(session, source.url, headers, pace=pace)
        with response:
            verdict = status_failure(response)
            if verdict is not None:
                raise verdict
            status = response.status_code
            if status == 200:
                raise _RangeLie("the server ignored a Range request (HTTP 200)")
            if status != 206:
                raise UrlFailed(f"unexpected HTTP {status} {response.reason or ''}".strip())
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise _RangeLie("the server compressed a partial response")
            first, last, total = content_span(response.headers.get("Content-Range"))
            if first != start:
                raise _RangeLie(f"asked for bytes from {start}, the server sent them from {first}")
            if total is not None and total != self.total:
                raise _RangeLie(f"the server's file has {total:,} bytes, {self.total:,} expected")
            if last is None or last < first:
                raise _RangeLie("the server sent no valid Content-Range")
            stop = min(last + 1, block.end)  # a server may send less than asked: resume later
            network_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
            read = response.raw.read1
            offset = start
            while offset < stop:
                if self.stop:
                    return
                try:
                    chunk = read(min(_PART_READ, stop - offset))
                except network_errors as exc:
                    raise RetryableFailure(describe_failure(exc, pace.read_timeout())) from exc
                if not chunk:
                    got = offset - start
                    raise RetryableFailure(f"part closed after {got:,} of {stop - start:,} bytes")
                if self._write(block, chunk, offset):
                    pace.restart_window()  # waiting for the hash is not a stall either
                offset += len(chunk)
                pace.got(len(chunk))
                pace.check()
            with self.cond:
                self.served.add(source.url)

    def _must_wait(self, block: _Block, n: int) -> bool:
        """Whether to hold back: the budget is full and the hash is not starved."""
        if self.stop or block.buf is None or self.buffered + n <= _MEMORY_BUDGET:
            return False
        if self.frontier >= len(self.blocks):
            return False
        head = self.blocks[self.frontier]
        # The frontier's own connection never waits, and nobody waits while the frontier
        # block lies untaken (its part failed and went back): that block is then hashed
        # from the file instead.
        return head is not block and (head.taken or head.done >= head.size)

    def _write(self, block: _Block, chunk: bytes, offset: int) -> bool:
        """Write ``chunk`` at ``offset``; True when it first had to wait for the hash."""
        waited = False
        with self.cond:
            while self._must_wait(block, len(chunk)):
                waited = True
                self.cond.wait(0.5)
        view = memoryview(chunk)
        at = offset
        while view:
            try:
                n = os.pwrite(self.fd, view, at)
            except OSError as exc:
                raise WriteFailed(exc) from exc
            view, at = view[n:], at + n
        with self.cond:
            block.done += len(chunk)
            if block.buf is not None:
                frontier = self.frontier < len(self.blocks) and self.blocks[self.frontier]
                if self.buffered + len(chunk) <= _MEMORY_BUDGET or frontier is block:
                    block.buf.append(chunk)
                    self.buffered += len(chunk)
                else:  # over budget: the hasher reads this block from the file
                    self.buffered -= sum(map(len, block.buf))
                    block.buf = None
            self.cond.notify_all()
        self.bar.update(len(chunk))
        return waited

    # -- the hashing thread: blocks in order --

    def _hash(self) -> None:
        try:
            for index, block in enumerate(self.blocks):
                while block.hashed < block.size:
                    with self.cond:
                        while block.done <= block.hashed and not self.stop:
                            self.cond.wait()
                        if self.stop:
                            return
                        done = block.done
                        chunks: list[bytes] = []
                        disk_until = done
                        if block.buf is not None:
                            if block.buf_from <= block.hashed:
                                chunks, block.buf = block.buf, []
                                block.buf_from = done
                                self.buffered -= sum(map(len, chunks))
                                self.cond.notify_all()  # room for the connections ahead
                                disk_until = block.hashed
                            else:
                                disk_until = block.buf_from
                    if disk_until > block.hashed:
                        n = disk_until - block.hashed
                        self._hash_file(block.start + block.hashed, n)
                        block.hashed += n
                    for chunk in chunks:
                        self.hasher.update(chunk)
                        block.hashed += len(chunk)
                with self.cond:
                    block.buf = None
                    self.frontier = index + 1
                    self.cond.notify_all()
        except BaseException as exc:
            with self.cond:
                self.fatal = self.fatal or exc
                self.stop = True
                self.cond.notify_all()

    def _hash_file(self, at: int, n: int) -> None:
        """Hash bytes already in the file (a resumed part, or one over the memory budget)."""
        while n > 0:
            data = os.pread(self.fd, min(n, config.CHUNK_SIZE), at)
            if not data:
                raise OSError(errno.EIO, f"{self.job.partial} is shorter than expected")
            self.hasher.update(data)
            at, n = at + len(data), n - len(data)

    # -- run --

    def run(self) -> bool:
        """Fetch every block; True when all arrived, False when the workers gave up."""
        job = self.job
        done_before = sum(b.done for b in self.blocks)
        self.bar = job.bar_at(done_before, self.total)
        hasher = threading.Thread(target=self._hash, name="modelzoo-hash", daemon=True)
        workers = [
            threading.Thread(
                target=self._worker, args=(i,), name=f"modelzoo-part-{i}", daemon=True
            )  # fmt: skip
            for i in range(self.parallel)
        ]
        hasher.start()
        for t in workers:
            t.start()
        saved = time.monotonic()
        try:
            for t in workers:
                while t.is_alive():
                    t.join(_SAVE_EVERY)
                    if time.monotonic() - saved >= _SAVE_EVERY:
                        self.save()
                        saved = time.monotonic()
        finally:
            complete = all(b.done >= b.size for b in self.blocks)
            with self.cond:
                if not complete:
                    self.stop = True
                self.cond.notify_all()
            for t in workers:
                t.join()
            hasher.join()
            self.save()
        if self.fatal is not None:
            if isinstance(self.fatal, WriteFailed):
                _discard(job.partial)
                raise _cache_error(job.partial, self.fatal.error, needed=None) from self.fatal
            raise self.fatal
        return complete

    def save(self) -> None:
        """Record the per-block progress (atomically) so a killed process resumes it."""
        primary = self.sources[0]
        meta = {
            "url": primary.url,
            "etag": primary.etag,
            "last_modified": primary.last_modified,
            "expected": self.job.expected_text,
            "size": self.total,
            "parts": [[b.start, b.end, b.done] for b in self.blocks],
        }
        write_json(_meta_path(self.job.partial), meta)


def _block_size(total: int, parallel: int) -> int:
    return max(_BLOCK_MIN, min(_BLOCK_MAX, total // (parallel * 4) or 1))


def _layout(total: int, parallel: int) -> list[_Block]:
    step = _block_size(total, parallel)
    return [_Block(start, min(start + step, total)) for start in range(0, total, step)]


def _probe(job: _Job, candidates: list[str], known=None) -> tuple[list[_Source], int | None]:
    """The http(s) candidates that advertise ranges and agree on the length, primary first.

    Without a published hash only the first URL is used: stitching bytes of several
    servers together needs a hash to prove they were the same file.
    """
    sources: list[_Source] = []
    length = None
    for url in candidates:
        if scheme_of(url) not in ("http", "https") or url_problem(url):
            break  # keep the order: a file:// or refused URL ends the run of sources
        if known is not None and url == known[0]:
            headers = known[1]  # the answer to the GET that found the file large
        else:
            headers = head(url, session=job.session)
        if headers is None:
            continue
        ranges = headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        size = header_int(headers.get("Content-Length"))
        encoded = headers.get("Content-Encoding", "identity").strip().lower()
        if not ranges or size is None or encoded not in ("", "identity"):
            if not sources:
                return [], None  # the first server that answers cannot do ranges: one stream
            continue
        if job.size is not None and size != job.size:
            continue
        if length is not None and size != length:
            continue
        length = size
        etag = headers.get("ETag")
        modified = headers.get("Last-Modified")
        validator = etag if etag and not etag.startswith("W/") else modified
        sources.append(_Source(url, validator, etag, modified))
        if job.expected is None:
            break
    return sources, length


def _resume_blocks(job: _Job, sources: list[_Source], total: int, parallel: int):
    """The blocks an earlier (perhaps killed) download left in the partial, or None.

    A parallel sidecar gives each block's progress; a one-stream prefix counts for the
    first blocks.
    """
    meta = _read_meta(job.partial)
    have = _size_of(job.partial)
    if not meta or not have or meta.get("expected") != job.expected_text:
        return None
    if meta.get("size") not in (None, total):
        return None
    if job.expected is None:  # nothing will check the old bytes: the server must vouch
        primary = sources[0]
        same = meta.get("url") == primary.url and (
            (meta.get("etag") and meta.get("etag") == primary.etag)
            or (meta.get("last_modified") and meta.get("last_modified") == primary.last_modified)
        )
        if not same:
            return None
    parts = meta.get("parts")
    if parts is None:
        if have > total:
            return None
        blocks = _layout(total, parallel)
        for block in blocks:
            block.done = max(0, min(have - block.start, block.size))
        return blocks
    if not isinstance(parts, list) or have != total:
        return None
    blocks = []
    try:
        for start, end, done in parts:
            if not (isinstance(start, int) and isinstance(end, int) and isinstance(done, int)):
                return None
            blocks.append(_Block(start, end, done=max(0, min(done, end - start))))
    except (TypeError, ValueError):
        return None
    if not blocks or blocks[0].start != 0 or blocks[-1].end != total:
        return None
    if any(a.end != b.start for a, b in zip(blocks, blocks[1:], strict=False)):
        return None
    return blocks


def _collapse_parts(partial: Path) -> None:
    """Turn a parallel partial into a one-stream one: keep its contiguous prefix only."""
    meta = _read_meta(partial)
    if not meta or not isinstance(meta.get("parts"), list):
        return
    prefix = 0
    for start, end, done in meta["parts"]:
        if start != prefix:
            break
        prefix = start + done
        if done < end - start:
            break
    try:
        os.truncate(partial, prefix)
    except OSError:
        _discard(partial)
        return
    meta.pop("parts")
    write_json(_meta_path(partial), meta)
    logger.info("Continuing %s as one stream from byte %d", partial, prefix)


def _fetch_parallel(job: _Job, candidates: list[str], parallel: int, known=None):
    """Download in ranged parts when it applies.

    Returns:
        ``(result, failures)``: a :class:`DownloadResult`, or None to use one stream
        (no source can do ranges, the file is small, or a server lied about ranges);
        ``failures`` lists ``(url, reason)`` when every source failed otherwise.

    Raises:
        IntegrityError: the bytes do not match (after one retry from the first source
            alone when several sources served them).
    """
    threshold = config.parallel_min_size()
    if job.size is not None and job.size < threshold:
        return None, []
    sources, total = _probe(job, candidates, known)
    if not sources or total is None or total < max(threshold, 1):
        return None, []
    blocks = _resume_blocks(job, sources, total, parallel)
    if blocks is None:
        if _size_of(job.partial):
            logger.info("Discarding partial download %s: not a prefix of this file", job.partial)
        _discard(job.partial)
        blocks = _layout(total, parallel)
    else:
        kept = sum(b.done for b in blocks)
        logger.info("Resuming %s in parts: %d of %d bytes kept", job.partial, kept, total)
    resumed = any(b.done for b in blocks)
    run = _Parallel(job, sources, total, min(parallel, len(blocks)), blocks)
    carried, job.carried = job.carried, None
    if carried is not None and carried[1] == sum(b.done for b in blocks):
        # The probe's bytes (a prefix, as _resume_blocks laid them out) are hashed already.
        run.hasher = carried[0]
        for block in blocks:
            block.hashed = block.done
    try:
        run.fd = os.open(job.partial, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(run.fd).st_size < total:
            _preallocate(run.fd, total)
    except OSError as exc:
        if run.fd is not None:
            os.close(run.fd)
        _discard(job.partial)
        raise _cache_error(job.partial, exc, needed=total) from exc
    try:
        run.save()
        complete = run.run()
    finally:
        os.close(run.fd)
    served = [s.url for s in sources if s.url in run.served] or [sources[0].url]
    job.served_by = ", ".join(served)
    if not complete:
        if any(s.lied for s in sources):
            logger.info("A server lied about ranges; continuing %s as one stream", job.partial)
            _collapse_parts(job.partial)
            return None, []
        return None, [(s.url, s.failed or "gave up") for s in sources]
    first = sources[0].url
    try:
        return job._finish(first, run.hasher, resumed=resumed), []
    except (IntegrityError, RetryableFailure) as exc:
        if len(served) > 1 and not job.fresh_retry_used:
            # Several servers sent parts: fetch again from the first alone, so that a
            # mismatch then names one server.
            job.fresh_retry_used = True
            logger.warning("%s: the bytes from %s do not verify; fetching again from %s only",
                           job.desc, ", ".join(served), first)  # fmt: skip
            result, failures = _fetch_parallel(job, [first], parallel)
            if result is not None:
                bad = ", ".join(u for u in served if u != first)
                logger.warning("%s served different bytes; they were not used", bad)
            return result, failures
        if isinstance(exc, RetryableFailure):  # a mismatch after resuming: once more from zero
            return _fetch_parallel(job, candidates, parallel)
        raise


def _preallocate(fd: int, total: int) -> None:
    """Give the partial its final size up front (its blocks are written in any order)."""
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    try:
        if fallocate is None:
            raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
        fallocate(fd, 0, total)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise
        os.ftruncate(fd, total)  # a filesystem without fallocate: a sparse file


def _normalise_expected(expected: Hash | str | None) -> Hash | None:
    if expected is None or isinstance(expected, Hash):
        return expected
    try:
        return parse_hash(expected)
    except ManifestError as exc:
        raise UsageError(
            f"expected={expected!r} is not a hash: use 'sha256:<64 hex>' or 'md5:<32 hex>'."
        ) from exc


def download(
    urls: str | Iterable[str],
    partial: str | os.PathLike[str],
    *,
    expected: Hash | str | None = None,
    size: int | None = None,
    desc: str | None = None,
    progress: bool | None = None,
    session: requests.Session | None = None,
    backoff: float = 0.5,
    parallel: int | None = None,
) -> DownloadResult:
    """Download a file into ``partial`` and verify it.

    The caller owns ``partial`` (holding a lock for it): a partial left there by an
    earlier attempt, even one from a killed process, is resumed when its sidecar shows
    it is a prefix of the same file. On success ``partial`` holds the verified bytes
    and the sidecar is gone; the caller moves the file into place.

    Args:
        urls: the primary URL, then mirrors (absolute https, http or file URLs).
        partial: where to write; its folder is created if needed.
        expected: the published hash (``Hash`` or ``"sha256:<hex>"`` / ``"md5:<hex>"``).
        size: the expected size in bytes, if published.
        desc: label for the progress bar (default: the file name in the URL).
        progress: force the progress bar on or off; None decides from the terminal.
        session: a ``requests.Session`` to reuse (default: a new one, closed after).
        backoff: first retry delay in seconds; doubled per retry, capped at 8 s.
        parallel: connections for a large file (default ``MODELZOO_PARALLEL``, 8); a
            file of at least ``MODELZOO_PARALLEL_MIN_SIZE`` bytes whose server advertises
            ranges is fetched as ranged parts over the URL and the mirrors that serve the
            same length (mirrors only when a hash is published); 1 = one stream.

    Returns:
        A :class:`DownloadResult` describing the bytes in ``partial``.

    Raises:
        OfflineError: when ``MODELZOO_OFFLINE`` is on and no ``file://`` URL is given.
        DownloadError: when no URL delivered the file (one line per URL says why;
            ``status`` is the last HTTP status received, if any).
        IntegrityError: when the bytes do not match ``size`` or ``expected`` (deleted).
        CacheError: when ``partial`` cannot be written (e.g. the disk is full; deleted).
        UsageError: for an empty URL list or a malformed ``expected`` / ``size``.
    """
    originals = [urls] if isinstance(urls, str) else list(urls)
    if not originals or not all(isinstance(u, str) and u for u in originals):
        raise UsageError(f"download() needs at least one URL; received urls={urls!r}.")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise UsageError(f"size must be a byte count >= 0 or None; received size={size!r}.")
    expected = _normalise_expected(expected)
    partial = Path(partial)
    candidates = rewrite_urls(originals, config.mirror())
    if config.offline():
        candidates = [u for u in candidates if scheme_of(u) == "file"]
        if not candidates:
            raise OfflineError(f"Cannot download {originals[0]}.", url=originals[0])
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_error(partial, exc, needed=size) from exc
    name = urlsplit(originals[0]).path.rsplit("/", 1)[-1] or partial.name
    job = _Job(
        partial,
        expected=expected,
        size=size,
        desc=desc or name,
        progress=progress,
        session=session,
        backoff=backoff,
    )
    failures: list[tuple[str, str]] = []
    status = None
    job.parallel = config.parallel(parallel)
    if not hasattr(os, "pwrite"):  # parts are written at their offsets (not on Windows)
        job.parallel = 1
    try:
        if job.parallel > 1 and _is_parallel_partial(partial):
            # A parallel download was interrupted (perhaps killed): resume its parts.
            job.session = job.session or new_session()
            result = _parallel_or_fail(job, candidates, originals, None)
            if result is not None:
                return result
        for index, url in enumerate(candidates):
            problem = url_problem(url)
            if problem:
                failures.append((redact(url), problem))
                continue
            if scheme_of(url) != "file" and job.session is None:
                job.session = new_session()
            logger.info("Downloading %s to %s", url, partial)
            try:
                try:
                    return job.fetch(url)
                except _GoParallel as go:
                    known = (url, go.headers)
                    result = _parallel_or_fail(job, candidates[index:], originals, known)
                    if result is not None:
                        return result
                    job.parallel = 1  # a server lied about ranges: one stream
                    return job.fetch(url)
            except UrlFailed as exc:
                logger.info("%s failed: %s", url, exc)
                failures.append((url, str(exc)))
                status = exc.status or status
    finally:
        job.close_bar()
        if session is None and job.session is not None:
            job.session.close()
    message = _failure_message(redact(originals[0]), partial, failures)
    raise DownloadError(message, url=redact(originals[0]), status=status)


def _is_parallel_partial(partial: Path) -> bool:
    meta = _read_meta(partial) if _size_of(partial) else None
    return bool(meta) and isinstance(meta.get("parts"), list)


def _parallel_or_fail(job: _Job, candidates, originals, known) -> DownloadResult | None:
    """:func:`_fetch_parallel`, with every source failing turned into a DownloadError."""
    result, failures = _fetch_parallel(job, candidates, job.parallel, known)
    if result is None and failures:
        message = _failure_message(redact(originals[0]), job.partial, failures)
        raise DownloadError(message, url=redact(originals[0]), status=None)
    return result


def _kept(partial: Path) -> int:
    """Bytes of ``partial`` a later call can resume (a parallel one is preallocated)."""
    meta = _read_meta(partial)
    parts = meta.get("parts") if meta else None
    if isinstance(parts, list):
        try:
            return sum(int(done) for _, _, done in parts)
        except (TypeError, ValueError):
            return 0
    return _size_of(partial) or 0


def _failure_message(first: str, partial: Path, failures: list[tuple[str, str]]) -> str:
    """One line: what failed, each URL's reason, and the next step."""
    if len(failures) == 1 and failures[0][0] == first:
        what = f"Could not download {first}: {failures[0][1]}."
    else:
        reasons = "; ".join(f"{url}: {reason}" for url, reason in failures)
        what = f"Could not download {first} from any of {len(failures)} URLs ({reasons})."
    kept = _kept(partial)
    tail = " Check your network connection and proxy settings, or set MODELZOO_MIRROR to a "
    tail += "reachable mirror, then try again."
    if kept:
        tail += f" The {kept:,} bytes already received are kept and will be resumed."
    return what + tail
