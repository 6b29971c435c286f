"""Streaming hashes: digest files and byte streams, compare against published hashes.

Digests are written ``"<algorithm>:<lowercase hex>"`` (``sha256:9f86d0...``), the same
form manifests use. sha256 is what the cache addresses files by, so it is always
computed; md5 only when a manifest publishes one (the official Keras weights do).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Mapping

from ..config import CHUNK_SIZE
from ..errors import UsageError
from .manifest import Hash

__all__ = [
    "ALGORITHMS",
    "Hasher",
    "HashingWriter",
    "WriteFailed",
    "algorithms_for",
    "file_digests",
    "format_hash",
    "matches",
]

#: Algorithms modelzoo computes; sha256 is the cache's content address.
ALGORITHMS = ("sha256", "md5")


def _new(algorithm: str):
    if algorithm == "md5":
        # md5 only checks what a publisher chose to publish; saying so keeps FIPS builds happy.
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "sha256":
        return hashlib.sha256()
    raise UsageError(
        f"Unsupported hash algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}. "
        "Publish the artifact's hash as 'sha256:<hex>' or 'md5:<hex>'."
    )


class Hasher:
    """Several digests of one byte stream, fed once.

    ``hashlib`` releases the GIL for buffers larger than a few KiB, so ``update`` on
    1 MiB chunks runs in parallel with a thread that reads the network.

    Args:
        algorithms: names from :data:`ALGORITHMS`; sha256 is always added.
    """

    def __init__(self, algorithms: Iterable[str] = ("sha256",)):
        names = dict.fromkeys(["sha256", *algorithms])  # ordered, no duplicates
        self._hashes = {name: _new(name) for name in names}
        self.size = 0

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms being computed, sha256 first."""
        return tuple(self._hashes)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the stream."""
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)

    def update_from_file(self, path: str | os.PathLike[str], *, limit: int | None = None) -> int:
        """Feed the first ``limit`` bytes (default: all) of the file at ``path``.

        Returns:
            The number of bytes read (less than ``limit`` if the file is shorter).
        """
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        remaining = limit
        read = 0
        with open(path, "rb", buffering=0) as fh:
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                n = fh.readinto(view[:want])
                if not n:
                    break
                self.update(view[:n])
                read += n
                if remaining is not None:
                    remaining -= n
        return read

    def hexdigests(self) -> dict[str, str]:
        """``{"sha256": hex, ...}`` of everything fed so far."""
        return {name: h.hexdigest() for name, h in self._hashes.items()}


class WriteFailed(Exception):
    """A :class:`HashingWriter` could not write; ``error`` is the ``OSError``."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class HashingWriter:
    """Hash chunks and append them to a file on a worker thread.

    The caller's thread stays free to read the next chunk (from a socket or a file)
    while this one hashes and writes the previous, so the hash costs almost no wall
    time. At most ``depth`` chunks wait in between, which bounds memory.

    Args:
        path: the file to write (created, or appended to with ``append=True``).
        hasher: fed with every chunk, in order, before it is written.
        append: keep the file's current content and add to it.
        depth: how many chunks may wait for the worker.

    Raises:
        OSError: when ``path`` cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], hasher: Hasher, *, append: bool = False,
                 depth: int = 8):  # fmt: skip
        # Unbuffered: chunks are already large, a buffer would only add a copy.
        self._fh = open(path, "ab" if append else "wb", buffering=0)  # noqa: SIM115
        self._hasher = hasher
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self.error: OSError | None = None
        self.written = 0
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="modelzoo-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self.error is not None:
                continue  # keep draining so put() never blocks on a full queue
            try:
                self._hasher.update(chunk)
                view = memoryview(chunk)
                while view:  # raw writes may be short (e.g. at a file size limit)
                    n = self._fh.write(view)
                    self.written += n
                    view = view[n:]
            except OSError as exc:
                self.error = exc

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` for hashing and writing.

        Raises:
            WriteFailed: once an earlier write has failed.
        """
        if self.error is not None:
            raise WriteFailed(self.error)
        self._queue.put(chunk)

    def finish(self) -> OSError | None:
        """Wait until every queued chunk is written and close the file.

        Returns:
            The error that stopped the writing, or None when everything was written.
        """
        if not self._finished:
            self._finished = True
            self._queue.put(None)
            self._thread.join()
            try:
                self._fh.close()
            except OSError as exc:
                self.error = self.error or exc
        return self.error


def algorithms_for(expected: Hash | None) -> tuple[str, ...]:
    """What to compute to check ``expected``: sha256, plus its algorithm when different."""
    if expected is None or expected.algorithm == "sha256":
        return ("sha256",)
    return ("sha256", expected.algorithm)


def file_digests(
    path: str | os.PathLike[str], algorithms: Iterable[str] = ("sha256",)
) -> dict[str, str]:
    """Digest a file in :data:`~modelzoo.config.CHUNK_SIZE` chunks.

    Args:
        path: the file to read.
        algorithms: names from :data:`ALGORITHMS`.

    Returns:
        ``{algorithm: lowercase hex}`` for each requested algorithm (sha256 included
        only if requested).

    Raises:
        UsageError: for an unknown algorithm.
        FileNotFoundError: when ``path`` does not exist.
    """
    wanted = tuple(dict.fromkeys(algorithms))
    hasher = Hasher(wanted)
    hasher.update_from_file(path)
    digests = hasher.hexdigests()
    return {name: digests[name] for name in wanted}


def matches(digests: Mapping[str, str], expected: Hash | None) -> bool:
    """Whether ``digests`` (as from :func:`file_digests`) satisfy ``expected``.

    With nothing expected there is nothing to contradict, so the answer is True.

    Raises:
        UsageError: when the digest for ``expected``'s algorithm was not computed.
    """
    if expected is None:
        return True
    actual = digests.get(expected.algorithm)
    if actual is None:
        raise UsageError(
            f"Cannot check {expected}: only {', '.join(sorted(digests)) or 'no'} digests "
            f"were computed. Compute {expected.algorithm!r} as well."
        )
    return actual.lower() == expected.hex.lower()


def format_hash(algorithm: str, hexdigest: str) -> str:
    """``format_hash("sha256", "ab12...")`` -> ``"sha256:ab12..."``."""
    return f"{algorithm}:{hexdigest.lower()}"
