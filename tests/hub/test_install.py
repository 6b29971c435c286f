"""Installs end to end: a generated registry served over real HTTP, real files, real processes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _registry_fixture import BAD_SHA256, TestRegistry, make_bytes
from _server import LocalServer

import modelzoo
from modelzoo.errors import (
    DownloadError,
    HashRequiredError,
    IntegrityError,
    OfflineError,
    UsageError,
    VariantNotFoundError,
    VersionNotFoundError,
)
from modelzoo.hub.cache import Cache
from modelzoo.hub.install import ensure_installed, install

TESTS = Path(__file__).parents[1]


@pytest.fixture
def server(tmp_path):
    with LocalServer(tmp_path / "registry") as srv:
        yield srv


@pytest.fixture
def reg(tmp_path, server, monkeypatch):
    """A registry folder (MODELZOO_REGISTRY) whose files the server also serves."""
    registry = TestRegistry(tmp_path / "registry", base_url=server.url)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(registry.root))
    return registry


def _gets(server, path: str) -> list:
    return [r for r in server.requests if r.method == "GET" and r.path == path]


def _tree(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _nothing_installed(cache: Cache) -> None:
    assert cache.records() == []
    assert not cache.blobs_dir.exists() or not any(cache.blobs_dir.iterdir())
    assert not cache.tmp_dir.exists() or not any(cache.tmp_dir.iterdir())


# --------------------------------------------------------------------------- basics


def test_install_then_reuse_without_any_request(reg, server):
    art = reg.publish("tiny", variants={"full": 400_000}, absolute=True)["full"]
    result = modelzoo.install("tiny")
    rec = result.records["full"]
    assert result.fetched == ("full",) and result.spec == "tiny@1.0.0"
    assert result.paths["full"] == result.path == rec.path
    assert rec.path.read_bytes() == art.data
    assert rec.path.name == f"{art.sha256}.h5"
    assert (rec.sha256, rec.size, rec.declared_hash) == (art.sha256, art.size, art.declared_hash)
    assert rec.url == f"{server.url}{art.served_path}" and not rec.trusted_on_first_use
    assert len(_gets(server, art.served_path)) == 1
    seen = len(server.requests)

    again = install("tiny")
    assert again.fetched == () and again.records == result.records
    assert len(server.requests) == seen  # no request at all
    assert [r.status for r in modelzoo.verify("tiny")] == ["ok"]
    assert Cache().installed() == [rec]
    assert _tree(Cache().tmp_dir) == []


def test_name_at_version_and_version_argument(reg, server, monkeypatch):
    old = reg.publish("m", "1.0.0", variants={"full": 1000})["full"]
    new = reg.publish("m", "1.1.0", variants={"full": 2000})["full"]
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)  # an http registry
    assert modelzoo.install("m").records["full"].sha256 == new.sha256
    assert modelzoo.install("m@1.0.0").records["full"].sha256 == old.sha256
    assert modelzoo.install("m", version="1.0.0").spec == "m@1.0.0"
    assert modelzoo.install("m@^1.0").spec == "m@1.1.0"
    # an installed pinned version needs neither the registry nor the network
    seen = len(server.requests)
    assert modelzoo.install("m@1.0.0").fetched == ()
    assert len(server.requests) == seen
    with pytest.raises(UsageError, match="Two versions"):
        modelzoo.install("m@1.0.0", version="1.1.0")
    assert sorted(r.version for r in Cache().installed()) == ["1.0.0", "1.1.0"]


def test_relative_artifact_urls_from_an_http_registry(reg, server, monkeypatch):
    art = reg.publish("rel", variants={"full": 5000})["full"]
    assert art.url == "full.h5"
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    rec = modelzoo.install("rel").records["full"]
    assert rec.url == server.url + art.served_path
    assert rec.path.read_bytes() == art.data
    assert len(_gets(server, art.served_path)) == 1


def test_variants_default_one_and_all(reg, server):
    arts = reg.publish("v", variants={"notop": 3000, "full": 4000})
    assert modelzoo.install("v").records.keys() == {"full"}
    assert modelzoo.install("v", variant="notop").fetched == ("notop",)
    both = modelzoo.install("v", variant="all")
    assert both.records.keys() == {"notop", "full"} and both.fetched == ()
    assert both.paths["notop"].read_bytes() == arts["notop"].data
    with pytest.raises(UsageError, match=r"paths\[variant\]"):
        _ = both.path
    with pytest.raises(VariantNotFoundError, match="Available: full, notop"):
        modelzoo.install("v", variant="int8")
    only = reg.publish("only-notop", variants={"notop": 100})
    assert modelzoo.install("only-notop").path.read_bytes() == only["notop"].data


def test_shared_blob_is_stored_once_and_fetched_once(reg, server):
    data = make_bytes(50_000, seed="shared")
    a = reg.publish("model-a", data={"full": data}, absolute=True)["full"]
    b = reg.publish("model-b", data={"full": data}, absolute=True)["full"]
    ra = modelzoo.install("model-a").records["full"]
    rb = modelzoo.install("model-b").records["full"]
    assert ra.path == rb.path and len(list(Cache().blobs_dir.iterdir())) == 1
    assert len(_gets(server, a.served_path)) == 1 and _gets(server, b.served_path) == []
    # removing one keeps the bytes for the other
    modelzoo.remove("model-a")
    assert rb.path.exists() and [r.status for r in modelzoo.verify()] == ["ok"]


def test_shared_blob_with_md5_hashes(reg, server):
    data = make_bytes(30_000, seed="md5")
    reg.publish("md5-a", data={"full": data}, hash_algo="md5", absolute=True)
    b = reg.publish("md5-b", data={"full": data}, hash_algo="md5", absolute=True)["full"]
    modelzoo.install("md5-a")
    rb = modelzoo.install("md5-b").records["full"]
    assert _gets(server, b.served_path) == []
    assert rb.declared_hash == f"md5:{b.md5}" and rb.sha256 == b.sha256


def test_force_reinstall_repairs_a_corrupt_blob(reg, server):
    art = reg.publish("f", variants={"full": 20_000}, absolute=True)["full"]
    rec = modelzoo.install("f").records["full"]
    os.chmod(rec.path, 0o644)
    rec.path.write_bytes(b"\0" * art.size)  # same size: only hashing notices
    assert [r.status for r in modelzoo.verify()] == ["mismatch"]
    assert modelzoo.install("f").fetched == ()  # plain install trusts the record
    forced = modelzoo.install("f", force=True)
    assert forced.fetched == ("full",) and len(_gets(server, art.served_path)) == 2
    assert forced.path.read_bytes() == art.data
    assert [r.status for r in modelzoo.verify()] == ["ok"]


def test_a_record_with_a_missing_blob_is_reinstalled(reg, server):
    art = reg.publish("gone", variants={"full": 1000}, absolute=True)["full"]
    rec = modelzoo.install("gone").records["full"]
    os.unlink(rec.path)
    assert modelzoo.list_installed() == []
    assert modelzoo.install("gone").fetched == ("full",)
    assert rec.path.read_bytes() == art.data


def test_modelzoo_install_is_the_function_after_the_module_is_imported():
    import modelzoo.hub.install  # noqa: F401  (importing the module must not shadow the function)

    assert modelzoo.install is install


# --------------------------------------------------------------------------- integrity


def test_hash_mismatch_leaves_nothing_installed(reg, server):
    reg.publish("bad", variants={"full": 200_000}, declared={"full": BAD_SHA256}, absolute=True)
    with pytest.raises(IntegrityError) as info:
        modelzoo.install("bad")
    assert "0" * 64 in str(info.value)
    _nothing_installed(Cache())


def test_download_failure_leaves_nothing_installed(reg, server):
    reg.publish("nf", variants={"full": 100}, absolute=True, url_prefix="status/404/")
    with pytest.raises(DownloadError, match="404"):
        modelzoo.install("nf")
    assert Cache().records() == []


def test_trust_on_first_use(reg, server, caplog):
    art = reg.publish("tofu", variants={"full": 10_000}, hash_algo=None, absolute=True)["full"]
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        rec = modelzoo.install("tofu").records["full"]
    assert "no published hash" in caplog.text and art.sha256 in caplog.text
    assert "modelzoo verify" in caplog.text
    assert rec.trusted_on_first_use and rec.declared_hash is None and rec.sha256 == art.sha256
    tofu = json.loads(Cache().tofu_path.read_text())
    assert tofu[rec.url]["sha256"] == art.sha256
    assert [r.status for r in modelzoo.verify()] == ["ok"]

    # the publisher swaps the file: a re-download is refused, the install is untouched
    art.path.write_bytes(make_bytes(10_000, seed="evil"))
    with pytest.raises(IntegrityError, match="changed since it was first installed"):
        modelzoo.install("tofu", force=True)
    assert Cache().record("tofu", "1.0.0", "full") == rec and rec.path.read_bytes() == art.data
    # trust outlives an uninstall
    modelzoo.remove("tofu")
    with pytest.raises(IntegrityError, match="changed since"):
        modelzoo.install("tofu")
    _nothing_installed(Cache())


def test_tofu_bytes_shared_by_the_same_url_are_reused(reg, server):
    art = reg.publish("t1", variants={"full": 1000}, hash_algo=None, absolute=True)["full"]
    modelzoo.install("t1")
    modelzoo.remove("t1")
    again = modelzoo.install("t1")  # nothing referenced the blob: it is gone, fetched again
    assert again.fetched == ("full",) and len(_gets(server, art.served_path)) == 2


def test_hash_checking_mode_refuses_before_any_request(reg, server, monkeypatch):
    reg.publish("nohash", variants={"full": 1000}, hash_algo=None, absolute=True)
    with pytest.raises(HashRequiredError, match="no published hash") as info:
        modelzoo.install("nohash", require_hashes=True)
    assert isinstance(info.value, IntegrityError)
    monkeypatch.setenv("MODELZOO_REQUIRE_HASHES", "1")
    with pytest.raises(HashRequiredError):
        modelzoo.install("nohash")
    with pytest.raises(HashRequiredError):
        modelzoo.install("nohash", dry_run=True)
    assert server.requests == []
    _nothing_installed(Cache())
    # the argument beats the environment
    assert modelzoo.install("nohash", require_hashes=False).fetched == ("full",)


# --------------------------------------------------------------------------- dry run


def test_dry_run_downloads_and_writes_nothing(reg, server, _isolated_home):
    arts = reg.publish(
        "dry", variants={"full": 7000, "notop": 3000}, absolute=True, publish_size=False
    )
    plan = modelzoo.install("dry", variant="all", dry_run=True)
    assert plan.dry_run and plan.records == {} and plan.paths == {}
    full = plan.planned["full"]
    assert (full.size, full.cached, full.action) == (7000, False, "download")
    assert full.url == server.url + arts["full"].served_path
    assert plan.planned["notop"].size == 3000
    assert server.paths("GET") == [] and len(server.paths("HEAD")) == 2
    assert _tree(_isolated_home) == []

    modelzoo.install("dry")
    plan = modelzoo.install("dry", variant="all", dry_run=True)
    assert plan.planned["full"].cached and plan.planned["full"].action == "reuse"
    assert plan.paths["full"].read_bytes() == arts["full"].data
    assert not plan.planned["notop"].cached
    assert modelzoo.install("dry", dry_run=True, force=True).planned["full"].action == "download"


def test_dry_run_offline_reports_unknown_sizes_without_requests(reg, server, monkeypatch):
    reg.publish("dry2", variants={"full": 7000}, absolute=True, publish_size=False)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    plan = modelzoo.install("dry2", dry_run=True)
    assert plan.planned["full"].size is None and server.requests == []


# --------------------------------------------------------------------------- offline


def test_offline_uses_the_cache_and_names_what_is_missing(reg, server, monkeypatch):
    reg.publish("here", variants={"full": 1000, "notop": 500}, absolute=True)
    reg.publish("absent", variants={"full": 1000}, absolute=True)
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    installed = modelzoo.install("here").records["full"]
    seen = len(server.requests)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    assert modelzoo.install("here").records["full"] == installed
    assert ensure_installed("here") == installed
    with pytest.raises(OfflineError, match=r"absent.*modelzoo install absent") as info:
        modelzoo.install("absent")
    assert "MODELZOO_OFFLINE" in str(info.value)
    with pytest.raises(OfflineError, match=r"here@1.0.0 \(notop\).*--variant notop"):
        modelzoo.install("here", variant="notop")
    with pytest.raises(VersionNotFoundError):  # the cached index answers this offline
        modelzoo.install("here@2.0.0")
    assert len(server.requests) == seen


def test_a_folder_registry_with_relative_urls_installs_offline(reg, server, monkeypatch):
    art = reg.publish("local", variants={"full": 3000}, publish_size=False)["full"]
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    plan = modelzoo.install("local", dry_run=True).planned["full"]
    assert plan.url.startswith("file://") and plan.size == 3000 and not plan.cached
    rec = modelzoo.install("local").records["full"]
    assert rec.path.read_bytes() == art.data and rec.url == art.path.as_uri()
    assert server.requests == []


def test_ensure_installed_accepts_specs_resolved_models_and_manifests(reg, server, monkeypatch):
    from modelzoo.hub.registry import resolve

    reg.publish("e", variants={"full": 1000, "notop": 500}, absolute=True)
    resolved = resolve("e")
    rec = ensure_installed(resolved, "notop")
    assert rec.variant == "notop" and rec.path.exists()
    assert ensure_installed(resolved.manifest, "notop") == rec
    assert ensure_installed("e@1.0.0").variant == "full"
    with pytest.raises(UsageError, match="one artifact"):
        ensure_installed("e", "all")
    with pytest.raises(UsageError, match="received int"):
        ensure_installed(42)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    modelzoo.remove("e", variant="full")
    with pytest.raises(OfflineError, match=r"e@1.0.0 \(full\)"):
        ensure_installed(resolved.manifest, "full")


# --------------------------------------------------------------------------- processes


def _python(code: str, home: Path, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "MODELZOO_HOME": str(home), **env}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_download_then_resume(reg, server, _isolated_home, monkeypatch):
    size = 1_000_000
    slow = "slow/100000/"  # ~10 s for the whole file: plenty of time to kill it
    art = reg.publish("big", variants={"full": size}, absolute=True, url_prefix=slow)["full"]
    proc = _python("import modelzoo; modelzoo.install('big')", _isolated_home)
    cache = Cache()
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(cache.tmp_dir.glob("*.part")) if cache.tmp_dir.exists() else []
        if parts and parts[0].stat().st_size > 50_000:
            partial = parts[0]
            break
        time.sleep(0.05)
    assert partial is not None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kept = partial.stat().st_size
    assert 0 < kept < size
    assert cache.records() == [] and not cache.blobs_dir.exists()
    assert modelzoo.list_installed() == []

    # resume at full speed: a mirror rule maps the slow route to the plain file
    monkeypatch.setenv("MODELZOO_MIRROR", f"{server.url}/{slow}={server.url}/")
    result = modelzoo.install("big")
    ranges = [r.headers.get("Range") for r in _gets(server, art.served_path)]
    assert len(ranges) == 1 and ranges[0] is not None
    start = int(ranges[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= kept  # resumed where the killed process stopped
    assert result.path.read_bytes() == art.data
    assert [r.status for r in modelzoo.verify()] == ["ok"]
    assert _tree(cache.tmp_dir) == []


def test_concurrent_installs_make_one_download(reg, server, _isolated_home, tmp_path):
    art = reg.publish(
        "conc", variants={"full": 600_000}, absolute=True, url_prefix="slow/1000000/"
    )["full"]
    go = tmp_path / "go"
    code = f"""
        import json, os, time
        from pathlib import Path
        import modelzoo
        ready = Path({str(tmp_path)!r}) / f"ready-{{os.getpid()}}"
        ready.write_text("")
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        r = modelzoo.install("conc").records["full"]
        print(json.dumps({{"path": str(r.path), "sha256": r.sha256, "size": r.size}}))
    """
    procs = [_python(code, _isolated_home) for _ in range(4)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    go.write_text("")
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(o == outputs[0] for o in outputs)
    assert outputs[0]["sha256"] == art.sha256
    served = f"/slow/1000000{art.served_path}"
    assert len(_gets(server, served)) == 1  # the lock: one process downloads, three reuse
    cache = Cache()
    assert len(list(cache.blobs_dir.iterdir())) == 1
    assert [r.spec for r in cache.records()] == ["conc@1.0.0"]
    assert Path(outputs[0]["path"]).read_bytes() == art.data
    assert hashlib.sha256(Path(outputs[0]["path"]).read_bytes()).hexdigest() == art.sha256
