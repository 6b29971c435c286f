"""Air-gapped bundles: pack, unpack into a fresh cache, use offline; tampered and hostile ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry
from typer.testing import CliRunner

import modelzoo
from modelzoo.cli import app
from modelzoo.errors import IntegrityError, ModelNotFoundError, RegistryError, UsageError
from modelzoo.hub import project as mp
from modelzoo.hub.bundle import pack, unpack
from modelzoo.hub.cache import Cache


@pytest.fixture(autouse=True)
def _no_project_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELZOO_PROJECT", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


@pytest.fixture
def reg(tmp_path, monkeypatch):
    registry = TestRegistry(tmp_path / "registry")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(registry.root))
    return registry


@pytest.fixture
def packed(reg, tmp_path):
    """A valid bundle with tiny@1.0.0 (full + notop, sha256) and hashed@2.0.0 (md5)."""
    arts = reg.publish("tiny", variants={"full": 5000, "notop": 2000})
    arts["md5"] = reg.publish("hashed", "2.0.0", variants={"full": 3000}, hash_algo="md5")["full"]
    pack(["tiny", "hashed"], variant="all", output=tmp_path / "models.tar")
    return tmp_path / "models.tar", arts


def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def write_tar(path: Path, entries) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name: str, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def sums_for(entries) -> bytes:
    return "".join(
        f"{hashlib.sha256(d).hexdigest()}  {i.name}\n" for i, d in entries if i.name != "SHA256SUMS"
    ).encode()


def use_fresh_cache(tmp_path, monkeypatch, name: str = "airgap") -> Cache:
    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / name))
    monkeypatch.delenv("MODELZOO_REGISTRY", raising=False)
    return Cache()


def nothing_installed(cache: Cache) -> None:
    assert cache.records() == []
    assert not cache.blobs_dir.exists() or list(cache.blobs_dir.iterdir()) == []
    assert not cache.tmp_dir.exists() or list(cache.tmp_dir.iterdir()) == []


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


# --------------------------------------------------------------------------- round trips


def test_pack_then_unpack_into_a_fresh_cache_works_offline(packed, tmp_path, monkeypatch):
    bundle, arts = packed
    names = [m.name for m, _ in members(bundle)]
    assert names == sorted(names[:-1]) + ["SHA256SUMS"]
    assert names[-2:] == ["models/tiny/1.0.0/manifest.json", "SHA256SUMS"]
    assert sum(n.startswith("blobs/") for n in names) == 3

    cache = use_fresh_cache(tmp_path, monkeypatch)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    result = unpack(bundle)
    assert result.registry == "bundle:models.tar" and result.already == ()
    assert sorted(result.installed) == [
        "hashed@2.0.0 (full)", "tiny@1.0.0 (full)", "tiny@1.0.0 (notop)"
    ]  # fmt: skip
    for rec in cache.installed():
        assert rec.registry == "bundle:models.tar"
    full = cache.record("tiny", "1.0.0", "full")
    assert full.path.read_bytes() == arts["full"].data and full.sha256 == arts["full"].sha256
    md5 = cache.record("hashed", "2.0.0", "full")
    assert md5.declared_hash == f"md5:{arts['md5'].md5}" and md5.sha256 == arts["md5"].sha256
    assert all(v.ok for v in modelzoo.verify())
    # no registry and no network: installs and resolution use the unpacked copies
    assert modelzoo.install("tiny", variant="notop").fetched == ()
    assert mp.resolve_in_context("tiny").registry == "bundle:models.tar"
    with pytest.raises(ModelNotFoundError):
        modelzoo.install("somethingelse")
    assert unpack(bundle).installed == ()  # unpacking again changes nothing
    assert len(unpack(bundle).already) == 3


def test_pack_is_byte_for_byte_deterministic(packed, tmp_path):
    bundle, _ = packed
    again = pack(["hashed", "tiny"], variant="all", output=tmp_path / "again.tar")
    assert again.path.read_bytes() == bundle.read_bytes()
    assert again.sha256 == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert again.models == ("hashed@2.0.0", "tiny@1.0.0") and again.artifacts == 3
    for info, _ in members(bundle):
        assert (info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname) == (
            0, 0o644, 0, 0, "", ""
        )  # fmt: skip
        assert info.type == tarfile.REGTYPE
    gz1 = pack(["tiny"], output=tmp_path / "a.tar.gz")
    gz2 = pack(["tiny"], output=tmp_path / "b.tgz")
    assert gz1.path.read_bytes() == gz2.path.read_bytes()
    plain = pack(["tiny"], output=tmp_path / "plain.tar")
    assert gzip.decompress(gz1.path.read_bytes()) == plain.path.read_bytes()
    assert gz1.path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header: no timestamp
    sums = dict(reversed(line.split("  ")) for line in members(bundle)[-1][1].decode().splitlines())
    for info, data in members(bundle)[:-1]:
        assert sums[info.name] == hashlib.sha256(data).hexdigest()


def test_pack_a_lock_then_frozen_install_on_an_air_gapped_machine(reg, tmp_path, monkeypatch):
    root = tmp_path / "app"
    root.mkdir()
    reg.publish("tiny", variants={"full": 4000})
    reg.publish("other", "0.3.0", variants={"full": 1000}, hash_algo=None)
    (root / "modelzoo.toml").write_text('[models]\n"tiny" = "^1"\n"other" = "*"\n')
    monkeypatch.chdir(root)
    mp.install_project()
    lock, out = str(root / "modelzoo.lock"), str(tmp_path / "b.tgz")
    result = json.loads(run("pack", "--lock", lock, "-o", out, "--json").stdout)
    assert result["models"] == ["other@0.3.0", "tiny@1.0.0"] and result["artifacts"] == 2

    cache = use_fresh_cache(tmp_path, monkeypatch)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    os.rename(reg.root, tmp_path / "registry-unreachable")
    with pytest.raises(RegistryError, match="does not exist"):
        mp.install_project(frozen=True)  # the lock's registry is out of reach
    text = run("unpack", str(tmp_path / "b.tgz")).stdout
    assert "installed tiny@1.0.0 (full) from bundle:b.tgz" in text
    assert mp.install_project(frozen=True).installed == ()
    assert {r.spec for r in cache.installed()} == {"tiny@1.0.0", "other@0.3.0"}
    # the TOFU artifact's sha256 from the bundle is now the trusted one
    other = cache.record("other", "0.3.0", "full")
    assert other.trusted_on_first_use and cache.trusted_sha256(other.url) == other.sha256


def test_cli_pack_and_unpack(reg, tmp_path, monkeypatch):
    reg.publish("tiny", variants={"full": 1000, "notop": 500})
    text = run("pack", "tiny", "--variant", "notop", "-o", str(tmp_path / "t.tar")).stdout
    assert "packed tiny@1.0.0 (1 artifact(s))" in text and "sha256:" in text
    use_fresh_cache(tmp_path, monkeypatch)
    first = json.loads(run("unpack", str(tmp_path / "t.tar"), "--json").stdout)
    assert first["installed"] == ["tiny@1.0.0 (notop)"] and first["registry"] == "bundle:t.tar"
    assert "already installed tiny@1.0.0 (notop)" in run("unpack", str(tmp_path / "t.tar")).stdout


def test_pack_errors(reg, tmp_path):
    reg.publish("tiny", variants={"full": 100})
    with pytest.raises(UsageError, match="Nothing to pack"):
        pack([], output=tmp_path / "x.tar")
    with pytest.raises(ModelNotFoundError):
        pack(["nope"], output=tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()
    assert run("pack", "-o", str(tmp_path / "x.tar"), ok=False).exit_code == 1


# --------------------------------------------------------------------------- tampering


def _mutate(bundle: Path, out: Path, change) -> Path:
    entries = members(bundle)
    entries = change(entries)
    return write_tar(out, entries)


def _blob(entries, suffix=".h5"):
    return next(i for i, (info, _) in enumerate(entries) if info.name.startswith("blobs/"))


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _tamper_byte(entries):
    i = _blob(entries)
    entries[i] = (entries[i][0], _flip(entries[i][1]))
    return entries


def _tamper_byte_and_sums(entries):
    entries = _tamper_byte(entries)
    entries[-1] = (entries[-1][0], sums_for(entries))
    return entries


def _drop_member(entries):
    del entries[_blob(entries)]
    return entries


def _extra_unlisted(entries):
    entries.insert(0, (file_info("blobs/" + "a" * 64 + ".h5"), b"extra"))
    return entries


def _extra_listed(entries):
    data = b"extra bytes"
    entries.insert(0, (file_info(f"blobs/{hashlib.sha256(data).hexdigest()}.h5"), data))
    entries[-1] = (entries[-1][0], sums_for(entries))
    return entries


def _no_sums(entries):
    return entries[:-1]


def _sums_twice(entries):
    info, data = entries[-1]
    entries[-1] = (info, data + data.splitlines(keepends=True)[0])
    return entries


def _member_twice(entries):
    return [entries[0], *entries]


def _bad_sums_line(entries):
    info, data = entries[-1]
    entries[-1] = (info, data + b"not a checksum line\n")
    return entries


def _md5_breaks(entries):
    """A consistent bundle whose blob no longer matches the manifest's published md5."""
    doc = json.loads(next(d for i, d in entries if i.name == "bundle.json"))
    art = doc["models"]["hashed@2.0.0"]["artifacts"]["full"]
    i = next(i for i, (info, _) in enumerate(entries) if info.name == art["blob"])
    data = _flip(entries[i][1])
    sha = hashlib.sha256(data).hexdigest()
    entries[i] = (file_info(f"blobs/{sha}.h5"), data)
    art.update(blob=f"blobs/{sha}.h5", sha256=sha)
    j = next(i for i, (info, _) in enumerate(entries) if info.name == "bundle.json")
    entries[j] = (entries[j][0], json.dumps(doc).encode())
    entries[-1] = (entries[-1][0], sums_for(entries))
    return entries


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_tamper_byte, "hashes to sha256:.* but SHA256SUMS says"),
        (_tamper_byte_and_sums, "does not hash to its name"),
        (_drop_member, "SHA256SUMS lists .* but the bundle has no such member"),
        (_extra_unlisted, "is not listed in SHA256SUMS"),
        (_extra_listed, "is not described by bundle.json"),
        (_no_sums, "has no SHA256SUMS member"),
        (_sums_twice, "lists .* twice"),
        (_member_twice, "appears twice"),
        (_bad_sums_line, "is not '<sha256>  <member>'"),
        (_md5_breaks, "md5:.* differs from the manifest's md5:"),
    ],
)
def test_tampered_bundles_install_nothing(packed, tmp_path, monkeypatch, change, message):
    bundle, _ = packed
    bad = _mutate(bundle, tmp_path / "bad.tar", change)
    cache = use_fresh_cache(tmp_path, monkeypatch)
    with pytest.raises(IntegrityError, match=message) as info:
        unpack(bad)
    assert "Nothing was installed" in str(info.value)
    nothing_installed(cache)
    result = run("unpack", str(bad), ok=False)
    assert result.exit_code == 1 and "Refusing bundle" in result.output


def test_not_a_tar_and_truncated_tar(packed, tmp_path, monkeypatch):
    bundle, _ = packed
    cache = use_fresh_cache(tmp_path, monkeypatch)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x1f\x8b" + b"definitely not gzip" * 50)
    with pytest.raises(IntegrityError, match="not a readable tar archive"):
        unpack(junk)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(bundle.read_bytes()[:6000])
    with pytest.raises(IntegrityError):
        unpack(cut)
    nothing_installed(cache)
    with pytest.raises(UsageError, match="does not exist"):
        unpack(tmp_path / "missing.tar")


# --------------------------------------------------------------------------- hostile archives


def _hostile(kind: str, tmp_path: Path) -> list:
    if kind == "dotdot":
        return [(file_info("../evil.txt"), b"pwned")]
    if kind == "nested-dotdot":
        return [(file_info("models/../../evil.txt"), b"pwned")]
    if kind == "absolute":
        return [(file_info(str(tmp_path / "evil.txt")), b"pwned")]
    if kind == "backslash":
        return [(file_info("models\\..\\evil.txt"), b"pwned")]
    if kind == "symlink":
        return [(file_info("bundle.json", type=tarfile.SYMTYPE, linkname="/etc/passwd"), None)]
    if kind == "hardlink":
        return [(file_info("SHA256SUMS", type=tarfile.LNKTYPE, linkname="/etc/passwd"), None)]
    if kind == "fifo":
        return [(file_info("bundle.json", type=tarfile.FIFOTYPE), None)]
    if kind == "device":
        return [(file_info("bundle.json", type=tarfile.CHRTYPE, devmajor=1, devminor=3), None)]
    if kind == "unexpected-name":
        return [(file_info("models/tiny/1.0.0/run.sh"), b"#!/bin/sh\n")]
    if kind == "unexpected-dir":
        return [(file_info("etc", type=tarfile.DIRTYPE), None)]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dotdot", "unsafe path"),
        ("nested-dotdot", "unsafe path"),
        ("absolute", "unsafe path"),
        ("backslash", "unsafe path"),
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
        ("fifo", "special file"),
        ("device", "special file"),
        ("unexpected-name", "unexpected member"),
        ("unexpected-dir", "unexpected folder"),
    ],
)
def test_hostile_members_are_refused(packed, tmp_path, monkeypatch, kind, message):
    bundle, _ = packed
    entries = _hostile(kind, tmp_path) + members(bundle)
    evil = write_tar(tmp_path / "evil.tar", entries)
    cache = use_fresh_cache(tmp_path, monkeypatch)
    with pytest.raises(IntegrityError, match=message):
        unpack(evil)
    nothing_installed(cache)
    assert not (tmp_path / "evil.txt").exists() and not (cache.root.parent / "evil.txt").exists()


def test_huge_members_are_refused_before_reading(packed, tmp_path, monkeypatch):
    bundle, _ = packed
    cache = use_fresh_cache(tmp_path, monkeypatch)
    # a header claiming 1 TiB, with no body at all
    header = file_info("blobs/" + "b" * 64 + ".h5", size=1 << 40).tobuf(tarfile.PAX_FORMAT)
    huge = tmp_path / "huge.tar"
    huge.write_bytes(header + b"\0" * 1024)
    with pytest.raises(IntegrityError, match=r"is 1099511627776 bytes \(limit"):
        unpack(huge)
    # documents have their own small cap
    doc = file_info("bundle.json", size=(16 << 20) + 1).tobuf(tarfile.PAX_FORMAT)
    (tmp_path / "doc.tar").write_bytes(doc)
    with pytest.raises(IntegrityError, match="bundle.json"):
        unpack(tmp_path / "doc.tar")
    # caps given by the caller
    with pytest.raises(IntegrityError, match=r"\(limit 1000\)"):
        unpack(bundle, max_member_bytes=1000)
    with pytest.raises(IntegrityError, match="add up to more than 6000 bytes"):
        unpack(bundle, max_total_bytes=6000)
    nothing_installed(cache)


def test_unpack_refuses_other_bytes_for_an_installed_version(packed, tmp_path, monkeypatch):
    bundle, _ = packed
    cache = use_fresh_cache(tmp_path, monkeypatch)
    other = TestRegistry(tmp_path / "other-registry")
    other.publish("tiny", variants={"full": 5000}, seed="different")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(other.root))
    mine = modelzoo.install("tiny").records["full"]
    with pytest.raises(IntegrityError, match="already has tiny@1.0.0 \\(full\\) with other bytes"):
        unpack(bundle)
    assert [r.sha256 for r in cache.installed()] == [mine.sha256]
    assert cache.record("hashed", "2.0.0", "full") is None


# --------------------------------------------------------------------------- with TensorFlow


@pytest.mark.tf
def test_publish_pack_unpack_then_load_offline(tmp_path, monkeypatch):
    import numpy as np

    from modelzoo.backend import keras
    from modelzoo.models.publish import publish

    k = keras()
    inp = k.Input((6, 6, 1))
    x = k.layers.Flatten(name="flat")(inp)
    x = k.layers.Dense(5, activation="relu", name="hidden")(x)
    model = k.Model(inp, k.layers.Dense(2, name="out")(x), name="airgap_net")
    saved = tmp_path / "airgap.keras"
    model.save(saved)
    publish(saved, name="airgap-net", version="0.1.0", registry=tmp_path / "reg")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(tmp_path / "reg"))
    result = json.loads(run("pack", "airgap-net", "-o", str(tmp_path / "net.tar"), "--json").stdout)
    assert result["models"] == ["airgap-net@0.1.0"]

    use_fresh_cache(tmp_path, monkeypatch)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    os.rename(tmp_path / "reg", tmp_path / "reg-gone")
    unpacked = json.loads(run("unpack", str(tmp_path / "net.tar"), "--json").stdout)
    assert unpacked["installed"] == ["airgap-net@0.1.0 (full)"]
    loaded = modelzoo.load("airgap-net")
    x = np.random.default_rng(1).random((3, 6, 6, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert modelzoo.load("airgap-net", cut="hidden").output_shape == (None, 5)
