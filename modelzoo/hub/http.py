"""The one HTTP policy: every request modelzoo makes goes through this module.

Artifact downloads (:mod:`modelzoo.hub.download`, which keeps its own resumable streaming
loop), remote registry indexes and manifests (:func:`get_bytes`) and the dry-run size
probe (:func:`head_size`) share one session factory and these rules:

* **schemes**: only ``https``, ``http`` and ``file`` URLs are opened (``file`` only by
  the download code, never over the network session);
* **redirects**: followed by hand, at most :data:`MAX_REDIRECTS`; never from https to
  http or to another scheme (http -> https is the one change allowed); a redirect to
  another host is followed (CDNs do it), but the request sent there carries only the
  protocol headers in :data:`FORWARDED_HEADERS` -- never an ``Authorization`` header or
  any other header, and netrc credentials are looked up for the new host afresh;
* **credentials**: never taken from a URL: a URL (or redirect target) with
  ``user:password@`` is refused without sending anything. Private servers authenticate
  through ``~/.netrc`` (or ``NETRC``), which requests reads per host;
* **timeouts**: ``MODELZOO_TIMEOUT`` per connect and per read; **deadline** and
  **minimum throughput** per artifact (``MODELZOO_DEADLINE``, ``MODELZOO_MIN_RATE``,
  enforced by :class:`Pace`): a URL that delivers less than the minimum rate over the
  window is given up (its bytes kept for a resume);
* **retries**: connection errors, timeouts, 408/425/429 and 5xx, at most
  ``MODELZOO_MAX_RETRIES`` per URL, exponential backoff capped at :data:`BACKOFF_CAP`
  seconds; a ``Retry-After`` on 429/503 is honoured up to :data:`RETRY_AFTER_CAP`;
* one ``User-Agent``: ``modelzoo/<version> python-requests/<version>``.

``requests`` is imported inside the functions that use it, so importing this module
stays cheap.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import time
from urllib.parse import urljoin, urlsplit

from .. import config

__all__ = [
    "ALLOWED_SCHEMES",
    "MAX_REDIRECTS",
    "FORWARDED_HEADERS",
    "get_bytes",
    "head",
    "head_size",
    # the pieces hub.download builds its streaming, resuming, parallel GETs from
    "Pace",
    "RetryableFailure",
    "Stalled",
    "UrlFailed",
    "content_range",
    "content_range_total",
    "content_span",
    "describe_failure",
    "header_int",
    "new_session",
    "open_url",
    "redact",
    "retry_delay",
    "scheme_of",
    "status_failure",
    "url_problem",
]

logger = logging.getLogger(__name__)

#: The only URL schemes modelzoo ever opens.
ALLOWED_SCHEMES = ("https", "http", "file")
#: Redirects followed per request before giving up.
MAX_REDIRECTS = 10
#: The only request headers sent to another host after a redirect (plus the User-Agent).
FORWARDED_HEADERS = frozenset(
    {"range", "if-range", "accept", "accept-encoding", "if-none-match", "if-modified-since"}
)
#: Longest pause between two retries from exponential backoff (seconds).
BACKOFF_CAP = 8.0
#: Longest ``Retry-After`` honoured (seconds); longer requests are cut to this.
RETRY_AFTER_CAP = 60.0

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUS = frozenset({408, 425, 429})


class RetryableFailure(Exception):
    """This attempt failed in a way worth retrying on the same URL."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after=None):
        super().__init__(reason)
        self.status = status
        self.retry_after: float | None = retry_after


class UrlFailed(Exception):
    """This URL cannot deliver the file; move on to the next one."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.status = status


class Stalled(UrlFailed):
    """The deadline passed or the throughput fell below the minimum: keep the bytes."""


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{parts.port or ''}"


def url_problem(url: str) -> str | None:
    """Why the policy refuses to open ``url`` (never echoing credentials), or None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "(none)"
        return f"unsupported scheme {shown!r}; only https, http and file URLs are fetched"
    if "@" in parts.netloc:
        return (
            "the URL carries credentials (user:password@host), which modelzoo never sends; "
            "put them in ~/.netrc instead"
        )
    return None


def redact(url: str) -> str:
    """``url`` without any ``user:password@`` part (for messages and records)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def describe_failure(exc: BaseException, read_timeout: float | None = None) -> str:
    """One short line for a network exception (requests' own messages run long)."""
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        connect, read = config.timeouts()
        if "Connect" in name:
            return f"could not connect within {connect:g} s (connect timeout)"
        read = read_timeout or read
        return f"no data for {read:g} s (read timeout; MODELZOO_TIMEOUT raises it)"
    text = str(exc)
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection closed before the end of the file"
    return f"connection failed: {_root_cause(exc)}"


def _root_cause(exc: BaseException) -> str:
    """The innermost message of a chained exception, on one line."""
    for _ in range(10):  # requests wraps urllib3 wraps socket errors, a few levels deep
        inner = exc.__cause__ or (exc.args[0] if exc.args else None)
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    reason = getattr(exc, "reason", None)
    text = str(reason if isinstance(reason, BaseException) else exc)
    return " ".join(text.split())[:200]


def retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(failures: int, backoff: float, asked: float | None) -> float:
    """Pause before retry number ``failures``: capped backoff, or a capped Retry-After."""
    delay = min(backoff * 2 ** (failures - 1), BACKOFF_CAP)
    if asked is not None:
        delay = max(delay, min(asked, RETRY_AFTER_CAP))
    return delay


class Pace:
    """Deadline and minimum throughput for fetching one URL (across its retries).

    Every chunk received is reported with :meth:`got`; :meth:`check` raises
    :class:`Stalled` once the deadline has passed or when, over the last ``window``
    seconds, fewer than ``rate * window`` bytes arrived. A deliberate pause (backoff,
    Retry-After) restarts the window.
    """

    def __init__(self) -> None:
        self.deadline = config.deadline()
        self.rate, self.window = config.min_rate()
        self.start = time.monotonic()
        self.total = 0
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self.restart_window()

    def restart_window(self) -> None:
        self._window_start = time.monotonic()
        self._marks = collections.deque([(self._window_start, self.total)])

    def got(self, n: int) -> None:
        self.total += n
        now = time.monotonic()
        self._marks.append((now, self.total))
        while len(self._marks) > 2 and self._marks[1][0] <= now - self.window:
            self._marks.popleft()

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() - self.start)

    def check(self) -> None:
        now = time.monotonic()
        if now - self.start > self.deadline:
            raise Stalled(f"gave up at the {self.deadline:g} s deadline (MODELZOO_DEADLINE)")
        if self.rate <= 0 or now - self._window_start < self.window:
            return
        base = self._marks[0][1]
        for when, total in self._marks:
            if when > now - self.window:
                break
            base = total
        got = self.total - base
        if got < self.rate * self.window:
            raise Stalled(
                f"stalled: {got:,} bytes in the last {self.window:g} s, below the minimum of "
                f"{self.rate:g} bytes/s (MODELZOO_MIN_RATE)"
            )

    def read_timeout(self) -> float:
        """The socket read timeout: never longer than the window or the deadline left."""
        read = config.timeouts()[1]
        if self.rate > 0:
            read = min(read, self.window)
        return max(0.05, min(read, self.remaining()))

    def sleep(self, delay: float) -> None:
        """Pause before a retry (never past the deadline), then restart the window."""
        time.sleep(max(0.0, min(delay, self.remaining())))
        self.restart_window()


def new_session():
    """The one ``requests.Session`` factory: modelzoo's User-Agent, no session auth.

    requests still reads ``~/.netrc`` (``NETRC``) and proxy variables per request; that
    is the only place credentials come from.
    """
    import requests

    from ..config import VERSION

    session = requests.Session()
    session.headers["User-Agent"] = f"modelzoo/{VERSION} python-requests/{requests.__version__}"
    return session


def open_url(session, url: str, headers: dict[str, str], *, method: str = "GET", pace=None):
    """Send ``method`` to ``url`` (streamed), following redirects under the policy.

    Raises:
        UrlFailed: the URL or a redirect breaks the policy, or TLS failed.
        RetryableFailure: a network error worth retrying.
    """
    import requests

    current = url
    connect, read = config.timeouts()
    if pace is not None:
        read = pace.read_timeout()
    for _ in range(MAX_REDIRECTS + 1):
        problem = url_problem(current)
        if problem is None and scheme_of(current) == "file":
            problem = "file URLs are not fetched over the network"
        if problem:
            raise UrlFailed(problem)
        try:
            response = session.request(
                method,
                current,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(connect, read),
                # Passed explicitly: requests lets REQUESTS_CA_BUNDLE override a
                # session's own `verify` otherwise.
                verify=session.verify,
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise UrlFailed(f"invalid URL: {_root_cause(exc)}") from exc
        except requests.exceptions.SSLError as exc:
            # Certificates do not fix themselves: retrying would only delay the error.
            raise UrlFailed(f"TLS error (certificate or protocol): {_root_cause(exc)}") from exc
        except requests.RequestException as exc:
            raise RetryableFailure(describe_failure(exc, read)) from exc
        if response.status_code not in _REDIRECT_STATUS or "Location" not in response.headers:
            return response
        target = urljoin(current, response.headers["Location"])
        response.close()
        before, after = scheme_of(current), scheme_of(target)
        # Same scheme, or an upgrade to https; anything else could downgrade security
        # or reach a local file.
        if after != before and not (before == "http" and after == "https"):
            raise UrlFailed(
                f"refused redirect to {redact(target)}: redirects may not change the scheme "
                f"({before} -> {after})"
            )
        if _host(target) != _host(current):
            # Another host gets the protocol headers only: nothing a caller added, no
            # Authorization (requests looks up netrc for the new host on its own).
            headers = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
        logger.debug("redirect %s -> %s", redact(current), redact(target))
        current = target
    raise UrlFailed(f"more than {MAX_REDIRECTS} redirects")


def status_failure(response) -> RetryableFailure | UrlFailed | None:
    """The retry-or-fail verdict for an HTTP status (None for 2xx)."""
    status = response.status_code
    if status < 400 and status not in _RETRY_STATUS:
        return None
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status >= 500 or status in _RETRY_STATUS:
        asked = retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        return RetryableFailure(reason, status=status, retry_after=asked)
    return UrlFailed(reason, status=status)


def _with_retries(url: str, attempt, *, backoff: float = 0.5):
    """Run ``attempt(pace)`` until it returns, retrying ``RetryableFailure`` under the policy."""
    pace = Pace()
    failures = 0
    while True:
        try:
            pace.check()
            return attempt(pace)
        except RetryableFailure as exc:
            failures += 1
            pace.check()
            if failures > config.max_retries():
                attempts = "1 attempt" if failures == 1 else f"{failures} attempts"
                raise UrlFailed(f"{exc} (gave up after {attempts})", status=exc.status) from exc
            delay = retry_delay(failures, backoff, exc.retry_after)
            logger.info("%s: %s; retrying in %.2g s", redact(url), exc, delay)
            pace.sleep(delay)


def get_bytes(
    url: str, *, headers: dict[str, str] | None = None, max_bytes: int, session=None
) -> tuple[int, dict[str, str], bytes]:
    """GET a small document (an index, a manifest) under the policy.

    Returns:
        ``(status, headers, body)`` of the final response; 2xx, 304 and 4xx other than
        408/425/429 are returned, not raised, so the caller can word its own error.

    Raises:
        UrlFailed: the policy refused the URL or a redirect, the body is larger than
            ``max_bytes``, or retries ran out (the reason is one line).
    """
    import requests
    import urllib3

    own = session is None
    session = session or new_session()

    def attempt(pace: Pace):
        response = open_url(session, url, dict(headers or {}), pace=pace)
        with response:
            verdict = status_failure(response)
            if isinstance(verdict, RetryableFailure):
                raise verdict
            body = bytearray()
            try:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    body += chunk
                    pace.got(len(chunk))
                    pace.check()
                    if len(body) > max_bytes:
                        raise UrlFailed(f"the response is larger than {max_bytes:,} bytes")
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise RetryableFailure(describe_failure(exc, pace.read_timeout())) from exc
            return response.status_code, dict(response.headers), bytes(body)

    try:
        return _with_retries(url, attempt)
    finally:
        if own:
            session.close()


def head(url: str, *, session=None):
    """The response headers (case-insensitive) of a HEAD request under the policy, or None."""
    own = session is None
    session = session or new_session()

    def attempt(pace: Pace):
        response = open_url(session, url, {"Accept-Encoding": "identity"}, method="HEAD", pace=pace)
        with response:
            verdict = status_failure(response)
            if verdict is not None:
                raise verdict
            return response.headers

    try:
        return _with_retries(url, attempt)
    except UrlFailed as exc:
        logger.info("HEAD %s failed: %s", redact(url), exc)
        return None
    finally:
        if own:
            session.close()


def head_size(url: str, *, session=None) -> int | None:
    """Content-Length from a HEAD request under the policy; None when unknown."""
    headers = head(url, session=session)
    return header_int(headers.get("Content-Length")) if headers else None


def header_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def content_span(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes 100-199/1000`` -> ``(100, 199, 1000)``; unknown parts are None."""
    if not value or not value.strip().startswith("bytes "):
        return None, None, None
    span, _, total = value.strip()[6:].partition("/")
    first, _, last = span.partition("-")
    return header_int(first.strip()), header_int(last.strip()), header_int(total.strip())


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> ``(100, 1000)``; unknown parts are None."""
    start, _, total = content_span(value)
    return start, total


def content_range_total(value: str | None) -> int | None:
    """``bytes */1000`` (as sent with 416) -> ``1000``."""
    return content_range(value)[1] if value and "*/" in value else None
