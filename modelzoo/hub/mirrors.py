"""``MODELZOO_MIRROR``: rewriting download URLs so that mirrors are tried before the originals."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from ..errors import UsageError
from .http import ALLOWED_SCHEMES

__all__ = ["rewrite_urls"]


def _mirror_error(rule: str, detail: str) -> UsageError:
    return UsageError(
        f"MODELZOO_MIRROR={rule!r}: {detail}. Use a base URL "
        "('https://mirror.example/models') or comma-separated ORIGIN_PREFIX=MIRROR_PREFIX "
        "pairs ('https://storage.googleapis.com/=https://mirror.example/gcs/')."
    )


def _check_mirror_target(rule: str, target: str) -> None:
    try:
        parts = urlsplit(target)
    except ValueError as exc:  # e.g. "http://[::1": Invalid IPv6 URL
        raise _mirror_error(rule, f"{target!r} is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        # Not _mirror_error: it would echo the rule, password included.
        raise UsageError(
            "MODELZOO_MIRROR names a URL with credentials (user:password@host); modelzoo "
            "never takes credentials from URLs. Remove them and put them in ~/.netrc "
            "(machine HOST login USER password PASSWORD) instead."
        )
    if parts.scheme.lower() not in ALLOWED_SCHEMES or (
        parts.scheme.lower() != "file" and not parts.netloc
    ):
        raise _mirror_error(rule, f"{target!r} is not an absolute https, http or file URL")


def rewrite_urls(urls: str | Iterable[str], rule: str | None) -> list[str]:
    """Apply a mirror rule to ``urls``; mirrored URLs come first, the originals after.

    ``rule`` is either a base URL, under which each http(s) URL's host and path are
    appended (``https://mirror.corp/models`` turns ``https://storage.googleapis.com/x.h5``
    into ``https://mirror.corp/models/storage.googleapis.com/x.h5``), or comma-separated
    ``ORIGIN_PREFIX=MIRROR_PREFIX`` pairs: a URL starting with an origin prefix has it
    replaced by the mirror prefix (the first matching pair wins).

    Args:
        urls: one URL or several, primary first.
        rule: the rule (usually ``constants.mirror()``); None or "" leaves ``urls`` as is.

    Returns:
        The URLs to try in order, without duplicates.

    Raises:
        UsageError: when ``rule`` cannot be read.
    """
    originals = [urls] if isinstance(urls, str) else list(urls)
    rule = (rule or "").strip()
    if not rule:
        return list(dict.fromkeys(originals))
    if "=" in rule:
        pairs = []
        for part in filter(None, (p.strip() for p in rule.split(","))):
            origin, sep, target = (s.strip() for s in part.partition("="))
            if not sep or not origin or not target:
                raise _mirror_error(rule, f"cannot read the pair {part!r}")
            _check_mirror_target(rule, target)
            pairs.append((origin, target))

        def rewrite(url: str) -> str | None:
            for origin, target in pairs:
                if url.startswith(origin):
                    return target + url[len(origin) :]
            return None
    else:
        _check_mirror_target(rule, rule)
        base = rule.rstrip("/")

        def rewrite(url: str) -> str | None:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https"):
                return None
            query = f"?{parts.query}" if parts.query else ""
            return f"{base}/{parts.netloc}{parts.path}{query}"

    mirrored = [m for m in map(rewrite, originals) if m]
    return list(dict.fromkeys([*mirrored, *originals]))
