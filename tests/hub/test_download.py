"""Tests for modelzoo.hub.download (and modelzoo.progress) against a real local HTTP server.

Faults come from the routes of ``tests/_server.py``; disk-full and killed downloads run
in child processes so the failures are real (a file size limit, a SIGKILL).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # `from _server import ...` outside pytest too
from _server import LocalServer  # noqa: E402

from modelzoo.errors import (  # noqa: E402
    CacheError,
    DownloadError,
    IntegrityError,
    OfflineError,
    UsageError,
)
from modelzoo.hub import download as dl  # noqa: E402
from modelzoo.hub.manifest import Hash  # noqa: E402
from modelzoo.progress import progress_bar, progress_enabled  # noqa: E402

SIZE = 300_000
DATA = random.Random(1234).randbytes(SIZE)
SHA256 = Hash("sha256", hashlib.sha256(DATA).hexdigest())
MD5 = Hash("md5", hashlib.md5(DATA).hexdigest())
WRONG = Hash("sha256", "0" * 64)


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "data.bin").write_bytes(DATA)
    return root


@pytest.fixture
def server(files):
    with LocalServer(files) as srv:
        yield srv


@pytest.fixture
def partial(tmp_path):
    return tmp_path / "home" / "tmp" / "data.bin.part"


@pytest.fixture
def fast(monkeypatch):
    """Few retries and short timeouts, so failure paths finish quickly."""
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "2")
    monkeypatch.setenv("MODELZOO_TIMEOUT", "2")


def meta_of(partial: Path) -> Path:
    return partial.with_name(partial.name + ".meta")


def get(urls, partial, **kwargs):
    kwargs.setdefault("backoff", 0.01)
    return dl.download(urls, partial, **kwargs)


def gets(server, path_fragment):
    """The GET requests whose path contains ``path_fragment``."""
    return [r for r in server.requests if r.method == "GET" and path_fragment in r.path]


# -- happy paths -----------------------------------------------------------------------


def test_http_download_verifies_and_reports(server, partial):
    result = get(server.url + "/data.bin", partial, expected=SHA256, size=SIZE)
    assert result == dl.DownloadResult(partial, SIZE, SHA256.hex, None, server.url + "/data.bin")
    assert result.digest == str(SHA256)
    assert partial.read_bytes() == DATA
    assert not meta_of(partial).exists()  # the sidecar is only for unfinished downloads
    (request,) = server.requests
    assert request.headers["Accept-Encoding"] == "identity"  # bytes as published
    assert "Range" not in request.headers
    assert request.headers["User-Agent"].startswith("modelzoo/")


def test_file_url_is_copied_and_verified(files, partial):
    url = (files / "data.bin").as_uri()
    result = get(url, partial, expected=MD5, size=SIZE)
    assert partial.read_bytes() == DATA
    assert (result.md5, result.sha256, result.url) == (MD5.hex, SHA256.hex, url)


def test_md5_expected_computes_both_digests(server, partial):
    result = get(server.url + "/data.bin", partial, expected=MD5)
    assert (result.md5, result.sha256) == (MD5.hex, SHA256.hex)


def test_expected_may_be_a_string_and_hash_is_optional(server, partial):
    assert get(server.url + "/data.bin", partial, expected=str(SHA256)).size == SIZE
    result = get(server.url + "/data.bin", partial)  # trust on first use: just report
    assert result.sha256 == SHA256.hex


def test_bad_arguments_are_usage_errors(server, partial):
    with pytest.raises(UsageError, match="sha256:<64 hex>"):
        get(server.url + "/data.bin", partial, expected="sha256:xyz")
    with pytest.raises(UsageError, match="at least one URL"):
        get([], partial)
    with pytest.raises(UsageError, match="size=-1"):
        get(server.url + "/data.bin", partial, size=-1)
    assert server.requests == []


def test_empty_file(files, server, partial):
    (files / "empty").write_bytes(b"")
    result = get(server.url + "/empty", partial, expected=Hash("md5", hashlib.md5().hexdigest()))
    assert result.size == 0 and partial.read_bytes() == b""


# -- verification ----------------------------------------------------------------------


@pytest.mark.parametrize("expected", [WRONG, Hash("md5", "f" * 32)], ids=["sha256", "md5"])
def test_wrong_hash_deletes_the_download(server, partial, expected):
    with pytest.raises(IntegrityError) as info:
        get(server.url + "/data.bin", partial, expected=expected)
    message = str(info.value)
    actual = SHA256.hex if expected.algorithm == "sha256" else MD5.hex
    assert str(expected) in message and actual in message
    assert "deleted" in message
    assert info.value.expected == str(expected)
    assert info.value.actual == f"{expected.algorithm}:{actual}"
    assert not partial.exists() and not meta_of(partial).exists()


def test_wrong_hash_of_a_local_file_is_refused_too(files, partial):
    with pytest.raises(IntegrityError, match="deleted"):
        get((files / "data.bin").as_uri(), partial, expected=WRONG)
    assert not partial.exists()


def test_short_body_without_length_fails_the_size_check(server, partial):
    # No Content-Length: only the published size can tell the body is incomplete.
    with pytest.raises(IntegrityError, match=f"expected {SIZE + 1:,} bytes, got {SIZE:,}"):
        get(server.url + "/nolength/data.bin", partial, size=SIZE + 1)
    assert not partial.exists()


def test_body_longer_than_expected_is_cut_off(server, partial, fast):
    with pytest.raises(DownloadError, match="sent more than the expected 1,000 bytes"):
        get(server.url + "/nolength/data.bin", partial, size=1000)
    assert not partial.exists()


def test_announced_size_different_from_published_size(server, partial, fast):
    with pytest.raises(DownloadError, match=f"announces {SIZE:,} bytes but 1,000 are expected"):
        get(server.url + "/data.bin", partial, size=1000)
    assert len(gets(server, "/data.bin")) == 1  # not retried: it would not change


# -- retries and mirrors ---------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_move_to_the_next_url_at_once(server, partial, fast, status):
    bad = f"{server.url}/status/{status}/data.bin"
    result = get([bad, server.url + "/data.bin"], partial, expected=SHA256)
    assert result.url == server.url + "/data.bin"
    assert len(gets(server, f"/status/{status}/")) == 1  # no retries on 4xx
    assert partial.read_bytes() == DATA


def test_all_urls_failing_lists_each_reason(server, partial, fast):
    urls = [f"{server.url}/status/404/data.bin", f"{server.url}/status/500/data.bin"]
    with pytest.raises(DownloadError) as info:
        get(urls, partial, expected=SHA256)
    message = str(info.value)
    assert "\n" not in message  # one line (issue 10.7)
    assert message.startswith(f"Could not download {urls[0]} from any of 2 URLs (")
    assert f"{urls[0]}: HTTP 404 Not Found; {urls[1]}: HTTP 500" in message
    assert "after 3 attempts" in message
    assert message.endswith("set MODELZOO_MIRROR to a reachable mirror, then try again.")
    assert info.value.status == 500 and info.value.url == urls[0]  # the last HTTP status
    assert len(gets(server, "/status/500/")) == 3  # 1 try + MODELZOO_MAX_RETRIES=2


def test_5xx_is_retried_then_succeeds(server, partial, fast):
    result = get(server.url + "/flaky/2/data.bin", partial, expected=SHA256)
    assert result.sha256 == SHA256.hex
    assert len(gets(server, "/flaky/2/")) == 3


def test_connection_refused_is_retried_then_next_url(server, partial, fast):
    dead = LocalServer(server.root)
    dead_url = dead.url + "/data.bin"
    dead.close()  # nothing listens on that port any more
    result = get([dead_url, server.url + "/data.bin"], partial, expected=SHA256)
    assert result.url == server.url + "/data.bin"
    with pytest.raises(DownloadError, match="connection failed: .*refused.*after 3 attempts"):
        get(dead_url, partial)


def test_unsupported_schemes_are_never_fetched(server, partial):
    with pytest.raises(DownloadError, match="unsupported scheme 'ftp'"):
        get("ftp://127.0.0.1/data.bin", partial)
    result = get(["ftp://127.0.0.1/data.bin", server.url + "/data.bin"], partial)
    assert result.url == server.url + "/data.bin"


def test_missing_local_file(tmp_path, partial):
    with pytest.raises(DownloadError, match="no such file"):
        get((tmp_path / "missing.bin").as_uri(), partial)


# -- resume ----------------------------------------------------------------------------


def test_truncated_body_is_resumed_with_range(server, partial, fast):
    result = get(server.url + "/truncate/100000/data.bin", partial, expected=SHA256)
    assert partial.read_bytes() == DATA and result.size == SIZE
    requests = gets(server, "/truncate/")
    assert [r.headers.get("Range") for r in requests] == [
        None,
        "bytes=100000-",
        "bytes=200000-",
    ]
    # Same URL: the resume is conditional on the file being unchanged (its ETag).
    assert "If-Range" not in requests[0].headers
    assert requests[1].headers["If-Range"].startswith('"')


def test_resume_without_a_hash_relies_on_the_etag(server, partial, fast):
    result = get(server.url + "/first/1/truncate/1000/data.bin", partial)
    assert result.sha256 == SHA256.hex
    _, second = gets(server, "/first/1/")
    assert second.headers["Range"] == "bytes=1000-" and "If-Range" in second.headers


def test_truncation_without_progress_gives_up(server, partial, fast):
    with pytest.raises(DownloadError, match="closed before the end.*after 3 attempts"):
        get(server.url + "/truncate/0/data.bin", partial, expected=SHA256)


def leave_partial(server, partial, nbytes: int, expected=SHA256) -> None:
    """Leave ``nbytes`` of data.bin in ``partial`` the way a failed download does."""
    # Truncated every time and never resumable: the download gives up with the bytes kept.
    with pytest.raises(DownloadError, match="will be resumed"):
        get(f"{server.url}/norange/truncate/{nbytes}/data.bin", partial, expected=expected)
    assert partial.read_bytes() == DATA[:nbytes]


def test_server_ignoring_range_restarts_cleanly(server, partial, fast):
    leave_partial(server, partial, 5000)
    result = get(server.url + "/norange/data.bin", partial, expected=SHA256)
    assert result.sha256 == SHA256.hex and partial.read_bytes() == DATA
    (request,) = gets(server, "/norange/data.bin")  # one request: restarted from its 200
    assert request.headers["Range"] == "bytes=5000-"


def test_partial_is_resumed_from_another_url_when_the_hash_is_known(server, partial, fast):
    leave_partial(server, partial, 5000)
    get(server.url + "/data.bin", partial, expected=SHA256)
    (request,) = gets(server, "/data.bin")[-1:]
    assert request.path == "/data.bin" and request.headers["Range"] == "bytes=5000-"
    assert "If-Range" not in request.headers  # ETags only mean something on their own URL


def test_partial_for_another_hash_is_discarded(server, partial, fast):
    leave_partial(server, partial, 5000, expected=MD5)
    get(server.url + "/data.bin", partial, expected=SHA256)
    assert "Range" not in gets(server, "/data.bin")[-1].headers


def test_partial_without_hash_from_another_url_is_discarded(server, partial, fast):
    leave_partial(server, partial, 5000, expected=None)
    get(server.url + "/data.bin", partial)
    assert "Range" not in gets(server, "/data.bin")[-1].headers


def test_partial_without_sidecar_is_discarded(server, partial):
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"junk of unknown origin")
    result = get(server.url + "/data.bin", partial)
    assert result.sha256 == SHA256.hex
    assert "Range" not in server.requests[0].headers


def test_corrupt_partial_is_caught_and_downloaded_again(server, partial, fast):
    leave_partial(server, partial, 5000)
    partial.write_bytes(b"\0" * 5000)  # the kept prefix went bad on disk
    result = get(server.url + "/data.bin", partial, expected=SHA256)
    assert result.sha256 == SHA256.hex and partial.read_bytes() == DATA
    assert [r.headers.get("Range") for r in gets(server, "/data.bin")[-2:]] == [
        "bytes=5000-",
        None,  # the mismatch after resuming earned one clean restart
    ]


def test_mismatch_after_a_clean_restart_is_final(server, partial, fast):
    leave_partial(server, partial, 5000, expected=WRONG)
    with pytest.raises(IntegrityError, match="deleted"):
        get(server.url + "/data.bin", partial, expected=WRONG)
    assert [r.headers.get("Range") for r in server.requests if r.path == "/data.bin"] == [
        "bytes=5000-",
        None,
    ]
    assert not partial.exists() and not meta_of(partial).exists()


def test_416_restarts_from_zero(files, server, partial, fast):
    (files / "small.bin").write_bytes(DATA[:3000])
    small = Hash("sha256", hashlib.sha256(DATA[:3000]).hexdigest())
    leave_partial(server, partial, 5000, expected=small)  # longer than small.bin
    result = get(server.url + "/small.bin", partial, expected=small)
    assert result.size == 3000
    assert [r.headers.get("Range") for r in gets(server, "/small.bin")] == ["bytes=5000-", None]


def test_lying_content_length_ends_in_the_right_file(server, partial, fast):
    # The body stops 100 bytes short of the announced length; the resume then finds
    # nothing left to fetch (416) and the hash proves the file complete.
    result = get(server.url + "/lying-length/data.bin", partial, expected=SHA256)
    assert result.sha256 == SHA256.hex and partial.read_bytes() == DATA
    assert [r.headers.get("Range") for r in gets(server, "/lying-length/")] == [
        None,
        f"bytes={SIZE}-",
    ]


def test_lying_content_length_against_a_published_size_is_refused(server, partial, fast):
    with pytest.raises(DownloadError, match=f"announces {SIZE + 100:,} bytes"):
        get(server.url + "/lying-length/data.bin", partial, expected=SHA256, size=SIZE)


# -- timeouts and redirects ------------------------------------------------------------


def test_stalled_server_times_out(server, partial, monkeypatch):
    monkeypatch.setenv("MODELZOO_TIMEOUT", "0.3")
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "1")
    # If the timeout did not fire, the body would arrive after 30 s and the call succeed.
    with pytest.raises(DownloadError, match="read timeout.*after 2 attempts"):
        get(server.url + "/stall/30/data.bin", partial, expected=SHA256)


def test_redirect_on_the_same_scheme_is_followed(server, partial):
    target = urllib.parse.quote(server.url + "/data.bin", safe="")
    result = get(f"{server.url}/redirect/{target}", partial, expected=SHA256)
    assert result.sha256 == SHA256.hex
    assert result.url == f"{server.url}/redirect/{target}"  # the URL that was asked for


def test_relative_redirect_is_followed(server, partial):
    result = get(server.url + "/redirect/%2Fdata.bin", partial, expected=SHA256)
    assert result.size == SIZE


@pytest.mark.parametrize(
    "target", ["file:///etc/hostname", "ftp://127.0.0.1/data.bin"], ids=["file", "ftp"]
)
def test_redirect_to_another_scheme_is_refused(server, partial, target):
    url = f"{server.url}/redirect/{urllib.parse.quote(target, safe='')}"
    with pytest.raises(DownloadError, match="refused redirect to .*may not change the scheme"):
        get(url, partial)
    assert not partial.exists()


def test_redirect_loop_is_cut(server, partial):
    # /redirect/x answers "Location: x", which resolves to /redirect/x again.
    with pytest.raises(DownloadError, match="more than 10 redirects"):
        get(server.url + "/redirect/x", partial)
    assert len(server.requests) == 11


@pytest.fixture
def tls_server(files):
    try:
        srv = LocalServer(files, tls=True)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a TLS test server: {exc}")
    with srv:
        yield srv


def test_https_download_and_no_downgrade_to_http(tls_server, server, partial):
    import requests

    with requests.Session() as session:
        session.verify = tls_server.cafile
        result = get(tls_server.url + "/data.bin", partial, expected=SHA256, session=session)
        assert result.sha256 == SHA256.hex
        downgrade = urllib.parse.quote(server.url + "/data.bin", safe="")
        with pytest.raises(DownloadError, match=r"may not change the scheme \(https -> http\)"):
            get(f"{tls_server.url}/redirect/{downgrade}", partial, session=session)
    assert gets(server, "/data.bin") == []  # the http server was never asked


# -- offline and mirrors ---------------------------------------------------------------


def test_offline_refuses_before_any_request(server, partial, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="MODELZOO_OFFLINE"):
        get(server.url + "/data.bin", partial)
    assert server.requests == []
    assert not partial.parent.exists()


def test_offline_still_copies_file_urls(server, files, partial, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    result = get([server.url + "/data.bin", (files / "data.bin").as_uri()], partial)
    assert result.url.startswith("file://") and server.requests == []


def test_mirror_base_url_is_tried_first(files, server, partial, monkeypatch):
    mirrored = files / "mirror" / "origin.invalid" / "models" / "data.bin"
    mirrored.parent.mkdir(parents=True)
    mirrored.write_bytes(DATA)
    monkeypatch.setenv("MODELZOO_MIRROR", server.url + "/mirror/")
    result = get("https://origin.invalid/models/data.bin", partial, expected=SHA256)
    assert result.url == server.url + "/mirror/origin.invalid/models/data.bin"


def test_mirror_pairs_fall_back_to_the_original(server, partial, monkeypatch, fast):
    monkeypatch.setenv("MODELZOO_MIRROR", f"{server.url}/={server.url}/status/404/")
    result = get(server.url + "/data.bin", partial, expected=SHA256)
    assert result.url == server.url + "/data.bin"
    assert [r.path for r in server.requests] == ["/status/404/data.bin", "/data.bin"]


def test_rewrite_urls_base_and_pairs():
    gcs = "https://storage.googleapis.com/tensorflow/x.h5"
    assert dl.rewrite_urls([gcs], "https://mirror.corp/models") == [
        "https://mirror.corp/models/storage.googleapis.com/tensorflow/x.h5",
        gcs,
    ]
    rule = "https://storage.googleapis.com/=https://m.corp/gcs/, https://github.com/=file:///m/"
    assert dl.rewrite_urls([gcs, "https://github.com/a/b.h5", "http://other/y"], rule) == [
        "https://m.corp/gcs/tensorflow/x.h5",
        "file:///m/a/b.h5",
        gcs,
        "https://github.com/a/b.h5",
        "http://other/y",
    ]
    assert dl.rewrite_urls(gcs, None) == [gcs]
    assert dl.rewrite_urls(["file:///a", gcs, gcs], "https://m.corp") == [
        "https://m.corp/storage.googleapis.com/tensorflow/x.h5",
        "file:///a",
        gcs,
    ]


@pytest.mark.parametrize("rule", ["mirror.corp", "a=", "=b", "https://x/=ftp://y/"])
def test_rewrite_urls_rejects_unreadable_rules(rule):
    with pytest.raises(UsageError, match="MODELZOO_MIRROR"):
        dl.rewrite_urls(["https://a/b"], rule)


# -- the disk and the process ----------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from modelzoo.hub.download import download
    from modelzoo.errors import CacheError
    url, partial, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if limit:
        # A real failing write: past the limit, write() fails with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    expected = sys.argv[4] if len(sys.argv) > 4 else None
    try:
        result = download(url, partial, expected=expected, backoff=0.01)
    except CacheError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"error": None, "size": result.size}))
    """
)


def run_child(*args: str, wait: bool = True):
    command = [sys.executable, "-c", _CHILD, *args]
    if wait:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("source", ["http", "file"])
def test_disk_full_raises_cache_error_and_deletes_the_partial(server, files, partial, source):
    url = server.url + "/data.bin" if source == "http" else (files / "data.bin").as_uri()
    out = run_child(url, str(partial), "100000")
    assert out["error"] is not None, out
    assert str(partial) in out["error"]
    assert "MODELZOO_HOME" in out["error"] and "bytes free" in out["error"]
    assert "more bytes needed" in out["error"]
    assert not partial.exists() and not meta_of(partial).exists()


def test_unwritable_cache_folder_raises_cache_error(server, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the temp folder should be")
    with pytest.raises(CacheError, match="MODELZOO_HOME"):
        get(server.url + "/data.bin", blocker / "x.part")


def kill_mid_download(server, partial, url_path: str, expected: str | None) -> int:
    """Start a download in a child process, SIGKILL it mid-way; return the bytes kept."""
    args = [server.url + url_path, str(partial), "0"] + ([expected] if expected else [])
    child = run_child(*args, wait=False)
    try:
        deadline = time.monotonic() + 60
        while (partial.stat().st_size if partial.exists() else 0) < 20_000:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never started downloading"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
    kept = partial.stat().st_size
    assert 0 < kept < SIZE and meta_of(partial).exists()
    return kept


@pytest.mark.parametrize("with_hash", [True, False], ids=["hash", "etag"])
def test_partial_of_a_killed_process_is_resumed(server, partial, with_hash):
    # The first request of this path trickles (and gets killed); the next is fast.
    path = "/first/1/slow/50000/data.bin"
    kept = kill_mid_download(server, partial, path, str(SHA256) if with_hash else None)
    result = get(server.url + path, partial, expected=SHA256 if with_hash else None)
    assert result.sha256 == SHA256.hex and partial.read_bytes() == DATA
    assert gets(server, path)[-1].headers["Range"] == f"bytes={kept}-"


def test_resume_never_mixes_two_versions_of_a_file(server, files, partial):
    path = "/first/1/slow/50000/data.bin"
    kill_mid_download(server, partial, path, None)
    new = bytes(b ^ 0xFF for b in DATA)  # same size, different bytes, new ETag
    (files / "data.bin").write_bytes(new)
    os.utime(files / "data.bin", ns=(1, 1))
    result = get(server.url + path, partial)
    assert partial.read_bytes() == new
    assert result.sha256 == hashlib.sha256(new).hexdigest()
    last = gets(server, path)[-1]
    assert "If-Range" in last.headers  # the server saw the ETag had changed and sent all


# -- progress --------------------------------------------------------------------------


def test_progress_bar_does_not_change_results(server, files, partial, tmp_path, capsys):
    quiet = get(server.url + "/data.bin", partial, expected=MD5, progress=False)
    quiet_bytes = partial.read_bytes()
    other = tmp_path / "other.part"
    shown = get(server.url + "/data.bin", other, expected=MD5, progress=True, desc="data")
    assert other.read_bytes() == quiet_bytes
    assert (shown.size, shown.sha256, shown.md5) == (quiet.size, quiet.sha256, quiet.md5)
    assert "data" in capsys.readouterr().err  # the bar was drawn, on stderr
    copied = get((files / "data.bin").as_uri(), other, expected=MD5, progress=True)
    assert copied.md5 == quiet.md5


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_enabled_rules(monkeypatch):
    assert progress_enabled(True) is True
    assert progress_enabled(False) is False
    monkeypatch.delenv("MODELZOO_DISABLE_PROGRESS_BARS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled() is False  # not a terminal: nobody would see it
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_enabled() is True
    monkeypatch.setenv("MODELZOO_DISABLE_PROGRESS_BARS", "1")
    assert progress_enabled() is False
    assert progress_enabled(True) is True  # an explicit choice wins


def test_disabled_progress_bar_is_a_no_op(capsys):
    with progress_bar(10, desc="quiet", enabled=False) as bar:
        bar.update(5)
    with progress_bar(None, desc="items", enabled=True, unit="files") as bar:
        bar.update(3)
    err = capsys.readouterr().err
    assert "quiet" not in err and "items" in err
