"""Issue 10: the weights you load are the bytes the manifest names, and nothing hangs or leaks.

Real tiny MobileNets (alpha 0.25, 32x32) with distinct random weights, published without
hashes in a local registry whose artifact URLs point at a real local HTTP server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _server import LocalServer

import modelzoo
from modelzoo import registry
from modelzoo.cache import Cache

KWARGS = {"alpha": 0.25, "input_shape": [32, 32, 3], "classes": 3}


def _app_manifest(name: str, version: str, artifacts: dict) -> dict:
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "family": "MobileNet",
        "summary": "tiny MobileNet for integrity tests",
        "input": {"shape": [32, 32, 3], "min_size": 32, "preprocessing": "tf"},
        "build": {"kind": "keras-application", "constructor": "MobileNet", "kwargs": KWARGS},
        "artifacts": artifacts,
        "cut_points": [{"layer": "conv_pw_13_relu", "shape": [1, 1, 256], "variant": "notop"}],
    }


def _save_weights(path: Path, *, seed: int, include_top: bool) -> list[np.ndarray]:
    """Random MobileNet weights for ``seed``, saved the way official Keras weights are."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    kwargs = dict(KWARGS, input_shape=tuple(KWARGS["input_shape"]))
    model = keras.applications.MobileNet(include_top=include_top, weights=None, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return model.get_weights()


@pytest.fixture(scope="module")
def hashless(tmp_path_factory):
    """A registry of unhashed artifacts: three models/versions/variants, distinct weights.

    ``alpha@1.0.0`` has ``full`` and ``notop``; ``alpha@1.1.0`` and ``beta@1.0.0`` have
    ``notop`` only. Every file has the same suffix and no published hash.
    """
    root = tmp_path_factory.mktemp("hashless")
    layout = {
        ("alpha", "1.0.0"): {"full": 1, "notop": 2},
        ("alpha", "1.1.0"): {"notop": 3},
        ("beta", "1.0.0"): {"notop": 4},
    }
    weights = {}
    for (name, version), variants in layout.items():
        folder = root / "models" / name / version
        artifacts = {}
        for variant, seed in variants.items():
            weights[name, version, variant] = _save_weights(
                folder / f"{variant}.h5", seed=seed, include_top=variant == "full"
            )
            # filled with the server's URL by the `apps` fixture
            artifacts[variant] = {"url": f"{variant}.h5", "format": "h5-weights", "hash": None}
        doc = _app_manifest(name, version, artifacts)
        (folder / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    return root, weights


@pytest.fixture
def apps(hashless, tmp_path, monkeypatch):
    """Serve the hashless registry; its manifests name absolute http:// artifact URLs."""
    source, weights = hashless
    with LocalServer(source) as server:
        reg = tmp_path / "reg"
        for manifest in source.glob("models/*/*/manifest.json"):
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            rel = manifest.parent.relative_to(source).as_posix()
            for art in doc["artifacts"].values():
                art["url"] = f"{server.url}/{rel}/{Path(art['url']).name}"
            target = reg / rel / "manifest.json"
            target.parent.mkdir(parents=True)
            target.write_text(json.dumps(doc), encoding="utf-8")
        registry.write_index(reg)
        monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
        yield server, weights


def _gets(server, suffix=".h5") -> list[str]:
    return [p for p in server.paths("GET") if p.endswith(suffix)]


def _assert_weights(model, expected: list[np.ndarray]) -> None:
    got = model.get_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- defect 1


def test_two_unhashed_artifacts_of_different_models_are_never_shared(apps):
    server, weights = apps
    a = modelzoo.install("alpha@1.0.0", variant="notop")
    b = modelzoo.install("beta", variant="notop")
    assert a.fetched == ("notop",) and b.fetched == ("notop",)
    assert _gets(server) == ["/models/alpha/1.0.0/notop.h5", "/models/beta/1.0.0/notop.h5"]
    ra, rb = a.records["notop"], b.records["notop"]
    assert ra.sha256 != rb.sha256 and ra.path != rb.path
    model_b = modelzoo.load("beta", cut="conv_pw_13_relu")
    _assert_weights(model_b, weights["beta", "1.0.0", "notop"])


def test_three_unhashed_artifacts_across_variants_and_versions(apps):
    server, weights = apps
    specs = [("alpha@1.0.0", "full"), ("alpha@1.1.0", "notop"), ("alpha@1.0.0", "notop")]
    records = [modelzoo.install(spec, variant=v).records[v] for spec, v in specs]
    assert sorted(_gets(server)) == [
        "/models/alpha/1.0.0/full.h5",
        "/models/alpha/1.0.0/notop.h5",
        "/models/alpha/1.1.0/notop.h5",
    ]
    assert len({r.sha256 for r in records}) == 3
    assert len(list(Cache().blobs_dir.rglob("*.h5"))) == 3
    assert [r.status for r in modelzoo.verify()] == ["ok"] * 3
    old = modelzoo.load("alpha@1.0.0", cut="conv_pw_13_relu")
    new = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    _assert_weights(old, weights["alpha", "1.0.0", "notop"])
    _assert_weights(new, weights["alpha", "1.1.0", "notop"])
    assert not np.array_equal(old.get_weights()[0], new.get_weights()[0])
    full = modelzoo.load("alpha@1.0.0", include_top=True)
    _assert_weights(full, weights["alpha", "1.0.0", "full"])


def test_dry_run_does_not_count_another_unhashed_file_as_cached(apps):
    server, _ = apps
    modelzoo.install("alpha@1.0.0", variant="notop")
    plan = modelzoo.install("beta", variant="notop", dry_run=True).planned["notop"]
    assert (plan.cached, plan.action, plan.path) == (False, "download", None)


# --------------------------------------------------------------------------- defect 2


def _flip_a_weight_byte(path: Path, dataset: str = "conv1/conv1/kernel:0") -> None:
    """Flip one byte inside a weight array of an HDF5 weights file, keeping its size."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    assert offset is not None  # contiguous storage: the array's bytes are at this offset
    size = path.stat().st_size
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert path.stat().st_size == size


def test_a_corrupted_blob_is_refused_on_load_and_install_force_repairs_it(apps, monkeypatch):
    from modelzoo.errors import IntegrityError

    _, weights = apps
    rec = modelzoo.install("alpha@1.1.0", variant="notop").records["notop"]
    _flip_a_weight_byte(rec.path)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(IntegrityError) as caught:
        modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    message = str(caught.value)
    assert str(rec.path) in message and "modelzoo install alpha@1.1.0 --force" in message
    assert "\n" not in message and caught.value.path == str(rec.path)
    # negative control: the flipped byte really is inside the weights
    monkeypatch.setenv("MODELZOO_TRUST_CACHE", "1")
    trusted = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    assert not np.array_equal(trusted.get_weights()[0], weights["alpha", "1.1.0", "notop"][0])
    monkeypatch.delenv("MODELZOO_TRUST_CACHE")
    monkeypatch.delenv("MODELZOO_OFFLINE")
    modelzoo.install("alpha@1.1.0", variant="notop", force=True)
    repaired = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    _assert_weights(repaired, weights["alpha", "1.1.0", "notop"])


def test_verify_on_load_also_checks_when_the_scan_is_skipped(apps):
    from modelzoo.errors import IntegrityError

    rec = modelzoo.install("beta", variant="notop").records["notop"]
    _flip_a_weight_byte(rec.path)
    with pytest.raises(IntegrityError, match="modelzoo install beta@1.0.0 --force"):
        modelzoo.load("beta", cut="conv_pw_13_relu", trust_remote_code=True)


# --------------------------------------------------------------------------- defect 5: validation

_SHA = "ab" * 32


def test_uppercase_hex_is_accepted_and_normalised():
    from modelzoo.manifest import Hash, parse_hash

    assert parse_hash("sha256:" + _SHA.upper()) == Hash("sha256", _SHA)
    assert parse_hash("MD5:" + "C" * 32) == Hash("md5", "c" * 32)


@pytest.mark.parametrize("bad", [f"sha256:{_SHA}\n", f"sha256:{_SHA} ", "md5:" + "a" * 31])
def test_a_hash_with_a_trailing_newline_is_refused(bad):
    from modelzoo.errors import ManifestError
    from modelzoo.manifest import parse_hash

    with pytest.raises(ManifestError):
        parse_hash(bad)


def test_a_name_with_a_trailing_newline_is_refused(tmp_path):
    from modelzoo.errors import ManifestError
    from modelzoo.manifest import NAME_RE, validate_name

    assert NAME_RE.fullmatch("name") and not NAME_RE.match("name\n")
    with pytest.raises(ManifestError):
        validate_name("name\n")


# --------------------------------------------------------------------------- defect 4


def _doc_with(url: str, mirrors=()) -> dict:
    art = {"url": url, "mirrors": list(mirrors), "format": "h5", "hash": None}
    return {
        "schema_version": 1,
        "name": "creds",
        "version": "1.0.0",
        "summary": "credentials test",
        "input": {"shape": [8, 8, 3]},
        "build": {"kind": "keras-model"},
        "artifacts": {"full": art},
    }


@pytest.mark.parametrize(
    ("url", "mirrors"),
    [
        ("http://user:s3cret@127.0.0.1/x.h5", ()),
        ("https://token@example.org/x.h5", ()),
        ("https://example.org/x.h5", ("https://user:s3cret@mirror.example.org/x.h5",)),
    ],
    ids=["url-password", "url-user", "mirror"],
)
def test_manifest_urls_with_credentials_are_refused(url, mirrors):
    from modelzoo.errors import ManifestError
    from modelzoo.manifest import parse_manifest

    with pytest.raises(ManifestError, match="credentials") as caught:
        parse_manifest(_doc_with(url, mirrors), source="m.json")
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_mirror_rule_with_credentials_is_refused(monkeypatch):
    from modelzoo.errors import UsageError
    from modelzoo.mirrors import rewrite_urls

    with pytest.raises(UsageError, match="credentials") as caught:
        rewrite_urls(["https://example.org/x.h5"], "https://u:s3cret@mirror.example.org/")
    assert "s3cret" not in str(caught.value)


def test_credentials_in_a_url_are_never_sent_nor_written(local_server, tmp_path):
    from modelzoo.download import download
    from modelzoo.errors import DownloadError

    (local_server.root / "x.bin").write_bytes(b"x" * 100)
    host = local_server.url.split("//", 1)[1]
    with pytest.raises(DownloadError) as caught:
        download(f"http://user:s3cret@{host}/x.bin", tmp_path / "p" / "x.part")
    assert local_server.requests == []
    assert "s3cret" not in str(caught.value)
