"""A read-only, seekable file object over part of a file or of a memory mapping.

The scanners hand h5py and ``zipfile`` file objects, never paths: one member of a
``.keras`` zip (a window into the open archive) or a whole mapped file (the pages the
hash of the same load reads too).
"""

from __future__ import annotations

import io
from typing import Any


class Window(io.RawIOBase):
    """``length`` bytes at ``offset`` of ``source``, read-only and seekable.

    ``source`` is a buffer (an ``mmap``, bytes: read by slicing, so other threads may read
    it at the same time) or an open binary file (read with ``seek`` + ``read``).
    """

    def __init__(self, source: Any, offset: int = 0, length: int | None = None):
        super().__init__()
        try:
            memoryview(source).release()
            self.buffer = source  # sliced; no shared file position
        except TypeError:
            self.buffer = None
        self._source = source
        self._offset = offset
        self._length = len(source) - offset if length is None else length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        start = self._offset + self._pos
        if self.buffer is not None:
            data = self.buffer[start : start + want]
        else:
            self._source.seek(start)
            data = self._source.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
