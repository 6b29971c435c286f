"""Tests for modelzoo.hub.hashes: digests of files and streams, matching, the hashing writer."""

from __future__ import annotations

import hashlib
import random

import pytest

from modelzoo.config import CHUNK_SIZE
from modelzoo.errors import UsageError
from modelzoo.hub.hashes import (
    Hasher,
    HashingWriter,
    WriteFailed,
    algorithms_for,
    file_digests,
    format_hash,
    matches,
)
from modelzoo.hub.manifest import Hash


@pytest.fixture
def blob(tmp_path):
    # Not a multiple of the chunk size, so the last short chunk is exercised too.
    data = random.Random(7).randbytes(2 * CHUNK_SIZE + 12345)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return path, data


def test_file_digests_match_hashlib(blob):
    path, data = blob
    digests = file_digests(path, ("sha256", "md5"))
    assert digests == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


def test_file_digests_default_is_sha256_only(blob):
    path, data = blob
    assert file_digests(path) == {"sha256": hashlib.sha256(data).hexdigest()}
    assert file_digests(path, ["md5"]) == {"md5": hashlib.md5(data).hexdigest()}


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert file_digests(path)["sha256"] == hashlib.sha256(b"").hexdigest()


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_digests(tmp_path / "nope")


def test_unknown_algorithm_is_a_usage_error(blob):
    with pytest.raises(UsageError, match="sha1.*sha256, md5"):
        file_digests(blob[0], ("sha1",))


def test_hasher_streams_in_pieces_and_counts_bytes(blob):
    _, data = blob
    hasher = Hasher(["md5"])
    assert hasher.algorithms == ("sha256", "md5")
    for start in range(0, len(data), 1000):
        hasher.update(memoryview(data)[start : start + 1000])
    assert hasher.size == len(data)
    assert hasher.hexdigests()["md5"] == hashlib.md5(data).hexdigest()


def test_hasher_update_from_file_with_limit(blob):
    path, data = blob
    hasher = Hasher()
    assert hasher.update_from_file(path, limit=CHUNK_SIZE + 5) == CHUNK_SIZE + 5
    assert hasher.hexdigests()["sha256"] == hashlib.sha256(data[: CHUNK_SIZE + 5]).hexdigest()
    rest = Hasher()
    assert rest.update_from_file(path, limit=10 * len(data)) == len(data)


def test_matches():
    digests = {"sha256": "ab" * 32, "md5": "cd" * 16}
    assert matches(digests, Hash("sha256", "ab" * 32))
    assert matches(digests, Hash("md5", "cd" * 16))
    assert not matches(digests, Hash("md5", "00" * 16))
    assert matches(digests, None)  # nothing published, nothing to contradict


def test_matches_without_the_needed_digest_is_a_usage_error():
    with pytest.raises(UsageError, match="Compute 'md5'"):
        matches({"sha256": "ab" * 32}, Hash("md5", "cd" * 16))


def test_format_hash_and_algorithms_for():
    assert format_hash("sha256", "AB" * 32) == "sha256:" + "ab" * 32
    assert str(Hash("md5", "cd" * 16)) == "md5:" + "cd" * 16
    assert algorithms_for(None) == ("sha256",)
    assert algorithms_for(Hash("sha256", "ab" * 32)) == ("sha256",)
    assert algorithms_for(Hash("md5", "cd" * 16)) == ("sha256", "md5")


def test_hashing_writer_writes_and_hashes_in_order(tmp_path, blob):
    _, data = blob
    target = tmp_path / "out.bin"
    target.write_bytes(data[:100])
    hasher = Hasher()
    hasher.update(data[:100])
    writer = HashingWriter(target, hasher, append=True, depth=2)
    for start in range(100, len(data), 300_000):
        writer.put(data[start : start + 300_000])
    assert writer.finish() is None
    assert writer.finish() is None  # idempotent
    assert writer.written == len(data) - 100
    assert target.read_bytes() == data
    assert hasher.hexdigests()["sha256"] == hashlib.sha256(data).hexdigest()


def test_hashing_writer_reports_a_failed_write(tmp_path):
    # /dev/full fails every write with ENOSPC: a real failing write, no simulation.
    full = "/dev/full"
    try:
        writer = HashingWriter(full, Hasher())
    except OSError:
        pytest.skip("/dev/full is not available")
    writer.put(b"x" * 10_000)
    error = writer.finish()
    assert isinstance(error, OSError) and error.errno == 28  # ENOSPC
    with pytest.raises(WriteFailed):
        writer.put(b"more")
