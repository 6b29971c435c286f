"""Signed registries (TUF): signing, trusting, and every attack python-tuf must refuse.

Registries are real folders (tests/_registry_fixture.py) served by a real HTTP server on
127.0.0.1 (tests/_server.py); metadata is signed with real ed25519 keys by
modelzoo.hub.signing and read through tuf.ngclient by modelzoo.hub.trust. Expiry is controlled on
the signing side (metadata signed "three days ago"), never by patching a clock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry
from _server import LocalServer

import modelzoo
from modelzoo.errors import (
    EndlessDataError,
    FreezeError,
    IntegrityError,
    RollbackError,
    SigningError,
    TamperedMetadataError,
    TrustError,
    UnsignedRegistryError,
)
from modelzoo.hub import registry, signing, trust


@pytest.fixture
def signed(tmp_path):
    """A signed registry folder with one 2 kB model; root key kept apart from online keys."""
    reg = TestRegistry(tmp_path / "reg")
    arts = reg.publish("tiny", "1.0.0", variants={"full": 2000})
    result = signing.init_registry(reg.root, tmp_path / "keys", root_keys=tmp_path / "rootkeys")
    return reg, arts["full"], result


def _forget_client(location: str) -> None:
    """A new process: drop the in-memory reader (the on-disk trust state stays)."""
    trust._readers.pop(location, None)


def test_init_writes_private_keys_0600_and_root_keys_apart(signed, tmp_path):
    reg, _, result = signed
    for folder, roles in (
        (tmp_path / "keys", signing.ROLES[1:]),
        (tmp_path / "rootkeys", ["root"]),
    ):
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r}.pem" for r in roles)
        for path in folder.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600
    root_json = reg.root / "tuf" / "root.json"
    assert hashlib.sha256(root_json.read_bytes()).hexdigest() == result.root_sha256
    assert result.versions == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    # index, manifest and the artifact (by path convention, with the manifest's URL)
    targets = json.loads((reg.root / "tuf" / "1.targets.json").read_text())["signed"]["targets"]
    assert sorted(targets) == [
        "artifacts/tiny/1.0.0/full",
        "index.json",
        "models/tiny/1.0.0/manifest.json",
    ]
    assert targets["artifacts/tiny/1.0.0/full"]["url"] == "full.h5"


def test_folder_registry_installs_through_tuf(signed):
    reg, art, result = signed
    added = registry.add_registry(reg.root, trust=reg.root / "tuf" / "root.json")
    assert added.signed
    assert [e.name for e in registry.search("tiny")][:1] == ["tiny"]
    installed = modelzoo.install("tiny")
    assert installed.paths["full"].read_bytes() == art.data
    assert trust.trusted_root(added.location).sha256 == result.root_sha256


def test_tampered_manifest_with_consistent_hash_is_refused(signed):
    reg, art, _ = signed
    registry.add_registry(reg.root, trust=reg.root / "tuf" / "root.json")
    # The attacker swaps the artifact and rewrites the manifest's hash and size to match:
    # plain hash checking would accept it; the signed targets do not.
    evil = b"evil" * 600
    art.path.write_bytes(evil)
    manifest = reg.model_dir("tiny", "1.0.0") / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["artifacts"]["full"].update(
        hash="sha256:" + hashlib.sha256(evil).hexdigest(), size=len(evil)
    )
    manifest.write_text(json.dumps(doc))
    with pytest.raises(TamperedMetadataError, match=r"models/tiny/1.0.0/manifest.json") as info:
        modelzoo.install("tiny")
    assert info.value.role == "models/tiny/1.0.0/manifest.json"
    assert modelzoo.list_installed() == []
    # negative control: the same edit, signed by the publisher, is accepted
    signing.sign_registry(reg.root, reg.root.parent / "keys")
    assert modelzoo.install("tiny").paths["full"].read_bytes() == evil


def test_rollback_to_an_older_timestamp_is_refused(signed):
    reg, _, _ = signed
    tuf_dir = reg.root / "tuf"
    old = (tuf_dir / "timestamp.json").read_bytes()
    signing.sign_registry(reg.root, reg.root.parent / "keys")  # timestamp v2
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=tuf_dir / "root.json")
        assert registry.resolve("tiny").version == "1.0.0"  # the client now trusts v2
        (tuf_dir / "timestamp.json").write_bytes(old)  # the server (or a mirror) serves v1
        _forget_client(server.url)
        with pytest.raises(RollbackError, match="timestamp") as info:
            registry.resolve("tiny", refresh=True)
    assert info.value.role == "timestamp" and info.value.attack == "rollback"
    assert "\n" not in str(info.value)


def test_expired_timestamp_is_refused_as_freeze(signed):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        # New versions, but signed three days ago: the timestamp expired two days ago.
        past = datetime.now(UTC) - timedelta(days=3)
        signing.sign_registry(reg.root, reg.root.parent / "keys", now=past)
        _forget_client(server.url)
        with pytest.raises(FreezeError, match=r"timestamp.*expired") as info:
            registry.resolve("tiny", refresh=True)
        assert info.value.attack == "freeze"
        # negative control: signed now, the same client accepts it
        signing.sign_registry(reg.root, reg.root.parent / "keys")
        _forget_client(server.url)
        assert registry.resolve("tiny", refresh=True).version == "1.0.0"


def test_offline_reads_verified_cached_metadata(signed, monkeypatch):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        assert registry.resolve("tiny").version == "1.0.0"
    # the server is gone: offline, the cached metadata is verified again from disk
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    _forget_client(server.url)
    assert registry.resolve("tiny").version == "1.0.0"
    assert [e.name for e in registry.search("tiny")][:1] == ["tiny"]
    # a damaged cached copy of a document is never used (offline, it cannot be refetched)
    from modelzoo.errors import OfflineError

    copy = trust.trust_dir(server.url) / "targets" / "models%2Ftiny%2F1.0.0%2Fmanifest.json"
    copy.write_bytes(copy.read_bytes().replace(b"test model", b"evil model"))
    _forget_client(server.url)
    with pytest.raises(OfflineError):
        registry.resolve("tiny")
    # without the verified listing, the cached metadata is verified again by python-tuf
    (trust.trust_dir(server.url) / "verified.json").unlink()
    cached = trust.trust_dir(server.url) / "metadata" / "timestamp.json"
    doc = json.loads(cached.read_text())
    doc["signed"]["version"] += 5
    cached.write_text(json.dumps(doc))
    _forget_client(server.url)
    with pytest.raises(TamperedMetadataError, match="timestamp"):
        registry.resolve("tiny")


def test_key_rotation_is_followed_by_clients(signed, tmp_path):
    reg, art, result = signed
    with LocalServer(reg.root) as server:
        added = registry.add_registry(server.url, root_sha256=result.root_sha256)
        assert registry.resolve("tiny").version == "1.0.0"
        signing.rotate_keys(
            reg.root, role="timestamp", keys=tmp_path / "keys", root_keys=tmp_path / "rootkeys"
        )
        rotated = signing.rotate_keys(
            reg.root, role="root", keys=tmp_path / "keys", root_keys=tmp_path / "rootkeys"
        )
        assert rotated.versions["root"] == 3
        assert (tmp_path / "keys" / "timestamp.pem").stat().st_mode & 0o777 == 0o600
        assert len(list((tmp_path / "rootkeys").glob("root.pem.retired-*"))) == 1
        _forget_client(server.url)
        assert modelzoo.install("tiny").paths["full"].read_bytes() == art.data
        assert trust.trusted_root(added.location).version == 3
        # the retired timestamp key can no longer sign
        retired = next((tmp_path / "keys").glob("timestamp.pem.retired-*"))
        old_keys = tmp_path / "old-keys"
        old_keys.mkdir()
        for role in ("targets", "snapshot"):
            shutil.copy(tmp_path / "keys" / f"{role}.pem", old_keys)
        shutil.copy(retired, old_keys / "timestamp.pem")
        with pytest.raises(SigningError, match="not a timestamp key"):
            signing.sign_registry(reg.root, old_keys)


def test_signing_with_a_wrong_key_is_refused_by_publisher_and_client(signed, tmp_path):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        assert registry.resolve("tiny").version == "1.0.0"
        # the publisher side: a key folder that is not the registry's
        other = TestRegistry(tmp_path / "other")
        other.publish("x")
        signing.init_registry(other.root, tmp_path / "otherkeys")
        with pytest.raises(SigningError, match="is not a targets key"):
            signing.check_keys(reg.root, tmp_path / "otherkeys")
        with pytest.raises(SigningError):
            signing.sign_registry(reg.root, tmp_path / "otherkeys")
        # the client side: an attacker replaces the metadata with their own keys' signatures
        shutil.rmtree(reg.root / "tuf")
        for p in (tmp_path / "otherkeys").iterdir():
            p.unlink()
        signing.init_registry(reg.root, tmp_path / "otherkeys")
        signing.sign_registry(reg.root, tmp_path / "otherkeys")
        _forget_client(server.url)
        with pytest.raises(TamperedMetadataError, match="signed by a key") as info:
            registry.resolve("tiny", refresh=True)
    assert info.value.role == "timestamp"


def test_mirror_serving_other_bytes_under_the_signed_hash_is_refused(signed, tmp_path, monkeypatch):
    reg, art, _ = signed
    mirror = tmp_path / "mirror"
    (mirror / "models/tiny/1.0.0").mkdir(parents=True)
    (mirror / "models/tiny/1.0.0/full.h5").write_bytes(b"x" * len(art.data))
    with LocalServer(reg.root) as server, LocalServer(mirror) as bad:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        monkeypatch.setenv("MODELZOO_MIRROR", f"{server.url}/={bad.url}/")
        # the mirror is tried first; its bytes fail the signed hash and are deleted
        with pytest.raises(IntegrityError, match="sha256") as info:
            modelzoo.install("tiny")
        assert info.value.url.startswith(bad.url)
        assert "/models/tiny/1.0.0/full.h5" in bad.paths()
        assert modelzoo.list_installed() == []
        # negative control: without the mirror, the origin's signed bytes install
        monkeypatch.delenv("MODELZOO_MIRROR")
        assert modelzoo.install("tiny").paths["full"].read_bytes() == art.data


def test_endless_timestamp_is_refused(signed):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        (reg.root / "tuf" / "timestamp.json").write_bytes(b" " * 100_000)
        _forget_client(server.url)
        with pytest.raises(EndlessDataError, match="endless data"):
            registry.resolve("tiny", refresh=True)


def test_root_sha256_pin_must_match(signed):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        with pytest.raises(TrustError, match="not the pinned") as info:
            registry.add_registry(server.url, root_sha256="0" * 64)
        assert info.value.attack == "root mismatch"
        assert [r.location for r in registry.list_registries() if r.origin == "config"] == []


def test_unsigned_registry_works_and_is_refused_when_signed_required(tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "plain")
    art = reg.publish("plainmodel")["full"]
    registry.add_registry(reg.root)
    assert modelzoo.install("plainmodel").paths["full"].read_bytes() == art.data
    with pytest.raises(UnsignedRegistryError, match="--require-signed"):
        registry.search("plainmodel", require_signed=True)
    monkeypatch.setenv("MODELZOO_REQUIRE_SIGNED", "1")
    with pytest.raises(UnsignedRegistryError):
        modelzoo.install("plainmodel@1.0.0", force=True)


def test_cli_worked_example_init_add_install_and_require_signed(tmp_path):
    from typer.testing import CliRunner

    from modelzoo.cli import app

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    reg = TestRegistry(tmp_path / "reg")
    art = reg.publish("tiny")["full"]
    plain = TestRegistry(tmp_path / "plain")
    plain.publish("plainmodel")
    res = run(
        "registry",
        "init",
        reg.root,
        "--keys",
        tmp_path / "keys",
        "--root-keys",
        tmp_path / "rootkeys",
        "--expires",
        "timestamp=2",
        "--json",
    )
    assert res.exit_code == 0, res.output
    pin = json.loads(res.stdout)["root_sha256"]
    timestamp = json.loads((reg.root / "tuf" / "timestamp.json").read_text())["signed"]
    assert timestamp["expires"] > (datetime.now(UTC) + timedelta(days=1, hours=23)).isoformat()
    with LocalServer(reg.root) as server:
        res = run("registry", "add", server.url, "--name", "signedreg", "--root-sha256", pin)
        assert res.exit_code == 0 and "signed" in res.stdout, res.output
        listed = json.loads(run("registry", "list", "--json").stdout)
        assert [r["signed"] for r in listed if r["name"] == "signedreg"] == [True]
        res = run("install", "tiny", "--require-signed", "--json")
        assert res.exit_code == 0, res.output
        assert Path(json.loads(res.stdout)[0]["records"]["full"]["path"]).read_bytes() == art.data
        run("registry", "add", plain.root)
        res = run("search", "plainmodel", "--require-signed")
        assert res.exit_code != 0
        assert "is not signed" in res.output and len(res.output.strip().splitlines()) == 1
        assert run("search", "plainmodel").exit_code == 0
        res = run("registry", "sign", reg.root, "--keys", tmp_path / "rootkeys")
        assert res.exit_code != 0 and "No targets key" in res.output
        res = run(
            "registry",
            "rotate-keys",
            reg.root,
            "--role",
            "targets",
            "--keys",
            tmp_path / "keys",
            "--root-keys",
            tmp_path / "rootkeys",
        )
        assert res.exit_code == 0 and "root v2" in res.stdout, res.output
        _forget_client(server.url)
        assert run("registry", "remove", "plain").exit_code == 0
        res = run("info", "tiny", "--refresh", "--require-signed")
        assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------- lockfile


def _project(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "modelzoo.toml").write_text('[models]\n"tiny" = "^1"\n', encoding="utf-8")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MODELZOO_PROJECT", raising=False)
    return root


def _fresh_machine(tmp_path, monkeypatch, name: str):
    """Another machine: an empty MODELZOO_HOME (no cache, no registries, no trust)."""
    from modelzoo.hub.cache import Cache

    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / name))
    trust._readers.clear()
    return Cache()


def test_lock_pins_the_root_and_frozen_verifies_it_on_a_fresh_machine(
    signed, tmp_path, monkeypatch
):
    from modelzoo.hub import project as mp

    reg, art, result = signed
    root = _project(tmp_path, monkeypatch)
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        mp.install_project()
        doc = json.loads((root / "modelzoo.lock").read_text())["models"]["tiny"]
        assert doc["root"] == {"version": 1, "sha256": result.root_sha256}
        manifest_sha = hashlib.sha256(
            (reg.model_dir("tiny", "1.0.0") / "manifest.json").read_bytes()
        ).hexdigest()
        assert doc["signed_targets"] == {
            "artifacts/tiny/1.0.0/full": art.sha256,
            "models/tiny/1.0.0/manifest.json": manifest_sha,
        }
        # CI: nothing configured; the lock alone brings the pinned root, then TUF
        cache = _fresh_machine(tmp_path, monkeypatch, "ci")
        installed = mp.install_project(frozen=True)
        assert installed.installed == ("tiny@1.0.0 (full)",)
        assert cache.installed()[0].path.read_bytes() == art.data
        assert trust.trusted_root(server.url).sha256 == result.root_sha256
        assert "/tuf/1.root.json" in server.paths()


def test_frozen_install_with_a_root_other_than_the_lock_installs_nothing(
    signed, tmp_path, monkeypatch
):
    from modelzoo.errors import RootMismatchError
    from modelzoo.hub import project as mp

    reg, _, _ = signed
    root = _project(tmp_path, monkeypatch)
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        mp.install_project()
        lock = (root / "modelzoo.lock").read_text()
        # the registry is replaced by one signed with other keys (its own root v1)
        shutil.rmtree(reg.root / "tuf")
        signing.init_registry(reg.root, tmp_path / "attacker-keys")
        cache = _fresh_machine(tmp_path, monkeypatch, "ci")
        with pytest.raises(RootMismatchError, match="modelzoo.lock pins") as info:
            mp.install_project(frozen=True)
        assert info.value.role == "root" and "\n" not in str(info.value)
        assert cache.records() == [] and not trust.is_established(server.url)
        # a machine that trusts another root than the lock refuses even with the bytes cached
        _fresh_machine(tmp_path, monkeypatch, "dev")
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        (root / "modelzoo.lock").write_text(lock)
        with pytest.raises(RootMismatchError, match="different root history"):
            mp.install_project(frozen=True)


# --------------------------------------------------------------------------- bundles


def _rewrite_bundle(src: Path, dst: Path, change) -> None:
    """Copy a bundle, letting ``change(members)`` edit it; SHA256SUMS is recomputed, as an
    attacker who can change the archive would."""
    import io
    import tarfile

    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    change(members)
    members.pop("SHA256SUMS")
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(members.items()))
    members["SHA256SUMS"] = sums.encode()
    with tarfile.open(dst, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_pack_carries_tuf_metadata_and_unpack_verifies_signatures(signed, tmp_path, monkeypatch):
    from modelzoo.hub import bundle
    from modelzoo.hub import project as mp

    reg, art, result = signed
    root = _project(tmp_path, monkeypatch)
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        mp.install_project()
        packed = bundle.pack(output=tmp_path / "b.tar", lock=root / "modelzoo.lock")
    import tarfile

    with tarfile.open(packed.path) as tar:
        names = tar.getnames()
    assert any(n.startswith("tuf/") and n.endswith("/1.root.json") for n in names)
    assert any(n.endswith("/targets.json") for n in names)

    # the air-gapped machine: no network, no registries, only the bundle and the lock
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    cache = _fresh_machine(tmp_path, monkeypatch, "airgap")
    done = bundle.unpack(packed.path, lock=root / "modelzoo.lock")
    assert done.signed == ("tiny@1.0.0",) and done.installed == ("tiny@1.0.0 (full)",)
    assert cache.installed()[0].path.read_bytes() == art.data

    # a bundle whose manifest was edited (sums recomputed) fails the signatures
    def edit(members):
        key = "models/tiny/1.0.0/manifest.json"
        doc = json.loads(members[key])
        doc["summary"] = "trust me"
        members[key] = json.dumps(doc).encode()

    _rewrite_bundle(packed.path, tmp_path / "edited.tar", edit)
    cache = _fresh_machine(tmp_path, monkeypatch, "airgap2")
    with pytest.raises(IntegrityError, match="is not the signed target"):
        bundle.unpack(tmp_path / "edited.tar", trusted_roots=[result.root_sha256])
    assert cache.records() == []
    # another root than the pinned one: refused; no anchor at all: a warning, not "signed"
    with pytest.raises(IntegrityError, match="is the trusted one"):
        bundle.unpack(packed.path, trusted_roots=["ab" * 32])
    assert cache.records() == []
    assert bundle.unpack(packed.path).signed == ()
    _fresh_machine(tmp_path, monkeypatch, "airgap3")
    monkeypatch.setenv("MODELZOO_REQUIRE_SIGNED", "1")
    with pytest.raises(IntegrityError, match="chains to no trusted root"):
        bundle.unpack(packed.path)


def test_revalidating_an_unchanged_http_registry_costs_one_conditional_request(signed):
    reg, _, _ = signed
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        assert registry.resolve("tiny").version == "1.0.0"
        _forget_client(server.url)
        before = len(server.requests)
        assert registry.resolve("tiny", revalidate=True).version == "1.0.0"
        # the verified timestamp is unchanged (a conditional GET answered 304): nothing else
        assert server.paths()[before:] == ["/tuf/timestamp.json"]
        assert server.requests[-1].headers.get("If-None-Match")
        assert server.not_modified >= 1
        # once it changes, the full TUF workflow runs again (and fetches the new snapshot)
        signing.sign_registry(reg.root, reg.root.parent / "keys")
        _forget_client(server.url)
        before = len(server.requests)
        assert registry.resolve("tiny", revalidate=True).version == "1.0.0"
        assert "/tuf/2.snapshot.json" in server.paths()[before:]


def test_cached_metadata_that_expires_is_refused_offline_saying_when(tmp_path, monkeypatch):
    import time

    reg = TestRegistry(tmp_path / "reg")
    reg.publish("tiny")
    # a short-lived timestamp (the signing side's clock): valid when added, expired soon
    signing.init_registry(reg.root, tmp_path / "keys", expires={"timestamp": timedelta(seconds=2)})
    expires = json.loads((reg.root / "tuf" / "timestamp.json").read_text())["signed"]["expires"]
    with LocalServer(reg.root) as server:
        registry.add_registry(server.url, trust=reg.root / "tuf" / "root.json")
        assert registry.resolve("tiny").version == "1.0.0"
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    _forget_client(server.url)
    assert registry.resolve("tiny").version == "1.0.0"  # still valid: read offline
    left = datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(UTC)
    time.sleep(max(0.0, left.total_seconds()) + 0.2)
    _forget_client(server.url)
    with pytest.raises(FreezeError, match=r"expired on .* hour\(s\) ago\) and offline mode"):
        registry.resolve("tiny")


def test_older_targets_under_the_new_version_name_is_mix_and_match(signed):
    reg, _, _ = signed
    tuf_dir = reg.root / "tuf"
    signing.sign_registry(reg.root, reg.root.parent / "keys")  # targets v2, snapshot v2
    with LocalServer(reg.root) as server:
        # validly signed, but an older targets served where snapshot v2 names v2
        (tuf_dir / "2.targets.json").write_bytes((tuf_dir / "1.targets.json").read_bytes())
        with pytest.raises(TrustError) as info:
            registry.add_registry(server.url, trust=tuf_dir / "root.json")
    assert info.value.attack == "mix-and-match" and info.value.role == "targets"


def test_reading_fresh_verified_metadata_does_not_import_tuf(signed, _isolated_home):
    """search/info on a signed registry stay as light as on an unsigned one while fresh."""
    import os
    import subprocess
    import sys

    reg, _, _ = signed
    registry.add_registry(reg.root, trust=reg.root / "tuf" / "root.json")
    assert registry.resolve("tiny").version == "1.0.0"  # verified once, through python-tuf
    probe = (
        "import sys, json; from modelzoo.hub import registry\n"
        "r = registry.resolve('tiny'); hits = registry.search('tiny')\n"
        "print(json.dumps([r.version, [h.name for h in hits][:1], 'tuf' in sys.modules]))\n"
    )
    env = {**os.environ, "MODELZOO_HOME": str(_isolated_home)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == ["1.0.0", ["tiny"], False]
    # negative control: once the folder is signed again, the next read verifies with tuf
    signing.sign_registry(reg.root, reg.root.parent / "keys")
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == ["1.0.0", ["tiny"], True]
