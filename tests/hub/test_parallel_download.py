"""Parallel ranged downloads (issue 17): parts over several connections and mirrors.

Every test goes through real HTTP (tests/_server.py) with ``MODELZOO_PARALLEL_MIN_SIZE``
lowered so that files of a few MB are split into 1 MiB parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry, make_bytes
from _server import LocalServer

import modelzoo
from modelzoo.errors import DownloadError, IntegrityError, UsageError
from modelzoo.hub.cache import Cache
from modelzoo.hub.download import download

SIZE = 6 * (1 << 20) + 12_345  # 7 parts of at most 1 MiB
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch):
    monkeypatch.setenv("MODELZOO_PARALLEL_MIN_SIZE", "1")
    monkeypatch.setenv("MODELZOO_PARALLEL_PROBE", "0")  # split at once (probe tests below)


@pytest.fixture
def blob(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    data = make_bytes(SIZE, seed="parallel")
    (root / "big.bin").write_bytes(data)
    return root, data


@pytest.fixture
def served(blob):
    root, data = blob
    with LocalServer(root) as server:
        yield server, data


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ranges(server) -> list[str | None]:
    return [r.headers.get("Range") for r in server.requests if r.method == "GET"]


def _bounded(ranges) -> list[str]:
    """Ranges with both ends (``bytes=a-b``): the ones a parallel part asks for."""
    return [r for r in ranges if r and not r.endswith("-")]


# -- parts over throttled connections --------------------------------------------------


def test_parts_over_throttled_connections(served, tmp_path):
    server, data = served
    server.rate = 2_000_000  # per connection, as object stores and CDNs cap it
    partial = tmp_path / "out.part"
    result = download(server.url + "/big.bin", partial, expected=_sha(data), parallel=4)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert partial.read_bytes() == data
    assert not partial.with_name("out.part.meta").exists()
    # The first GET finds a large file with ranges and is closed before its body is read;
    # then one ranged GET per 1 MiB part.
    assert _ranges(server)[0] is None and server.paths("HEAD") == []
    ranges = _bounded(_ranges(server))
    assert len(ranges) == len(_ranges(server)) - 1 == 7
    spans = sorted(tuple(map(int, r.removeprefix("bytes=").split("-"))) for r in ranges)
    assert spans[0][0] == 0 and spans[-1][1] == SIZE - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:], strict=False))
    assert server.max_active >= 3  # the parts really ran at the same time
    assert server.bytes_sent < SIZE + (1 << 20)  # nothing fetched twice


def test_a_fast_connection_stays_one_stream(served, tmp_path, monkeypatch):
    """Loopback-fast: splitting would only add threads and CPU (the unthrottled case)."""
    server, data = served
    monkeypatch.setenv("MODELZOO_PARALLEL_PROBE", "30")  # 6 MB arrive well within it
    download(server.url + "/big.bin", tmp_path / "out.part", expected=_sha(data), parallel=4)
    assert (tmp_path / "out.part").read_bytes() == data
    assert _ranges(server) == [None]  # one GET, no parts


def test_a_slow_connection_is_split_after_the_probe_keeping_its_bytes(
    served, tmp_path, monkeypatch
):
    server, data = served
    server.rate = 1_000_000
    monkeypatch.setenv("MODELZOO_PARALLEL_PROBE", "0.3")
    partial = tmp_path / "out.part"
    read_back = []
    pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: read_back.append(n) or pread(fd, n, at))
    download(server.url + "/big.bin", partial, expected=_sha(data), parallel=4)
    assert read_back == []  # the probe's hash goes on with the parts: no second read
    assert partial.read_bytes() == data
    assert _ranges(server)[0] is None
    spans = sorted(
        tuple(map(int, r.removeprefix("bytes=").split("-"))) for r in _bounded(_ranges(server))
    )
    assert len(spans) >= 6  # the rest came in parts
    # The probe's bytes were kept: the first part starts where the one stream stopped.
    assert 0 < spans[0][0] < 1 << 20 and spans[-1][1] == SIZE - 1
    monkeypatch.setenv("MODELZOO_PARALLEL_PROBE", "soon")
    with pytest.raises(UsageError, match="MODELZOO_PARALLEL_PROBE"):
        download(server.url + "/big.bin", tmp_path / "x.part", parallel=4)


def test_one_progress_bar_across_the_probe_and_the_parts(served, tmp_path, monkeypatch, capsys):
    server, data = served
    server.rate = 2_000_000
    monkeypatch.setenv("MODELZOO_PARALLEL_PROBE", "0.3")
    partial = tmp_path / "out.part"
    download(server.url + "/big.bin", partial, expected=_sha(data), parallel=4, progress=True)
    assert partial.read_bytes() == data and len(_bounded(_ranges(server))) >= 6  # it split
    bars = [line for line in capsys.readouterr().err.splitlines() if "big.bin" in line]
    assert len(bars) == 1, bars  # one bar for the artifact, ending at its full size
    assert "6.3/6.3 MB" in bars[0], bars


def test_parallel_one_is_the_single_stream(served, tmp_path, monkeypatch):
    server, data = served
    monkeypatch.setenv("MODELZOO_PARALLEL", "1")
    download(server.url + "/big.bin", tmp_path / "out.part", expected=_sha(data))
    assert _ranges(server) == [None] and server.paths("HEAD") == []
    with pytest.raises(UsageError, match="MODELZOO_PARALLEL"):
        download(server.url + "/big.bin", tmp_path / "x.part", parallel=0)


def test_small_files_use_one_stream(served, tmp_path, monkeypatch):
    server, data = served
    monkeypatch.setenv("MODELZOO_PARALLEL_MIN_SIZE", str(SIZE + 1))
    download(server.url + "/big.bin", tmp_path / "out.part", expected=_sha(data), size=SIZE)
    assert _ranges(server) == [None] and server.paths("HEAD") == []


def test_server_without_ranges_gets_one_stream(served, tmp_path):
    server, data = served
    download(server.url + "/norange/big.bin", tmp_path / "out.part", expected=_sha(data))
    assert _ranges(server) == [None]


# -- servers that lie about ranges ------------------------------------------------------


@pytest.mark.parametrize(
    "route", ["range-ignored", "range-shift/1000", "range-short/100000"], ids=str
)
def test_range_lies_are_caught_per_part(served, tmp_path, route):
    server, data = served
    partial = tmp_path / "out.part"
    result = download(f"{server.url}/{route}/big.bin", partial, expected=_sha(data), parallel=4)
    assert partial.read_bytes() == data and result.size == SIZE
    ranges = _ranges(server)
    assert _bounded(ranges)  # parts were tried
    if route == "range-short/100000":
        # An honest short answer is no lie: each part resumes where the answer ended.
        assert len(ranges) > 8 and None not in ranges[1:]
    else:
        assert ranges[-1] is None  # fell back to one stream from the start


def test_range_lie_without_a_hash_does_not_corrupt(served, tmp_path):
    server, data = served
    partial = tmp_path / "out.part"
    result = download(f"{server.url}/range-shift/1000/big.bin", partial, parallel=4)
    assert partial.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_truncated_parts_resume_on_their_own(served, tmp_path):
    server, data = served
    route = "first/5/truncate/300000"  # the first GET + the first 4 parts are cut short
    download(f"{server.url}/{route}/big.bin", tmp_path / "o.part", expected=_sha(data), parallel=4)
    assert (tmp_path / "o.part").read_bytes() == data
    ranges = _bounded(_ranges(server))
    assert len(ranges) >= 11 and None not in _ranges(server)[1:]
    assert server.bytes_sent < SIZE + 4 * 300_000 + 1  # each part resumed, not restarted


def test_a_stalled_part_is_retried(served, tmp_path, monkeypatch):
    server, data = served
    monkeypatch.setenv("MODELZOO_MIN_RATE", "1024/1")  # a silent connection: 1 s
    started = time.monotonic()
    route = "first/2/stall/30"  # hit 1 is the first GET, hit 2 the first part: it stalls
    download(f"{server.url}/{route}/big.bin", tmp_path / "o.part", expected=_sha(data), parallel=4)
    assert time.monotonic() - started < 15
    assert (tmp_path / "o.part").read_bytes() == data
    assert len(_bounded(_ranges(server))) == 8  # 7 parts + the stalled one again


def test_a_source_that_always_stalls_fails_in_one_line(served, tmp_path, monkeypatch):
    server, data = served
    monkeypatch.setenv("MODELZOO_MIN_RATE", "1024/1")
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "0")
    partial = tmp_path / "o.part"
    url = f"{server.url}/first/3/stall/30/big.bin"  # the first GET, then both parts stall
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download(url, partial, expected=_sha(data), parallel=2)
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "\n" not in message and "no data for 1 s" in message, message
    download(url, partial, expected=_sha(data), parallel=2)  # the server works again
    assert partial.read_bytes() == data


def test_parts_that_arrived_are_kept_when_others_fail(served, tmp_path, monkeypatch):
    server, data = served
    monkeypatch.setenv("MODELZOO_MIN_RATE", "1024/1")
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "0")
    partial = tmp_path / "o.part"
    url = f"{server.url}/first/3/stall/30/big.bin"  # the first GET; parts 0 and 1 stall
    with pytest.raises(DownloadError) as caught:
        download(url, partial, expected=_sha(data), parallel=3)
    assert "\n" not in str(caught.value)
    assert "4,206,649 bytes already received are kept" in str(caught.value)  # 5 of 7 parts
    # Hits 2 and 3 stalled: which two of the first three parts they were depends on which
    # connection reached the server first, so read them off the server's log.
    stalled = sorted(_bounded(_ranges(server))[:2])
    assert len(stalled) == 2 and set(stalled) <= {
        "bytes=0-1048575",
        "bytes=1048576-2097151",
        "bytes=2097152-3145727",
    }
    server.bytes_sent = 0
    server.requests.clear()
    download(url, partial, expected=_sha(data), parallel=3)
    assert partial.read_bytes() == data
    assert sorted(_bounded(_ranges(server))) == stalled  # only the parts that stalled
    assert server.bytes_sent == 2 << 20  # only the two missing parts


# -- mirrors ----------------------------------------------------------------------------


def test_parts_spread_over_the_url_and_its_mirror(served, tmp_path, monkeypatch):
    server, data = served
    mroot = tmp_path / "mirror"
    host = server.url.removeprefix("http://")
    (mroot / host).mkdir(parents=True)
    (mroot / host / "big.bin").write_bytes(data)
    with LocalServer(mroot) as mirror:
        server.rate = mirror.rate = 2_000_000
        monkeypatch.setenv("MODELZOO_MIRROR", mirror.url)
        result = download(server.url + "/big.bin", tmp_path / "o.part", expected=_sha(data))
        assert (tmp_path / "o.part").read_bytes() == data
        assert _bounded(_ranges(server)) and _bounded(_ranges(mirror))
        assert server.bytes_sent + mirror.bytes_sent < SIZE + (1 << 20)
        assert result.url == mirror.url + f"/{host}/big.bin"


def test_a_mirror_with_other_bytes_is_refused_and_named(served, tmp_path, monkeypatch):
    server, data = served
    mroot = tmp_path / "mirror"
    host = server.url.removeprefix("http://")
    (mroot / host).mkdir(parents=True)
    (mroot / host / "big.bin").write_bytes(make_bytes(SIZE, seed="other"))  # same length
    with LocalServer(mroot) as mirror:
        monkeypatch.setenv("MODELZOO_MIRROR", mirror.url)
        partial = tmp_path / "o.part"
        with pytest.raises(IntegrityError) as caught:
            download(server.url + "/big.bin", partial, expected=_sha(data), parallel=4)
        bad = f"{mirror.url}/{host}/big.bin"
        assert caught.value.url == bad and bad in str(caught.value)
        assert "\n" not in str(caught.value)
        assert not partial.exists()
        assert _bounded(_ranges(server))  # the origin had served some of the parts


def test_the_origin_with_other_bytes_loses_to_a_verified_mirror(served, tmp_path, monkeypatch):
    server, data = served
    mroot = tmp_path / "mirror"
    host = server.url.removeprefix("http://")
    (mroot / host).mkdir(parents=True)
    (mroot / host / "big.bin").write_bytes(data)
    (server.root / "big.bin").write_bytes(make_bytes(SIZE, seed="other"))
    with LocalServer(mroot) as mirror:
        monkeypatch.setenv("MODELZOO_MIRROR", mirror.url)
        partial = tmp_path / "o.part"
        result = download(server.url + "/big.bin", partial, expected=_sha(data), parallel=4)
        assert partial.read_bytes() == data
        assert result.url == f"{mirror.url}/{host}/big.bin"


# -- real processes: SIGKILL then resume, concurrent installs ---------------------------


def _cli(*args: str, home: Path, **env: str) -> subprocess.Popen:
    full = {**os.environ, "MODELZOO_HOME": str(home), "PYTHONPATH": str(TESTS.parent), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "modelzoo", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def registry(tmp_path, monkeypatch):
    root = tmp_path / "registry"
    root.mkdir()
    server = LocalServer(root)
    reg = TestRegistry(root, base_url=server.url)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    try:
        yield reg, server
    finally:
        server.close()


def test_sigkill_mid_install_then_every_part_resumes(registry, _isolated_home):
    reg, server = registry
    size = 8 << 20
    art = reg.publish("huge", variants={"full": size}, absolute=True)["full"]
    server.rate = 1_000_000  # 4 parts at 1 MB/s each: ~2 s for the file
    proc = _cli("install", "huge", "--parallel", "4", home=_isolated_home)
    cache = Cache()
    meta = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        metas = list(cache.tmp_dir.glob("*.part.meta")) if cache.tmp_dir.exists() else []
        try:
            parts = json.loads(metas[0].read_text())["parts"] if metas else []
        except (OSError, ValueError, KeyError):
            parts = []
        if sum(done for _, _, done in parts) > 1_500_000:
            meta = metas[0]
            break
        time.sleep(0.05)
    assert meta is not None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = json.loads(meta.read_text())["parts"]
    kept = sum(done for _, _, done in saved)
    started = [p for p in saved if p[2]]
    assert len(started) >= 2 and 0 < kept < size  # several parts were under way
    assert cache.records() == []

    server.rate = None
    quiet = time.monotonic() + 10
    while server._active and time.monotonic() < quiet:  # the killed process's handlers end
        time.sleep(0.05)
    server.bytes_sent = 0
    server.requests.clear()
    done = _cli("install", "huge", "--parallel", "4", home=_isolated_home)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert server.bytes_sent <= size - kept  # every part resumed where it stopped
    ranges = _bounded(_ranges(server))
    for start, end, got in started:
        if got < end - start:
            assert f"bytes={start + got}-{end - 1}" in ranges
    rec = Cache().records()[0]
    assert rec.sha256 == art.sha256
    assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == art.sha256
    assert [r.status for r in modelzoo.verify()] == ["ok"]
    assert not list(cache.tmp_dir.glob("*.part*"))


def test_two_processes_install_the_same_artifact(registry, _isolated_home):
    reg, server = registry
    art = reg.publish("twin", variants={"full": SIZE}, absolute=True)["full"]
    server.rate = 4_000_000
    procs = [_cli("install", "twin", "--json", home=_isolated_home) for _ in range(2)]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        records.append(json.loads(out)[0]["records"]["full"])
    assert records[0]["path"] == records[1]["path"]
    assert records[0]["sha256"] == art.sha256
    cache = Cache()
    assert len(list(cache.blobs_dir.rglob("*.h5"))) == 1
    assert Path(records[0]["path"]).read_bytes() == art.data
    assert len(_bounded(_ranges(server))) == 7  # the lock: one process downloaded, one reused
