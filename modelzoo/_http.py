"""HTTP for downloads: allowed schemes, hand-followed redirects, Range headers, error lines.

Only ``https``, ``http`` and ``file`` URLs are ever opened, and a redirect may not change
the scheme (http -> https is the one change allowed). ``requests`` is imported inside
the functions that use it, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin, urlsplit

from . import constants

__all__ = ["ALLOWED_SCHEMES"]

logger = logging.getLogger("modelzoo")

#: The only URL schemes modelzoo ever opens.
ALLOWED_SCHEMES = ("https", "http", "file")

_MAX_REDIRECTS = 10
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


class _Retry(Exception):
    """This attempt failed in a way worth retrying on the same URL."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.status = status


class _UrlFailed(Exception):
    """This URL cannot deliver the file; move on to the next one."""

    def __init__(self, reason: str, *, status: int | None = None):
        super().__init__(reason)
        self.status = status


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _describe(exc: BaseException) -> str:
    """One short line for a network exception (requests' own messages run long)."""
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        connect, read = constants.timeouts()
        if "Connect" in name:
            return f"could not connect within {connect:g} s (connect timeout)"
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


def _open(session, url: str, headers: dict[str, str]):
    """GET ``url`` (streamed), following redirects only to the same scheme or to https."""
    import requests

    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        try:
            response = session.get(
                current,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=constants.timeouts(),
                # Passed explicitly: requests lets REQUESTS_CA_BUNDLE override a
                # session's own `verify` otherwise.
                verify=session.verify,
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise _UrlFailed(f"invalid URL: {exc}") from exc
        except requests.exceptions.SSLError as exc:
            # Certificates do not fix themselves: retrying would only delay the error.
            raise _UrlFailed(f"TLS error (certificate or protocol): {_root_cause(exc)}") from exc
        except requests.RequestException as exc:
            raise _Retry(_describe(exc)) from exc
        if response.status_code not in _REDIRECT_STATUS or "Location" not in response.headers:
            return response
        target = urljoin(current, response.headers["Location"])
        response.close()
        before, after = _scheme(current), _scheme(target)
        # Same scheme, or an upgrade to https; anything else could downgrade security
        # or reach a local file.
        if after != before and not (before == "http" and after == "https"):
            raise _UrlFailed(
                f"refused redirect to {target}: redirects may not change the scheme "
                f"({before} -> {after})"
            )
        logger.debug("redirect %s -> %s", current, target)
        current = target
    raise _UrlFailed(f"more than {_MAX_REDIRECTS} redirects")


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> ``(100, 1000)``; unknown parts are None."""
    if not value or not value.strip().startswith("bytes "):
        return None, None
    span, _, total = value.strip()[6:].partition("/")
    start = _int(span.partition("-")[0].strip())
    return start, _int(total.strip())


def _content_range_total(value: str | None) -> int | None:
    """``bytes */1000`` (as sent with 416) -> ``1000``."""
    return _content_range(value)[1] if value and "*/" in value else None


def _new_session():
    import requests

    from . import __version__

    session = requests.Session()
    session.headers["User-Agent"] = f"modelzoo/{__version__} python-requests/{requests.__version__}"
    return session
