"""Registry configuration: ``<MODELZOO_HOME>/config.json`` and the locations written in it.

Registries added with :func:`~modelzoo.hub.registry.add_registry` are kept in ``config.json``
as ``{"registries": [{"name": ..., "location": ...}, ...]}``, most recently added first.
Changes are made under a file lock and written atomically, so changes made by several
processes at once never overwrite each other. Locations (folders, ``file://`` and
``http(s)://`` URLs) are normalised here, both when written and when read from
``MODELZOO_REGISTRY``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import config, files
from ..errors import LockTimeoutError, ModelZooError, RegistryError, UsageError
from .home import cache_error, claim_home

# For modelzoo.hub.registry only (the module is private to hub/).
__all__ = ["default_name", "normalize_location", "read_config", "update_config"]

_CONFIG_FILE = "config.json"


def normalize_location(location: Any, *, what: str = "registry location") -> tuple[str, str]:
    """``(kind, location)``: ``folder`` with an absolute path, or ``http`` with a clean URL."""
    if not isinstance(location, (str, os.PathLike)) or not str(location).strip():
        raise UsageError(f"Invalid {what} {location!r}: give a folder path or an http(s) URL.")
    text = str(location).strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - parses the port: "http://h:x" fails here, not later
        except ValueError as exc:
            raise UsageError(f"Invalid {what} {text!r}: {exc}.") from None
        scheme = parts.scheme.lower()
        if "@" in parts.netloc:  # never echo it: it holds a password
            raise UsageError(
                f"Invalid {what}: the URL carries credentials (user:password@host), which "
                "modelzoo never takes from URLs. Remove them and put them in ~/.netrc "
                "(machine HOST login USER password PASSWORD)."
            )
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise UsageError(f"Invalid {what} {text!r}: the URL has no host.")
            if parts.query or parts.fragment:
                raise UsageError(f"Invalid {what} {text!r}: drop the ?query/#fragment.")
            return "http", text.rstrip("/")
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise UsageError(f"Invalid {what} {text!r}: file:// URLs must be local.")
            from urllib.request import url2pathname  # lazily: it imports http.client

            text = url2pathname(parts.path)
        else:
            raise UsageError(
                f"Unsupported {what} {text!r} (scheme {scheme!r}): use a folder path, "
                "file://, http:// or https://."
            )
    return "folder", str(Path(text).expanduser().absolute())


def default_name(kind: str, location: str) -> str:
    if kind == "http":
        parts = urlsplit(location)
        raw = f"{parts.netloc}{parts.path}"
    else:
        raw = Path(location).name
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-._")[:60].strip("-._")
    return name or "registry"


def _config_path() -> Path:
    return config.home() / _CONFIG_FILE


def read_config() -> dict[str, Any]:
    path = _config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        data = files.loads(raw)
    except files.InvalidJSONError as exc:
        raise RegistryError(f"{path} is {exc.reason}. Fix it or delete it.") from None
    registries = data.get("registries", []) if isinstance(data, dict) else None
    ok = isinstance(registries, list) and all(
        isinstance(r, dict)
        and isinstance(r.get("name"), str)
        and isinstance(r.get("location"), str)
        for r in registries
    )
    if not ok:
        raise RegistryError(
            f'{path}: expected {{"registries": [{{"name": ..., "location": ...}}, ...]}}. '
            "Fix it or delete it."
        )
    return data


def update_config(change) -> Any:
    """Apply ``change(config) -> result`` under a lock and write the config atomically."""
    import filelock  # lazily: only the config-changing commands need it

    path = _config_path()
    claim_home(path.parent)
    lock = filelock.FileLock(str(path) + ".lock", timeout=30)
    try:
        with lock:
            doc = read_config()
            doc.setdefault("registries", [])
            result = change(doc)
            data = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
            files.atomic_write(path, data.encode("utf-8"))
    except filelock.Timeout as exc:
        raise LockTimeoutError(
            f"Another modelzoo process has held {lock.lock_file} for 30 s. Wait for it to "
            "finish; if none is running, delete that file."
        ) from exc
    except ModelZooError:
        raise
    except OSError as exc:  # a read-only or full MODELZOO_HOME
        raise cache_error(exc, path, "write") from exc
    return result
