"""Configuration: every ``MODELZOO_*`` environment variable is read here and nowhere else.

Precedence is always: explicit argument > environment variable > default. Values are
read at call time (not import time) so that tests and long-running processes see
changes made with ``monkeypatch.setenv`` or ``os.environ``.

==============================  ==========================================================
variable                        meaning
==============================  ==========================================================
``MODELZOO_HOME``               cache root (default: ``platformdirs.user_cache_dir``)
``MODELZOO_REGISTRY``           extra registries, highest priority, separated by ``,``
``MODELZOO_OFFLINE``            ``1``: never touch the network, use only the cache
``MODELZOO_MIRROR``             rewrite artifact URLs: ``https://internal/mirror`` or
                                ``ORIGIN=MIRROR[,ORIGIN=MIRROR...]`` prefix pairs
``MODELZOO_REQUIRE_HASHES``     ``1``: refuse artifacts without a published hash
``MODELZOO_REQUIRE_SIGNED``     ``1``: refuse unsigned registries (the bundled one excepted)
``MODELZOO_DISABLE_PROGRESS_BARS``  ``1``: never draw progress bars
``MODELZOO_DEBUG``              ``1``: the CLI shows full tracebacks
``MODELZOO_TIMEOUT``            connect/read timeout in seconds (default 10/60); a read also
                                ends after ``MODELZOO_MIN_RATE``'s window
``MODELZOO_MAX_RETRIES``        retries per URL on connection errors and 5xx (default 3)
``MODELZOO_DEADLINE``           seconds one artifact may take from one URL, retries included
                                (default 3600)
``MODELZOO_MIN_RATE``           ``BYTES_PER_S[/WINDOW_S]``: give up a URL that delivers less
                                than this over the window (default ``1024/30``; ``0`` = off)
``MODELZOO_PARALLEL``           connections per large download (default 8; ``1`` = one
                                stream); parts are spread over the URL and its mirrors
``MODELZOO_PARALLEL_MIN_SIZE``  bytes from which a download is split into parallel ranged
                                parts (default 64 MiB; smaller files use one stream)
``MODELZOO_TRUST_CACHE``        ``1``: skip the sha256 check of a cached file on every load
                                (it costs one pass over the file, overlapped with the safety
                                scan; ``modelzoo verify`` still checks on demand)
``MODELZOO_PROJECT``            the project folder (or its ``modelzoo.toml``); default: found
                                by walking up from the current directory
``MODELZOO_CPU_DEVICES``        split the CPU into N logical devices when the first strategy
                                is chosen (testing/simulation aid: try ``mirrored`` without
                                GPUs); unset = TensorFlow's default, one CPU device
``MODELZOO_REGISTER_TIMEOUT``   seconds every worker named in ``TF_CONFIG`` gets to join a
                                multi-worker cluster (default 120)
``MODELZOO_TPU_TIMEOUT``        seconds a remote TPU (``grpc://HOST:PORT``) gets to answer
                                (default 10)
==============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import UsageError  # errors.py imports nothing of ours

#: The package version (also ``modelzoo.__version__``; pyproject.toml keeps the same).
VERSION = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "CHUNK_SIZE",
    "TRUE_VALUES",
    "home",
    "registries_from_env",
    "offline",
    "mirror",
    "require_hashes",
    "require_signed",
    "progress_disabled",
    "debug",
    "timeouts",
    "max_retries",
    "deadline",
    "min_rate",
    "parallel",
    "parallel_min_size",
    "parallel_probe",
    "trust_cache",
    "env_flag",
    "project",
    "cpu_devices",
    "DEFAULT_REGISTER_TIMEOUT",
    "DEFAULT_TPU_TIMEOUT",
    "register_timeout",
    "tpu_timeout",
]

#: The manifest / index schema this version of modelzoo reads and writes.
SCHEMA_VERSION = 1

#: Streaming chunk size for downloads and hashing: large enough that hashing and
#: syscalls are cheap per byte, small enough to keep memory flat.
CHUNK_SIZE = 1 << 20

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})

_DEFAULT_CONNECT_TIMEOUT = 10.0
_DEFAULT_READ_TIMEOUT = 60.0
_DEFAULT_MAX_RETRIES = 3
#: Seconds every worker named in ``TF_CONFIG`` gets to join before the start is abandoned;
#: generous because cluster schedulers may start workers minutes apart.
DEFAULT_REGISTER_TIMEOUT = 120.0
#: Seconds a remote TPU's gRPC port gets to accept a connection and answer.
DEFAULT_TPU_TIMEOUT = 10.0
_DEFAULT_DEADLINE = 3600.0
_DEFAULT_MIN_RATE = (1024.0, 30.0)
_DEFAULT_PARALLEL = 8
_MAX_PARALLEL = 64
_DEFAULT_PARALLEL_MIN_SIZE = 64 << 20
_DEFAULT_PARALLEL_PROBE = 0.5


def env_flag(name: str, value: bool | None = None) -> bool:
    """Return ``value`` if given, else whether env var ``name`` is set to a true value."""
    if value is not None:
        return bool(value)
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


def home(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``path`` > ``MODELZOO_HOME`` > the platform's user cache dir.

    Raises:
        UsageError: the root exists but is a file, not a folder.
    """
    if path is not None:
        root = Path(path).expanduser()
    elif env := os.environ.get("MODELZOO_HOME", "").strip():
        root = Path(env).expanduser()
    else:
        import platformdirs  # imported lazily: only needed when no override is given

        root = Path(platformdirs.user_cache_dir("modelzoo", appauthor=False))
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"MODELZOO_HOME {root} is a file, not a folder. Set MODELZOO_HOME to a folder "
            "(it is created if missing), or unset it for the default."
        )
    return root


def registries_from_env() -> list[str]:
    """Registries named in ``MODELZOO_REGISTRY`` (comma separated), highest priority first."""
    raw = os.environ.get("MODELZOO_REGISTRY", "")
    return [part.strip() for part in raw.split(",") if part.strip()]


def offline(value: bool | None = None) -> bool:
    """Whether the network must not be used (``MODELZOO_OFFLINE``)."""
    return env_flag("MODELZOO_OFFLINE", value)


def mirror(value: str | None = None) -> str | None:
    """The URL rewrite rule from ``MODELZOO_MIRROR``, or None."""
    if value is not None:
        return value or None
    raw = os.environ.get("MODELZOO_MIRROR", "").strip()
    return raw or None


def require_hashes(value: bool | None = None) -> bool:
    """Whether artifacts without a published hash are refused (``MODELZOO_REQUIRE_HASHES``)."""
    return env_flag("MODELZOO_REQUIRE_HASHES", value)


def require_signed(value: bool | None = None) -> bool:
    """Whether unsigned registries are refused (``MODELZOO_REQUIRE_SIGNED``)."""
    return env_flag("MODELZOO_REQUIRE_SIGNED", value)


def progress_disabled(value: bool | None = None) -> bool:
    """Whether progress bars are switched off (``MODELZOO_DISABLE_PROGRESS_BARS``)."""
    return env_flag("MODELZOO_DISABLE_PROGRESS_BARS", value)


def debug(value: bool | None = None) -> bool:
    """Whether the CLI shows tracebacks (``MODELZOO_DEBUG``)."""
    return env_flag("MODELZOO_DEBUG", value)


def timeouts() -> tuple[float, float]:
    """``(connect, read)`` timeouts in seconds; ``MODELZOO_TIMEOUT`` sets both."""
    defaults = (_DEFAULT_CONNECT_TIMEOUT, _DEFAULT_READ_TIMEOUT)
    value = _seconds(
        "MODELZOO_TIMEOUT",
        None,
        None,
        default_text=f"({defaults[0]:g} s to connect, {defaults[1]:g} s per read)",
    )
    return defaults if value is None else (value, value)


def max_retries() -> int:
    """Retries per URL on connection errors and 5xx (``MODELZOO_MAX_RETRIES``)."""
    raw = os.environ.get("MODELZOO_MAX_RETRIES", "").strip()
    if not raw:
        return _DEFAULT_MAX_RETRIES
    if raw.isascii() and raw.isdigit() and int(raw) <= 100:
        return int(raw)
    raise UsageError(
        f"MODELZOO_MAX_RETRIES must be a whole number from 0 to 100. Received: {raw!r}. "
        f"Unset it for the default ({_DEFAULT_MAX_RETRIES})."
    )


def deadline() -> float:
    """Seconds one artifact may take from one URL, retries included (``MODELZOO_DEADLINE``).

    Raises:
        UsageError: the value is not a positive number of seconds.
    """
    return _seconds("MODELZOO_DEADLINE", None, _DEFAULT_DEADLINE)


def min_rate() -> tuple[float, float]:
    """``(bytes_per_second, window_seconds)`` from ``MODELZOO_MIN_RATE`` (``1024/30``).

    A URL delivering fewer than ``bytes_per_second * window_seconds`` bytes over the
    last ``window_seconds`` is given up. A rate of 0 switches the rule off.

    Raises:
        UsageError: the value cannot be read.
    """
    raw = os.environ.get("MODELZOO_MIN_RATE", "").strip()
    if not raw:
        return _DEFAULT_MIN_RATE
    rate_text, _, window_text = raw.partition("/")
    try:
        rate = float(rate_text)
        window = float(window_text) if window_text else _DEFAULT_MIN_RATE[1]
    except ValueError:
        rate = window = -1.0
    if not (0 <= rate < float("inf") and 0 < window < float("inf")):
        raise UsageError(
            f"MODELZOO_MIN_RATE must be BYTES_PER_SECOND or BYTES_PER_SECOND/WINDOW_SECONDS "
            f"(e.g. 1024/30; 0 turns the rule off). Received: {raw!r}."
        )
    return rate, window


def parallel(value: int | None = None) -> int:
    """Connections per large download: ``value`` > ``MODELZOO_PARALLEL`` > 8 (1 = one stream).

    Raises:
        UsageError: the value is not a whole number from 1 to 64.
    """
    if value is None:
        raw = os.environ.get("MODELZOO_PARALLEL", "").strip()
        if not raw:
            return _DEFAULT_PARALLEL
        value = int(raw) if raw.isascii() and raw.isdigit() else raw
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_PARALLEL:
        raise UsageError(
            f"MODELZOO_PARALLEL / --parallel must be a whole number from 1 to {_MAX_PARALLEL} "
            f"(connections per large download; 1 = one stream). Received: {value!r}."
        )
    return value


def parallel_min_size() -> int:
    """Bytes from which a download is split into parallel parts (``MODELZOO_PARALLEL_MIN_SIZE``).

    Raises:
        UsageError: the value is not a whole number of bytes.
    """
    raw = os.environ.get("MODELZOO_PARALLEL_MIN_SIZE", "").strip()
    if not raw:
        return _DEFAULT_PARALLEL_MIN_SIZE
    if raw.isascii() and raw.isdigit():
        return int(raw)
    raise UsageError(
        f"MODELZOO_PARALLEL_MIN_SIZE must be a whole number of bytes. Received: {raw!r}. "
        f"Unset it for the default ({_DEFAULT_PARALLEL_MIN_SIZE:,} bytes)."
    )


def parallel_probe() -> float:
    """Seconds one connection gets to show it is fast before a large file is split into
    parts (``MODELZOO_PARALLEL_PROBE``, default 0.5; ``0`` splits at once).

    Raises:
        UsageError: the value is not a number of seconds.
    """
    if os.environ.get("MODELZOO_PARALLEL_PROBE", "").strip() == "0":
        return 0.0
    return _seconds("MODELZOO_PARALLEL_PROBE", None, _DEFAULT_PARALLEL_PROBE)


def trust_cache(value: bool | None = None) -> bool:
    """Whether loads skip re-checking a cached file's sha256 (``MODELZOO_TRUST_CACHE``)."""
    return env_flag("MODELZOO_TRUST_CACHE", value)


def project(value: str | os.PathLike[str] | None = None) -> Path | None:
    """The project folder or file: ``value`` > ``MODELZOO_PROJECT`` > None (search from CWD)."""
    if value is not None:
        return Path(value).expanduser()
    env = os.environ.get("MODELZOO_PROJECT", "").strip()
    return Path(env).expanduser() if env else None


def cpu_devices(value: int | None = None) -> int | None:
    """Logical CPU devices to create: ``value`` > ``MODELZOO_CPU_DEVICES`` > None (no split).

    A testing and simulation aid: ``MODELZOO_CPU_DEVICES=2`` lets ``MirroredStrategy``
    run over two CPU "replicas" on a machine without GPUs. It takes effect only when set
    before TensorFlow's runtime starts (:mod:`modelzoo.distribute.strategies` applies it when the
    first strategy is chosen).

    Raises:
        UsageError: the value is not an integer from 1 to 64.
    """
    if value is None:
        raw = os.environ.get("MODELZOO_CPU_DEVICES", "").strip()
        if not raw:
            return None
        if raw.isdigit() and 1 <= int(raw) <= 64:
            return int(raw)
        value = raw
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise UsageError(
            f"MODELZOO_CPU_DEVICES must be an integer from 1 to 64 (logical CPU devices). "
            f"Received: {value!r}. Unset it to keep TensorFlow's single CPU device."
        )
    return value


def register_timeout(value: float | None = None) -> float:
    """Seconds a multi-worker cluster's workers get to join: ``value`` >
    ``MODELZOO_REGISTER_TIMEOUT`` > 120.

    Raises:
        UsageError: the value is not a positive number of seconds.
    """
    return _seconds("MODELZOO_REGISTER_TIMEOUT", value, DEFAULT_REGISTER_TIMEOUT)


def tpu_timeout(value: float | None = None) -> float:
    """Seconds a remote TPU gets to answer: ``value`` > ``MODELZOO_TPU_TIMEOUT`` > 10.

    Raises:
        UsageError: the value is not a positive number of seconds.
    """
    return _seconds("MODELZOO_TPU_TIMEOUT", value, DEFAULT_TPU_TIMEOUT)


def _seconds(
    name: str, value: float | None, default: float | None, *, default_text: str = ""
) -> float | None:
    """``value`` > environment variable ``name`` > ``default``, checked as positive seconds."""
    source, received = name.removeprefix("MODELZOO_").lower(), repr(value)  # the argument
    if value is None:
        raw = os.environ.get(name, "").strip()
        if not raw:
            return default
        source, received = name, repr(raw)
        with contextlib.suppress(ValueError):
            value = float(raw)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        text = default_text or f"{default:g}s"
        hint = f" Unset it for the default {text}." if source == name else ""
        raise UsageError(
            f"{source} must be a positive number of seconds. Received: {received}.{hint}"
        )
    return float(value)
