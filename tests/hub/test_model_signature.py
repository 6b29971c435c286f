"""Publisher signatures in the OpenSSF model-signing (OMS) format, end to end.

Real EC keys (made here with cryptography), real bundles (model_signing), a registry served
over real HTTP, installs into the test's own cache, and the CLI. Nothing of ours is mocked.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry
from _server import LocalServer
from typer.testing import CliRunner

import modelzoo
from modelzoo.cli import app
from modelzoo.errors import DependencyError, IntegrityError, NotInstalledError, SignatureError
from modelzoo.hub.bundle import pack, unpack
from modelzoo.hub.cache import Cache
from modelzoo.hub.model_signature import INSTALL_HINT, OmsSigner, verify_signature

pytest.importorskip("model_signing", reason="needs modelzoo[signing]")


def _keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh P-256 key: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = folder / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def keys(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    return {
        "publisher": _keypair(folder, "publisher"),
        "stranger": _keypair(folder, "stranger"),
    }


@pytest.fixture
def server(tmp_path):
    with LocalServer(tmp_path / "registry") as srv:
        yield srv


@pytest.fixture
def reg(tmp_path, server, monkeypatch):
    """A registry folder served over HTTP, and the only registry consulted."""
    registry = TestRegistry(tmp_path / "registry", base_url=server.url)
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    return registry


def _sign(reg: TestRegistry, name: str, private_key: Path, *, bundle_of: str | None = None):
    """Sign ``name``'s full artifact (or put ``bundle_of``'s bundle in its place) and list
    the bundle in the manifest with its sha256, as publish --oms-key does."""
    folder = reg.model_dir(name, "1.0.0")
    artifact = folder / "full.h5"
    bundle = folder / "full.h5.sig"
    if bundle_of is None:
        OmsSigner(private_key).sign(artifact, bundle)
    else:
        bundle.write_bytes((reg.model_dir(bundle_of, "1.0.0") / "full.h5.sig").read_bytes())
    doc = json.loads((folder / "manifest.json").read_text())
    doc["artifacts"]["full"]["signature"] = {
        "url": bundle.name,
        "hash": "sha256:" + hashlib.sha256(bundle.read_bytes()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2))
    reg.write_index()
    return bundle


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# --------------------------------------------------------------------------- install + verify


def test_install_fetches_the_bundle_and_verify_accepts_the_publishers_key(reg, server, keys):
    private, public = keys["publisher"]
    reg.publish("tiny", variants={"full": 50_000})
    bundle = _sign(reg, "tiny", private)

    result = modelzoo.install("tiny")
    rec = result.records["full"]
    assert rec.signature_sha256 == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert rec.signature_path.read_bytes() == bundle.read_bytes()
    assert rec.signature_path.name == f"{rec.signature_sha256}.sig"
    assert "/models/tiny/1.0.0/full.h5.sig" in server.paths("GET")
    # the record on disk names the bundle too (a fresh read, not the object install returned)
    assert Cache().record("tiny", "1.0.0", "full").signature_path == rec.signature_path

    checks = verify_signature("tiny", public_key=public)
    assert [(c.record.spec, c.record.variant, c.bundle) for c in checks] == [
        ("tiny@1.0.0", "full", rec.signature_path)
    ]
    # verified in place: the blob is named by its hash, not the signed file name
    assert checks[0].record.path.name == f"{rec.sha256}.h5"

    text = run("verify", "tiny", "--signature", "--public-key", str(public))
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("signed   tiny@1.0.0 (full): OMS signature verified with")
    as_json = run("verify", "tiny@1.0.0", "--signature", "--public-key", str(public), "--json")
    assert as_json.exit_code == 0, as_json.output
    (row,) = json.loads(as_json.stdout)
    assert (row["model"], row["variant"], row["status"]) == ("tiny@1.0.0", "full", "ok")
    assert row["bundle"] == str(rec.signature_path) and row["public_key"] == str(public)


def test_another_key_is_refused(reg, keys):
    reg.publish("tiny", variants={"full": 50_000})
    _sign(reg, "tiny", keys["publisher"][0])
    modelzoo.install("tiny")
    stranger = keys["stranger"][1]
    with pytest.raises(SignatureError, match="signed with another key") as info:
        verify_signature("tiny", public_key=stranger)
    assert isinstance(info.value, IntegrityError)
    assert (info.value.name, info.value.variant) == ("tiny@1.0.0", "full")
    line = _one_error_line(run("verify", "tiny", "--signature", "--public-key", str(stranger)))
    assert "tiny@1.0.0 (full): the OMS signature does not verify with" in line


def test_a_bundle_naming_our_key_but_signed_by_another_is_refused(reg, keys):
    # The key hint is not the check: a bundle claiming the publisher's key hint but
    # signed by a stranger must fail on the signature itself.
    reg.publish("tiny", variants={"full": 50_000})
    bundle = _sign(reg, "tiny", keys["stranger"][0])
    public = keys["publisher"][1]
    hint = hashlib.sha256(public.read_bytes()).hexdigest()
    forged = json.loads(bundle.read_text())
    assert forged["verificationMaterial"]["publicKey"]["hint"] != hint  # negative control
    forged["verificationMaterial"]["publicKey"]["hint"] = hint
    bundle.write_text(json.dumps(forged))
    _sign(reg, "tiny", keys["stranger"][0], bundle_of="tiny")  # re-list its new hash
    modelzoo.install("tiny")
    with pytest.raises(SignatureError, match="not valid for this key"):
        verify_signature("tiny", public_key=public)


def test_a_bundle_that_signs_other_bytes_is_refused(reg, keys):
    private, public = keys["publisher"]
    reg.publish("tiny", variants={"full": 50_000})
    reg.publish("other", variants={"full": 50_000})
    _sign(reg, "other", private)
    _sign(reg, "tiny", private, bundle_of="other")  # other's bundle, its hash listed for tiny
    modelzoo.install("other")
    assert verify_signature("other", public_key=public)  # the bundle itself is good
    modelzoo.install("tiny")
    with pytest.raises(SignatureError, match="signs other bytes than this file"):
        verify_signature("tiny", public_key=public)
    line = _one_error_line(run("verify", "tiny", "--signature", "--public-key", str(public)))
    assert "tiny@1.0.0 (full)" in line and "signs other bytes" in line


def test_an_installed_file_changed_after_signing_is_refused(reg, keys):
    private, public = keys["publisher"]
    reg.publish("tiny", variants={"full": 50_000})
    _sign(reg, "tiny", private)
    rec = modelzoo.install("tiny").records["full"]
    verify_signature("tiny", public_key=public)
    rec.path.chmod(0o644)
    with rec.path.open("r+b") as fh:
        fh.write(b"\x00")
    with pytest.raises(SignatureError, match="signs other bytes"):
        verify_signature("tiny", public_key=public)


def test_a_bundle_that_differs_from_the_manifest_hash_is_never_installed(reg, keys):
    reg.publish("tiny", variants={"full": 50_000})
    bundle = _sign(reg, "tiny", keys["publisher"][0])
    bundle.write_bytes(bundle.read_bytes().replace(b"}", b" }", 1))  # swapped on the server
    with pytest.raises(IntegrityError, match="full.h5.sig"):
        modelzoo.install("tiny")
    cache = Cache()
    assert cache.records() == []
    assert not cache.blobs_dir.exists() or not any(cache.blobs_dir.iterdir())


def test_a_manifest_without_a_signature_says_so(reg, keys):
    reg.publish("plain", variants={"full": 50_000})
    rec = modelzoo.install("plain").records["full"]
    assert (rec.signature_sha256, rec.signature_path) == (None, None)
    with pytest.raises(SignatureError, match="No OMS bundle for plain@1.0.0's full"):
        verify_signature("plain", public_key=keys["publisher"][1])
    public = str(keys["publisher"][1])
    line = _one_error_line(run("verify", "plain", "--signature", "--public-key", public))
    assert "No OMS bundle for plain@1.0.0's full" in line


def test_verify_signature_needs_a_name_a_key_and_an_install(reg, keys, tmp_path):
    public = str(keys["publisher"][1])
    assert "--public-key KEY.pem" in _one_error_line(run("verify", "tiny", "--signature"))
    assert "NAME --signature" in _one_error_line(
        run("verify", "--signature", "--public-key", public)
    )
    with pytest.raises(NotInstalledError, match="tiny is not installed"):
        verify_signature("tiny", public_key=public)
    reg.publish("tiny", variants={"full": 50_000})
    _sign(reg, "tiny", keys["publisher"][0])
    modelzoo.install("tiny")
    not_a_key = tmp_path / "junk.pub"
    not_a_key.write_text("not a key\n")
    assert "cannot verify" in _one_error_line(
        run("verify", "tiny", "--signature", "--public-key", str(not_a_key))
    )


def test_prune_keeps_the_bundle_and_remove_deletes_it(reg, keys):
    reg.publish("tiny", variants={"full": 50_000})
    _sign(reg, "tiny", keys["publisher"][0])
    rec = modelzoo.install("tiny").records["full"]
    assert Cache().prune().blobs == ()
    assert rec.signature_path.is_file()
    modelzoo.remove("tiny")
    assert not rec.signature_path.exists() and not rec.path.exists()


# --------------------------------------------------------------------------- air-gapped bundles


def _packed_over_http(reg, keys, tmp_path, server):
    """tiny@1.0.0 published with an OMS bundle, installed over HTTP, packed; the install."""
    reg.publish("tiny", variants={"full": 50_000})
    published = _sign(reg, "tiny", keys["publisher"][0])
    rec = modelzoo.install("tiny").records["full"]
    assert "/models/tiny/1.0.0/full.h5.sig" in server.paths("GET")
    bundle = pack(["tiny"], output=tmp_path / "models.tar.gz").path
    return bundle, rec, published.read_bytes()


def _air_gapped(tmp_path, monkeypatch, name: str = "airgap") -> Cache:
    """A fresh MODELZOO_HOME with no registry and no network."""
    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / name))
    monkeypatch.delenv("MODELZOO_REGISTRY", raising=False)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    return Cache()


def _rewrite(bundle: Path, out: Path, change) -> Path:
    """``bundle``'s members, changed by ``change({name: bytes})``, with SHA256SUMS made to
    match them again, written to the plain tar ``out``."""
    with tarfile.open(bundle) as tar:
        entries = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    change(entries)
    del entries["SHA256SUMS"]
    entries["SHA256SUMS"] = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in entries.items()
    ).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def _index(entries: dict) -> dict:
    return json.loads(entries["bundle.json"])["models"]["tiny@1.0.0"]["artifacts"]["full"]


def _set_signature(entries: dict, data: bytes | None) -> None:
    """Replace the bundle's OMS bundle with ``data`` (renamed to its hash), or drop it."""
    doc = json.loads(entries["bundle.json"])
    art = doc["models"]["tiny@1.0.0"]["artifacts"]["full"]
    entries.pop(art.pop("signature", None), None)
    if data is not None:
        art["signature"] = f"blobs/{hashlib.sha256(data).hexdigest()}.sig"
        entries[art["signature"]] = data
    entries["bundle.json"] = json.dumps(doc, indent=2, sort_keys=True).encode()


def test_pack_carries_the_oms_bundle_and_unpack_installs_it(
    reg, server, keys, tmp_path, monkeypatch
):
    bundle, online, sig = _packed_over_http(reg, keys, tmp_path, server)
    with tarfile.open(bundle) as tar:
        entries = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    member = f"blobs/{online.signature_sha256}.sig"
    assert entries[member] == sig and _index(entries)["signature"] == member
    assert f"{online.signature_sha256}  {member}" in entries["SHA256SUMS"].decode().splitlines()
    requests = len(server.paths("GET"))

    cache = _air_gapped(tmp_path, monkeypatch)
    result = unpack(bundle)
    assert result.installed == ("tiny@1.0.0 (full)",)
    rec = cache.record("tiny", "1.0.0", "full")  # read back from disk
    assert rec.signature_sha256 == online.signature_sha256
    assert rec.signature_path == cache.blob_path(online.signature_sha256, ".sig")
    assert rec.signature_path.read_bytes() == sig
    assert rec.registry == "bundle:models.tar.gz"
    public, stranger = keys["publisher"][1], keys["stranger"][1]
    (check,) = verify_signature("tiny", public_key=public)
    assert (check.record.spec, check.bundle) == ("tiny@1.0.0", rec.signature_path)
    text = run("verify", "tiny", "--signature", "--public-key", str(public))
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("signed   tiny@1.0.0 (full): OMS signature verified with")
    with pytest.raises(SignatureError, match="signed with another key"):
        verify_signature("tiny", public_key=stranger)
    assert len(server.paths("GET")) == requests  # nothing fetched: it came from the bundle
    assert unpack(bundle).already == ("tiny@1.0.0 (full)",)  # again: nothing to add


def test_unpack_refuses_an_oms_bundle_that_is_not_the_manifests(
    reg, server, keys, tmp_path, monkeypatch
):
    bundle, _, sig = _packed_over_http(reg, keys, tmp_path, server)
    forged = sig.replace(b"}", b" }", 1)  # other bytes; member, index and SHA256SUMS agree
    bad = _rewrite(bundle, tmp_path / "forged.tar", lambda e: _set_signature(e, forged))
    cache = _air_gapped(tmp_path, monkeypatch)
    with pytest.raises(
        IntegrityError, match="but the manifest's signature hash is sha256:"
    ) as info:
        unpack(bad)
    assert "Nothing was installed" in str(info.value)
    assert cache.records() == []
    assert not cache.blobs_dir.exists() or list(cache.blobs_dir.iterdir()) == []
    line = _one_error_line(run("unpack", str(bad)))
    assert "Refusing bundle" in line and hashlib.sha256(forged).hexdigest() in line


def test_a_bundle_without_oms_bundles_unpacks_and_a_later_one_adds_them(
    reg, server, keys, tmp_path, monkeypatch
):
    bundle, online, _ = _packed_over_http(reg, keys, tmp_path, server)
    old = _rewrite(bundle, tmp_path / "old.tar", lambda e: _set_signature(e, None))
    with tarfile.open(old) as tar:  # as packed before OMS bundles travelled
        assert not any(name.endswith(".sig") for name in tar.getnames())
    cache = _air_gapped(tmp_path, monkeypatch)
    assert unpack(old).installed == ("tiny@1.0.0 (full)",)
    rec = cache.record("tiny", "1.0.0", "full")
    assert (rec.signature_sha256, rec.signature_path) == (None, None)
    assert rec.path.read_bytes() == online.path.read_bytes()
    public = keys["publisher"][1]
    with pytest.raises(SignatureError, match="its OMS bundle is not in the cache"):
        verify_signature("tiny", public_key=public)
    line = _one_error_line(run("verify", "tiny", "--signature", "--public-key", str(public)))
    assert "tiny@1.0.0 (full): its OMS bundle is not in the cache" in line

    # a bundle that carries it completes the install, still offline
    assert unpack(bundle).installed == ("tiny@1.0.0 (full)",)
    assert cache.record("tiny", "1.0.0", "full").signature_sha256 == online.signature_sha256
    assert verify_signature("tiny", public_key=public)


def test_pack_refuses_an_install_whose_oms_bundle_is_gone(reg, server, keys, tmp_path):
    _, rec, _ = _packed_over_http(reg, keys, tmp_path, server)
    rec.signature_path.unlink()
    out = tmp_path / "again.tar"
    with pytest.raises(IntegrityError, match="OMS signature bundle .* is missing") as info:
        pack(["tiny"], output=out)
    assert "modelzoo install tiny@1.0.0 --variant full --force" in str(info.value)
    assert not out.exists()
    line = _one_error_line(run("pack", "tiny", "-o", str(out)))
    assert "is missing or not the one its manifest lists" in line


# --------------------------------------------------------------------------- the extra


def test_without_the_extra_every_entry_point_names_it(reg, keys, tmp_path, monkeypatch):
    reg.publish("tiny", variants={"full": 50_000})
    _sign(reg, "tiny", keys["publisher"][0])
    modelzoo.install("tiny")  # installing needs no model_signing: only checking does
    monkeypatch.setitem(sys.modules, "model_signing", None)
    with pytest.raises(DependencyError, match=r"pip install 'modelzoo\[signing\]'"):
        verify_signature("tiny", public_key=keys["publisher"][1])
    line = _one_error_line(
        run("verify", "tiny", "--signature", "--public-key", str(keys["publisher"][1]))
    )
    assert INSTALL_HINT in line
    # publish refuses before writing anything (the key is read first)
    line, target = _publish_with_key(tmp_path, keys["publisher"][0])
    assert INSTALL_HINT in line
    assert not target.exists()


def _publish_with_key(tmp_path: Path, key: Path) -> tuple[str, Path]:
    """``modelzoo publish --oms-key key`` of a placeholder file into a new registry folder,
    expected to fail: its one error line and the folder it must not have created."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"checked later")
    target = tmp_path / "new-registry"
    line = _one_error_line(
        run(
            "publish", str(model), "--name", "x", "--version", "1.0.0",
            "--registry", str(target), "--oms-key", str(key),
        )
    )  # fmt: skip
    return line, target


def test_publish_refuses_a_key_that_cannot_sign_before_writing(keys, tmp_path):
    line, target = _publish_with_key(tmp_path, keys["publisher"][1])
    assert "publisher.pub cannot sign" in line and "elliptic-curve key in PEM" in line
    assert not target.exists()


# --------------------------------------------------------------------------- publish (TF)


@pytest.mark.tf
def test_publish_oms_key_install_over_http_and_verify(keys, tmp_path, monkeypatch):
    from modelzoo.backend import keras

    k = keras()
    inp = k.Input((8, 8, 3), name="image")
    out = k.layers.Dense(2, activation="softmax", name="probs")(k.layers.Flatten()(inp))
    saved = tmp_path / "tiny.keras"
    k.Model(inp, out, name="tiny_net").save(saved)
    private, public = keys["publisher"]
    root = tmp_path / "zoo"

    published = run(
        "publish", str(saved), "--name", "tiny-net", "--version", "1.0.0",
        "--registry", str(root), "--oms-key", str(private), "--no-golden", "--json",
    )  # fmt: skip
    assert published.exit_code == 0, published.output
    info = json.loads(published.stdout)
    folder = root / "models" / "tiny-net" / "1.0.0"
    bundle = folder / "tiny-net.keras.sig"
    assert info["signature"] == str(bundle)
    doc = json.loads((folder / "manifest.json").read_text())
    assert doc["artifacts"]["full"]["signature"] == {
        "url": "tiny-net.keras.sig",
        "hash": "sha256:" + hashlib.sha256(bundle.read_bytes()).hexdigest(),
    }
    # the bundle's statement names the published file (informative) and its sha256
    envelope = json.loads(bundle.read_text())["dsseEnvelope"]
    import base64

    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["name"] == "tiny-net.keras"
    assert statement["predicate"]["resources"][0]["digest"] == info["sha256"]

    with LocalServer(root) as server:
        monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
        installed = run("install", "tiny-net", "--json")
        assert installed.exit_code == 0, installed.output
    ok = run("verify", "tiny-net", "--signature", "--public-key", str(public), "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["status"] == "ok"
    bad = run("verify", "tiny-net", "--signature", "--public-key", str(keys["stranger"][1]))
    assert "signed with another key" in _one_error_line(bad)
    assert modelzoo.load("tiny-net").output_shape == (None, 2)
