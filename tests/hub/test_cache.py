"""The on-disk cache: layout, atomic records, verify, remove, prune, size, clear, safety."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import filelock
import pytest
from _registry_fixture import make_bytes, manifest_data

import modelzoo
from modelzoo.errors import CacheError, LockTimeoutError, NotInstalledError, UsageError
from modelzoo.hub import cache as cache_mod
from modelzoo.hub.cache import Cache, InstallRecord, blob_suffix
from modelzoo.hub.manifest import parse_manifest


def _manifest(name="tiny", version="1.0.0", variants=("full",), hashes=None):
    hashes = hashes or {}
    arts = {
        v: {"url": f"{v}.h5", "format": "h5", "hash": hashes.get(v), "file_name": f"{v}.h5"}
        for v in variants
    }
    return parse_manifest(manifest_data(name, version, arts))


def _fake_install(
    cache: Cache,
    name="tiny",
    version="1.0.0",
    variant="full",
    *,
    data: bytes | None = None,
    declared: str | None = None,
    tofu: bool = False,
    variants=None,
) -> InstallRecord:
    """Install ``data`` by hand, the way install.py does: blob first, record last."""
    data = data if data is not None else make_bytes(50_000, seed=f"{name}{version}{variant}")
    sha = hashlib.sha256(data).hexdigest()
    src = cache.tmp_dir / f"k{sha[:10]}.part"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    blob = cache.add_blob(src, sha, ".h5")
    manifest = _manifest(name, version, variants or (variant,), {variant: declared})
    rec = InstallRecord(
        name=name,
        version=version,
        variant=variant,
        sha256=sha,
        size=len(data),
        path=blob,
        file_name=f"{variant}.h5",
        url=f"http://example.invalid/{name}/{version}/{variant}.h5",
        declared_hash=declared,
        trusted_on_first_use=tofu,
        registry="test",
    )
    cache.write_record(manifest, variant, rec)
    if tofu:
        cache.trust(rec.url, sha, size=len(data))
    return rec


# --------------------------------------------------------------------------- layout


def test_cache_root_defaults_to_modelzoo_home_and_constructing_writes_nothing(_isolated_home):
    c = Cache()
    assert c.root == _isolated_home
    assert c.installed() == [] and c.verify() == [] and c.size()["total"] == 0
    assert not _isolated_home.exists()


def test_layout_blob_record_and_manifest(_isolated_home):
    c = Cache()
    data = make_bytes(12_345, seed=1)
    rec = _fake_install(c, data=data, declared="md5:" + hashlib.md5(data).hexdigest())
    sha = hashlib.sha256(data).hexdigest()
    blob = _isolated_home / "blobs" / "sha256" / f"{sha}.h5"
    assert rec.path == blob and blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    vdir = _isolated_home / "models" / "tiny" / "1.0.0"
    assert sorted(p.name for p in vdir.iterdir()) == ["full.json", "manifest.json"]
    assert json.loads((vdir / "manifest.json").read_text())["name"] == "tiny"
    assert not list(c.tmp_dir.iterdir())  # the partial was moved, not copied
    assert c.record("tiny", "1.0.0", "full") == rec
    assert c.manifest("tiny", "1.0.0").spec == "tiny@1.0.0"
    assert c.installed() == [rec] and modelzoo.list_installed() == [rec]
    assert modelzoo.list_installed("other") == []


def test_install_record_json_round_trip():
    rec = InstallRecord(
        "m", "1.2.3", "notop", "a" * 64, 10, Path("/x/y.h5"), "y.h5", "http://h/y.h5", None, True
    )
    again = InstallRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and again.installed_at.endswith("Z") and again.spec == "m@1.2.3"
    with pytest.raises(CacheError, match="'size'"):
        InstallRecord.from_dict({**rec.to_dict(), "size": "10"})
    with pytest.raises(CacheError, match="sha256"):
        InstallRecord.from_dict({**rec.to_dict(), "sha256": "../../etc/passwd"})


def test_blob_suffix_keeps_keras_extension():
    assert blob_suffix("model.keras") == ".keras"
    assert blob_suffix("w.weights.H5") == ".h5"
    assert blob_suffix("no_extension") == ""
    assert blob_suffix("x.we ird") == ""


def test_record_path_follows_a_moved_cache(tmp_path):
    old = Cache(tmp_path / "old")
    rec = _fake_install(old)
    (tmp_path / "old").rename(tmp_path / "new")
    moved = Cache(tmp_path / "new").record("tiny", "1.0.0", "full")
    assert moved.path == tmp_path / "new" / "blobs" / "sha256" / f"{rec.sha256}.h5"
    assert Cache(tmp_path / "new").installed() == [moved]


def test_same_bytes_stored_once(_isolated_home):
    c = Cache()
    data = make_bytes(20_000, seed=7)
    a = _fake_install(c, "model-a", data=data)
    b = _fake_install(c, "model-b", data=data)
    assert a.path == b.path
    assert len(list(c.blobs_dir.iterdir())) == 1


def test_add_blob_replaces_a_damaged_blob_and_honours_replace(tmp_path):
    c = Cache(tmp_path / "home")
    data = make_bytes(1000, seed=3)
    sha = hashlib.sha256(data).hexdigest()
    dest = c.blob_path(sha, ".h5")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data[:10])  # truncated: wrong size
    src = tmp_path / "src.part"
    src.write_bytes(data)
    assert c.add_blob(src, sha, ".h5") == dest
    assert dest.read_bytes() == data and not src.exists()
    # same size but damaged: only replace=True (forced reinstall) overwrites it
    os.chmod(dest, 0o644)
    dest.write_bytes(b"x" * 1000)
    src.write_bytes(data)
    c.add_blob(src, sha, ".h5")
    assert dest.read_bytes() == b"x" * 1000 and not src.exists()
    src.write_bytes(data)
    c.add_blob(src, sha, ".h5", replace=True)
    assert dest.read_bytes() == data


def test_add_blob_missing_source_is_a_cache_error(tmp_path):
    with pytest.raises(CacheError, match="nope.part"):
        Cache(tmp_path / "h").add_blob(tmp_path / "nope.part", "b" * 64, ".h5")


# --------------------------------------------------------------------------- records


def test_record_is_written_last_and_atomically(_isolated_home):
    c = Cache()
    rec = _fake_install(c)
    vdir = c.version_dir("tiny", "1.0.0")
    # rewriting goes through a temp file + rename: no temp files remain, content is whole
    c.write_record(c.manifest("tiny", "1.0.0"), "full", rec)
    assert sorted(p.name for p in vdir.iterdir()) == ["full.json", "manifest.json"]
    # without the record there is no install, even though manifest and blob are there
    (vdir / "full.json").unlink()
    assert c.installed() == [] and c.record("tiny", "1.0.0", "full") is None
    assert rec.path.exists()


def test_write_record_refuses_a_record_for_another_model(_isolated_home):
    c = Cache()
    rec = _fake_install(c)
    with pytest.raises(UsageError, match="does not match"):
        c.write_record(_manifest("other"), "full", rec)


def test_broken_record_is_not_installed(_isolated_home):
    c = Cache()
    rec = _fake_install(c)
    os.unlink(rec.path)
    assert c.installed() == []
    assert c.broken() == [rec]
    assert c.record("tiny", "1.0.0", "full") == rec and not c.is_complete(rec)


def test_unreadable_or_mismatched_records_are_ignored_with_a_warning(_isolated_home, caplog):
    c = Cache()
    rec = _fake_install(c)
    path = c.record_path("tiny", "1.0.0", "full")
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        assert c.record("tiny", "1.0.0", "full") is None
    assert "unreadable install record" in caplog.text
    # a record copied under another name does not count for that name
    path.write_text(json.dumps(rec.to_dict()))
    other = c.record_path("tiny", "1.0.0", "notop")
    other.write_text(json.dumps(rec.to_dict()))
    assert [r.variant for r in c.records()] == ["full"]


# --------------------------------------------------------------------------- verify


def test_verify_ok_mismatch_and_missing(_isolated_home):
    c = Cache()
    ok = _fake_install(c, "good")
    bad = _fake_install(c, "bad")
    gone = _fake_install(c, "gone")
    # corrupt in place, same size: only hashing can tell
    os.chmod(bad.path, 0o644)
    with open(bad.path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00" * 16)
    os.unlink(gone.path)
    results = {r.record.name: r for r in modelzoo.verify()}
    assert results["good"].ok and results["good"].status == "ok"
    assert results["bad"].status == "mismatch" and not results["bad"].ok
    assert results["bad"].expected == f"sha256:{bad.sha256}"
    assert results["bad"].actual.startswith("sha256:") and results["bad"].actual != (
        results["bad"].expected
    )
    assert "--force" in results["bad"].message
    assert results["gone"].status == "missing" and results["gone"].actual is None
    assert [r.record for r in modelzoo.verify("good")] == [ok]
    assert [r.status for r in modelzoo.verify("gone@1.0.0")] == ["missing"]
    assert modelzoo.verify("good@2.0.0") == []


def test_verify_checks_the_published_md5_too(_isolated_home):
    c = Cache()
    data = make_bytes(5000, seed=11)
    good = "md5:" + hashlib.md5(data).hexdigest()
    _fake_install(c, "a", data=data, declared=good)
    _fake_install(c, "b", data=data, declared="md5:" + "0" * 32)
    by_name = {r.record.name: r for r in c.verify()}
    assert by_name["a"].ok
    assert by_name["b"].status == "mismatch"
    assert by_name["b"].expected == "md5:" + "0" * 32
    assert by_name["b"].actual == good


def test_verify_checks_tofu_artifacts_against_their_first_seen_hash(_isolated_home):
    c = Cache()
    rec = _fake_install(c, data=b"first bytes", tofu=True)
    assert c.trusted_sha256(rec.url) == rec.sha256
    assert [r.status for r in c.verify()] == ["ok"]
    # trust is kept: a second trust() for the same URL does not overwrite it
    c.trust(rec.url, "c" * 64)
    assert c.trusted_sha256(rec.url) == rec.sha256
    # tofu.json and the record disagree (record tampered): verify flags it
    data = json.loads(c.tofu_path.read_text())
    data[rec.url]["sha256"] = "d" * 64
    c.tofu_path.write_text(json.dumps(data))
    result = c.verify()[0]
    assert result.status == "mismatch" and result.expected == "sha256:" + "d" * 64


def test_corrupt_tofu_file_is_a_cache_error(_isolated_home):
    c = Cache()
    c.root.mkdir(parents=True)
    c.tofu_path.write_text("[1, 2")
    with pytest.raises(CacheError, match=r"tofu\.json.*delete it"):
        c.trusted_sha256("http://x/y")


# --------------------------------------------------------------------------- remove


def test_remove_versions_variants_and_shared_blobs(_isolated_home):
    c = Cache()
    shared = make_bytes(3000, seed=5)
    v1 = _fake_install(c, "m", "1.0.0", data=shared)
    v2 = _fake_install(c, "m", "2.0.0")
    notop = _fake_install(c, "m", "2.0.0", "notop", variants=("full", "notop"))
    other = _fake_install(c, "other", data=shared)

    assert modelzoo.remove("m@2.0.0", variant="notop") == [notop]
    assert not notop.path.exists()
    assert c.record("m", "2.0.0", "full") == v2

    assert modelzoo.remove("m@1.0.0") == [v1]
    assert not (c.models_dir / "m" / "1.0.0").exists()
    assert v1.path.exists()  # still used by "other"

    assert modelzoo.remove("m") == [v2]
    assert not (c.models_dir / "m").exists() and not v2.path.exists()
    assert c.installed() == [other]

    with pytest.raises(NotInstalledError, match="m@1.0.0 is not installed"):
        modelzoo.remove("m@1.0.0")
    assert c.remove("m") == []


def test_remove_with_a_version_constraint(_isolated_home):
    c = Cache()
    _fake_install(c, "m", "1.0.0")
    _fake_install(c, "m", "1.5.0")
    _fake_install(c, "m", "2.0.0")
    removed = c.remove("m", version="^1.0")
    assert sorted(r.version for r in removed) == ["1.0.0", "1.5.0"]
    assert [r.version for r in c.installed()] == ["2.0.0"]
    with pytest.raises(UsageError, match="constraint"):
        c.remove("m", version="not a version")


# --------------------------------------------------------------------------- prune / size / clear


def _age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_prune_blobs_partials_and_locks(_isolated_home):
    c = Cache()
    kept = _fake_install(c)
    orphan = c.blob_path("e" * 64, ".h5")
    orphan.write_bytes(b"12345")
    c.tmp_dir.mkdir(parents=True, exist_ok=True)
    stale, stale_meta = c.partial_path("stale"), c.tmp_dir / "stale.part.meta"
    fresh = c.partial_path("fresh")
    busy = c.partial_path("busy")
    for p in (stale, stale_meta, fresh, busy):
        p.write_bytes(b"x" * 100)
    for p in (stale, stale_meta, busy):
        _age(p, 30)
    c.locks_dir.mkdir(parents=True, exist_ok=True)
    c.lock_path("orphan").write_text("")
    with c.lock("busy"):  # a download in progress keeps its partial and its lock
        result = c.prune()
        assert c.lock_path("busy").exists() and busy.exists()
    assert result.blobs == (orphan,)
    assert sorted(result.partials) == sorted([stale, stale_meta])
    assert result.locks == (c.lock_path("orphan"),)
    assert result.bytes_freed == 5 + 200
    assert kept.path.exists() and fresh.exists() and not orphan.exists()
    everything = c.prune(partials=True)
    assert sorted(everything.partials) == sorted([fresh, busy])
    assert c.lock_path("busy") in everything.locks
    assert c.installed() == [kept]


def test_size_per_area(_isolated_home):
    c = Cache()
    rec = _fake_install(c, data=b"a" * 4096)
    c.partial_path("p").write_bytes(b"b" * 1000)
    c.root.joinpath("config.json").write_text("{}")
    sizes = c.size()
    assert sizes["blobs"] == 4096
    assert sizes["tmp"] == 1000
    vdir = c.version_dir("tiny", "1.0.0")
    assert sizes["models"] == sum(p.stat().st_size for p in vdir.iterdir())
    assert sizes["other"] == 2 + (c.root / "CACHEDIR.TAG").stat().st_size  # config + marker
    assert sizes["total"] == sum(v for k, v in sizes.items() if k != "total")
    assert rec.path.exists()


def test_clear_keeps_config_and_registries(_isolated_home):
    c = Cache()
    _fake_install(c, tofu=True)
    (c.root / "config.json").write_text('{"registries": []}')
    (c.root / "registries").mkdir()
    (c.root / "registries" / "r.json").write_text("{}")
    (c.root / "features").mkdir()
    (c.root / "features" / "f.npy").write_bytes(b"1" * 10)
    freed = c.clear()
    assert freed > 50_000
    kept = ["CACHEDIR.TAG", "cache.lock", "config.json", "registries"]
    assert sorted(p.name for p in c.root.iterdir()) == kept
    assert (c.root / "registries" / "r.json").exists()
    assert c.installed() == [] and c.size()["blobs"] == 0


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("bad", ["../x", "/etc", "..", ".", "a/b", "", "a\\b", "~root"])
def test_names_cannot_escape_the_root(_isolated_home, bad):
    c = Cache()
    with pytest.raises(UsageError):
        c.record(bad, "1.0.0", "full")
    with pytest.raises(UsageError):
        c.record("tiny", "1.0.0", bad)
    with pytest.raises(UsageError):
        c.remove(bad)
    with pytest.raises(UsageError):
        c.partial_path(bad)
    with pytest.raises(UsageError):
        c.lock_path(bad)
    with pytest.raises(UsageError):
        modelzoo.verify(f"{bad}@1.0.0")
    assert not _isolated_home.exists()


def test_model_names_must_be_lowercase():
    with pytest.raises(UsageError, match="a-z"):
        Cache().record("MobileNet", "1.0.0", "full")


@pytest.mark.parametrize("bad", ["../1.0.0", "..", "/1.0.0", "1.0", "1.0.0/../../x"])
def test_versions_cannot_escape_the_root(bad):
    with pytest.raises(UsageError, match="version"):
        Cache().record("tiny", bad, "full")


def test_blob_paths_are_validated():
    c = Cache()
    for sha, suffix in (("../" * 3 + "a" * 55, ""), ("A" * 64, ""), ("a" * 64, "/../x")):
        with pytest.raises(UsageError):
            c.blob_path(sha, suffix)


def test_reserved_manifest_variant():
    with pytest.raises(UsageError, match="reserved"):
        Cache().record_path("tiny", "1.0.0", "manifest")


# --------------------------------------------------------------------------- locks


def test_lock_timeout_names_the_lock_and_next_step(_isolated_home):
    c = Cache()
    with c.lock("k1"):
        other = filelock.FileLock(str(c.lock_path("k1")))
        with pytest.raises(filelock.Timeout):
            other.acquire(timeout=0)
        expect = pytest.raises(LockTimeoutError, match=r"k1\.lock.*Wait for it")
        with expect as info, c.lock("k1", timeout=0.1):
            pass
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, CacheError)
    with c.lock("k1", timeout=0):  # released again
        pass


# --------------------------------------------------------------------------- write errors


def _run(code: str, home: Path) -> subprocess.CompletedProcess:
    # the code imports this test module, which imports the shared helpers in tests/
    here = Path(__file__).parent
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "MODELZOO_HOME": str(home), "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )


def test_file_size_limit_maps_to_cache_error_and_keeps_the_old_record(_isolated_home):
    c = Cache()
    rec = _fake_install(c)
    before = c.record_path("tiny", "1.0.0", "full").read_bytes()
    # A real write failure: the kernel refuses writes past RLIMIT_FSIZE (EFBIG), the
    # nearest thing to a full disk a test can arrange without root-only tricks.
    proc = _run(
        """
        import resource, signal
        from modelzoo.hub.cache import Cache
        from modelzoo.errors import CacheError
        from test_cache import _manifest
        from modelzoo.hub.manifest import parse_manifest
        from _registry_fixture import manifest_data
        c = Cache()
        rec = c.record("tiny", "1.0.0", "full")
        doc = manifest_data("tiny", "1.0.0", _manifest().to_dict()["artifacts"],
                            notes="n" * 100_000)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            c.write_record(parse_manifest(doc), "full", rec)
        except CacheError as exc:
            print("CacheError:", exc)
        """,
        _isolated_home,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CacheError: File too large" in proc.stdout
    assert "manifest.json" in proc.stdout and "MODELZOO_HOME" in proc.stdout
    assert c.record_path("tiny", "1.0.0", "full").read_bytes() == before
    assert c.installed() == [rec]
    leftovers = [p.name for p in c.version_dir("tiny", "1.0.0").iterdir()]
    assert sorted(leftovers) == ["full.json", "manifest.json"]


def test_a_file_where_the_cache_needs_a_folder_is_a_cache_error(tmp_path):
    root = tmp_path / "home"
    root.mkdir()
    (root / "models").write_text("not a folder")
    c = Cache(root)
    rec = InstallRecord("tiny", "1.0.0", "full", "a" * 64, 1, Path("x"), "full.h5", "u")
    with pytest.raises(CacheError, match="models.*MODELZOO_HOME"):
        c.write_record(_manifest(), "full", rec)
    (root / "locks").write_text("")
    with pytest.raises(CacheError, match="locks"), c.lock("k"):
        pass


def test_module_api_is_what_modelzoo_exports():
    assert modelzoo.list_installed is cache_mod.list_installed
    assert modelzoo.remove is cache_mod.remove
    assert modelzoo.verify is cache_mod.verify
