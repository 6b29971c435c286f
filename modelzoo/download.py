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
  :mod:`modelzoo.mirrors`) and ``MODELZOO_OFFLINE`` forbids the network (``file://``
  still works);
* every network rule (schemes, redirects, credentials, timeouts, deadline, minimum
  throughput, retries, Retry-After, User-Agent) is :mod:`modelzoo._http`'s;
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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import _jsonio, constants
from ._http import (
    ALLOWED_SCHEMES,
    Pace,
    _content_range,
    _content_range_total,
    _describe,
    _int,
    _open,
    _Retry,
    _scheme,
    _Stalled,
    _status_failure,
    _UrlFailed,
    new_session,
    redact,
    retry_delay,
    url_problem,
)
from .errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    ManifestError,
    OfflineError,
    UsageError,
)
from .hashes import Hasher, HashingWriter, WriteFailed, algorithms_for, format_hash, matches
from .manifest import Hash, parse_hash
from .mirrors import rewrite_urls
from .progress import progress_bar

if TYPE_CHECKING:  # requests is imported lazily: `import modelzoo.download` stays cheap
    import requests

__all__ = ["ALLOWED_SCHEMES", "DownloadResult", "download", "rewrite_urls"]

logger = logging.getLogger("modelzoo")

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
        meta = _jsonio.read(_meta_path(partial))
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
    return CacheError(
        f"Could not write {partial}: {exc.strerror or exc}. Check that the folder is "
        "writable, or set MODELZOO_HOME to a folder you can write."
    )


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
        self.pace: Pace | None = None
        self.served_by: str | None = None  # the URL the last response came from

    # -- retry loop per URL --

    def fetch(self, url: str) -> DownloadResult:
        failures = resumes = 0
        best = _size_of(self.partial) or 0
        self.pace = pace = Pace()  # deadline and minimum throughput, per URL
        while True:
            try:
                if _scheme(url) == "file":
                    return self._copy_file(url)
                pace.check()
                return self._attempt(url)
            except _Retry as exc:
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
                if failures > constants.max_retries():
                    attempts = "1 attempt" if failures == 1 else f"{failures} attempts"
                    raise _UrlFailed(
                        f"{exc} (gave up after {attempts})", status=exc.status
                    ) from exc
                delay = retry_delay(failures, self.backoff, exc.retry_after)
                logger.info("%s: %s; retrying in %.2g s", url, exc, delay)
                pace.sleep(delay)

    # -- http(s) --

    def _resume_plan(self, url: str) -> tuple[int, dict[str, str]]:
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
        response = _open(self.session, url, headers, pace=self.pace)
        with response:
            self.served_by = response.url or url
            status = response.status_code
            if status == 416 and offset:
                total = _content_range_total(response.headers.get("Content-Range"))
                if total == offset:  # the previous attempt already had every byte
                    return self._finish(url, None, resumed=True)
                _discard(self.partial)
                raise _Retry("the server refused to resume (HTTP 416); starting again")
            reason = f"HTTP {status} {response.reason or ''}".strip()
            verdict = _status_failure(response)
            if verdict is not None:
                raise verdict
            if status not in (200, 206):
                raise _UrlFailed(f"unexpected {reason}", status=status)
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            decode = encoding not in ("", "identity")
            if status == 206:
                offset = self._check_partial_response(url, response, offset, decode)
            elif offset:
                logger.info("%s ignored the Range request; downloading from the start", url)
                offset = 0
            length = None if decode else _int(response.headers.get("Content-Length"))
            total = offset + length if length is not None else None
            if self.size is not None and total is not None and total != self.size:
                _discard(self.partial)
                raise _UrlFailed(
                    f"the server announces {total:,} bytes but {self.size:,} are expected"
                )
            self._write_meta(url, response, total)
            hasher = Hasher(algorithms_for(self.expected))
            if offset:
                hasher.update_from_file(self.partial)
            self._stream(response, hasher, offset=offset, total=total, decode=decode)
            return self._finish(url, hasher, resumed=offset > 0)

    def _check_partial_response(self, url: str, response, offset: int, decode: bool) -> int:
        meta = _read_meta(self.partial) or {}
        start, total = _content_range(response.headers.get("Content-Range"))
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
            raise _Retry(f"{problem}; starting again")
        return offset

    def _write_meta(self, url: str, response, total: int | None) -> None:
        meta = {
            "url": url,
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
            "expected": self.expected_text,
            "size": total,
        }
        target = _meta_path(self.partial)
        tmp = target.with_name(target.name + ".tmp")
        try:
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            _discard(self.partial)
            raise _cache_error(self.partial, exc, needed=total) from exc

    def _stream(self, response, hasher: Hasher, *, offset: int, total, decode: bool) -> None:
        try:
            sink = HashingWriter(self.partial, hasher, append=offset > 0)
        except OSError as exc:
            raise _cache_error(self.partial, exc, needed=total) from exc
        failure: Exception | None = None
        try:
            received = self._pump(response, sink, offset=offset, total=total, decode=decode)
        except (_Retry, _UrlFailed, WriteFailed) as exc:
            failure = exc
        finally:
            # Always let the writer finish: the bytes received so far are kept for a resume
            # (also on KeyboardInterrupt), unless writing them failed.
            write_error = sink.finish()
        if write_error is not None:
            _discard(self.partial)
            needed = total - offset - sink.written if total is not None else None
            raise _cache_error(self.partial, write_error, needed=needed) from write_error
        if isinstance(failure, _UrlFailed) and not isinstance(failure, _Stalled):
            _discard(self.partial)
        if failure is not None:
            raise failure
        if total is not None and received < total:
            raise _Retry(f"connection closed after {received:,} of {total:,} bytes")

    def _pump(self, response, sink: HashingWriter, *, offset: int, total, decode: bool) -> int:
        import requests
        import urllib3

        network_errors = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
        limit = total if total is not None else self.size
        received = offset
        read = response.raw.read1
        with progress_bar(total, desc=self.desc, enabled=self.progress) as bar:
            bar.update(offset)
            while True:
                try:
                    # read1 returns what has arrived (up to a chunk): large pieces on fast
                    # links, steady progress and little to lose on slow ones.
                    chunk = read(constants.CHUNK_SIZE, decode_content=decode)
                except network_errors as exc:
                    raise _Retry(_describe(exc, self.pace.read_timeout())) from exc
                if not chunk:
                    return received
                received += len(chunk)
                if limit is not None and received > limit:
                    raise _UrlFailed(f"the server sent more than the expected {limit:,} bytes")
                sink.put(chunk)
                bar.update(len(chunk))
                self.pace.got(len(chunk))
                self.pace.check()

    # -- file:// --

    def _copy_file(self, url: str) -> DownloadResult:
        from urllib.request import url2pathname  # pulls in http.client: only when needed

        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise _UrlFailed("file URLs must name a local path (file:///path/to/file)")
        source = Path(url2pathname(parts.path))
        if not source.is_file():
            raise _UrlFailed(f"no such file: {source}")
        _discard(self.partial)  # a local copy never needs resuming
        total = source.stat().st_size
        if self.size is not None and total != self.size:
            raise _UrlFailed(f"the file has {total:,} bytes but {self.size:,} are expected")
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
                while chunk := fh.read(constants.CHUNK_SIZE):
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
            raise _UrlFailed(f"could not read {source}: {read_error.strerror or read_error}")
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
                raise _Retry(f"{problem[0]} mismatch after resuming; starting again")
            what, want, got = problem
            source = url if _scheme(url) == "file" else (self.served_by or url)
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
    candidates = rewrite_urls(originals, constants.mirror())
    if constants.offline():
        candidates = [u for u in candidates if _scheme(u) == "file"]
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
    try:
        for url in candidates:
            problem = url_problem(url)
            if problem:
                failures.append((redact(url), problem))
                continue
            if _scheme(url) != "file" and job.session is None:
                job.session = new_session()
            logger.info("Downloading %s to %s", url, partial)
            try:
                return job.fetch(url)
            except _UrlFailed as exc:
                logger.info("%s failed: %s", url, exc)
                failures.append((url, str(exc)))
                status = exc.status or status
    finally:
        if session is None and job.session is not None:
            job.session.close()
    message = _failure_message(redact(originals[0]), partial, failures)
    raise DownloadError(message, url=redact(originals[0]), status=status)


def _failure_message(first: str, partial: Path, failures: list[tuple[str, str]]) -> str:
    """One line: what failed, each URL's reason, and the next step."""
    if len(failures) == 1 and failures[0][0] == first:
        what = f"Could not download {first}: {failures[0][1]}."
    else:
        reasons = "; ".join(f"{url}: {reason}" for url, reason in failures)
        what = f"Could not download {first} from any of {len(failures)} URLs ({reasons})."
    kept = _size_of(partial)
    tail = " Check your network connection and proxy settings, or set MODELZOO_MIRROR to a "
    tail += "reachable mirror, then try again."
    if kept:
        tail += f" The {kept:,} bytes already received are kept and will be resumed."
    return what + tail
