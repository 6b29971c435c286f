"""Publishing into registry folders, serving them with `python -m http.server`, verifying them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from _registry_fixture import BAD_SHA256, TestRegistry
from typer.testing import CliRunner

import modelzoo
from modelzoo.cli import app
from modelzoo.errors import (
    LayerNotFoundError,
    ManifestError,
    UnsafeModelError,
    UsageError,
    VersionExistsError,
)
from modelzoo.hub import project as mp
from modelzoo.hub.folder import verify_registry
from modelzoo.models.publish import publish, read_labels


@pytest.fixture(autouse=True)
def _no_project_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELZOO_PROJECT", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def _tiny(classes: int, *, with_lambda: bool = False):
    from modelzoo.backend import keras

    k = keras()
    inp = k.Input((8, 8, 3), name="image")
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    if with_lambda:
        x = k.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = k.layers.Flatten(name="flat")(x)
    out = k.layers.Dense(classes, activation="softmax", name="probs")(x)
    return k.Model(inp, out, name="tiny_net")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Saved tiny models: v1 (3 classes, .keras and .h5), v2 (4 classes), an unsafe one."""
    folder = tmp_path_factory.mktemp("saved")
    files = {}
    v1 = _tiny(3)
    files["v1"] = folder / "v1.keras"
    v1.save(files["v1"])
    files["v1h5"] = folder / "v1.h5"
    with warnings.catch_warnings():  # tf_keras calls .h5 legacy: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        v1.save(files["v1h5"])
    files["v2"] = folder / "v2.keras"
    _tiny(4).save(files["v2"])
    files["lambda"] = folder / "lambda.keras"
    _tiny(3, with_lambda=True).save(files["lambda"])
    files["junk"] = folder / "junk.keras"
    files["junk"].write_bytes(b"not a model at all" * 10)
    return files


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (dot-files too) with its bytes."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


# --------------------------------------------------------------------------- publish


@pytest.mark.tf
def test_publish_writes_manifest_artifact_and_index(models, tmp_path):
    reg = tmp_path / "reg"
    result = publish(
        models["v1"],
        name="tiny-net",
        version="1.0.0",
        registry=reg,
        cut_points=["conv", "flat"],
        labels=["cat", "dog", "fish"],
        license="MIT",
        tags=["demo"],
    )
    folder = reg / "models" / "tiny-net" / "1.0.0"
    assert result.manifest_path == folder / "manifest.json"
    assert result.artifact_path == folder / "tiny-net.keras"
    data = models["v1"].read_bytes()
    assert result.artifact_path.read_bytes() == data
    assert (result.sha256, result.size) == (hashlib.sha256(data).hexdigest(), len(data))
    doc = json.loads(result.manifest_path.read_text())
    assert doc["build"] == {"kind": "keras-model"}
    assert doc["artifacts"] == {
        "full": {
            "url": "tiny-net.keras",
            "hash": f"sha256:{result.sha256}",
            "size": len(data),
            "format": "keras",
            "file_name": "tiny-net.keras",
        }
    }
    assert doc["input"] == {"shape": [8, 8, 3], "dtype": "float32", "preprocessing": "none"}
    assert doc["cut_points"] == [
        {"layer": "conv", "shape": [6, 6, 4], "variant": "full"},
        {"layer": "flat", "shape": [144], "variant": "full"},
    ]
    assert doc["summary"] == "tiny_net: 4 layers, 547 parameters"
    assert (doc["labels"], doc["license"], doc["tags"]) == (["cat", "dog", "fish"], "MIT", ["demo"])
    index = json.loads((reg / "index.json").read_text())
    assert [(m["name"], m["version"]) for m in index["models"]] == [("tiny-net", "1.0.0")]
    assert verify_registry(reg).ok
    assert sorted(p.name for p in reg.iterdir()) == ["index.json", "models"]  # no staging left

    h5 = publish(models["v1h5"], name="tiny-net", version="1.0.1", registry=reg)
    assert h5.manifest.artifact("full").format == "h5"
    assert h5.artifact_path.name == "tiny-net.h5"


@pytest.mark.tf
def test_published_versions_are_immutable(models, tmp_path):
    reg = tmp_path / "reg"
    publish(models["v1"], name="tiny-net", version="1.0.0", registry=reg)
    before = snapshot(reg)
    with pytest.raises(VersionExistsError, match="already published.*immutable") as info:
        publish(models["v2"], name="tiny-net", version="1.0.0", registry=reg)
    assert isinstance(info.value, FileExistsError)
    assert snapshot(reg) == before
    publish(models["v2"], name="tiny-net", version="1.0.1", registry=reg)
    assert len(json.loads((reg / "index.json").read_text())["models"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Tiny Net"}, "Invalid model name 'Tiny Net'"),
        ({"name": "../escape"}, "Invalid model name"),
        ({"version": "1.0"}, "Invalid version '1.0'"),
        ({"version": "../1.0.0"}, "Invalid version"),
        ({"preprocessing": "magic"}, "Invalid preprocessing 'magic'"),
        ({"file": "model.txt"}, "ending in .keras"),
        ({"file": "missing.keras"}, "does not exist"),
    ],
)
def test_publish_refuses_bad_arguments_before_touching_anything(tmp_path, kwargs, message):
    reg = tmp_path / "reg"
    args = {"name": "ok", "version": "1.0.0", "preprocessing": "none"}
    args.update({k: v for k, v in kwargs.items() if k != "file"})
    model = tmp_path / kwargs.get("file", "model.keras")
    if "file" not in kwargs or kwargs["file"] == "model.txt":
        model.write_bytes(b"x")
    with pytest.raises(UsageError, match=message):
        publish(model, registry=reg, **args)
    assert not reg.exists()


@pytest.mark.tf
def test_failed_publish_leaves_the_registry_unchanged(models, tmp_path):
    reg = tmp_path / "reg"
    publish(models["v1"], name="tiny-net", version="1.0.0", registry=reg)
    before = snapshot(reg)
    attempts = [
        (UnsafeModelError, "Lambda", dict(model_file=models["lambda"])),
        (UnsafeModelError, "neither HDF5 nor zip", dict(model_file=models["junk"])),
        (LayerNotFoundError, "No layer 'flatt'.*'flat'", dict(cut_points=["flatt"])),
        (UsageError, "2 labels given but .* 3 classes", dict(labels=["a", "b"])),
    ]
    for error, message, kwargs in attempts:
        args = dict(model_file=models["v1"], name="other", version="1.0.0", registry=reg)
        args.update(kwargs)
        with pytest.raises(error, match=message):
            publish(**args)
        assert snapshot(reg) == before, message
    # an invalid manifest elsewhere in the registry: the index cannot be rebuilt
    broken = reg / "models" / "broken" / "1.0.0"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text('{"name": "broken"}')
    before = snapshot(reg)
    with pytest.raises(ManifestError, match="broken"):
        publish(models["v1"], name="other", version="1.0.0", registry=reg)
    assert snapshot(reg) == before
    assert not (reg / "models" / "other").exists()
    # a registry that did not exist is not left behind either
    with pytest.raises(UnsafeModelError):
        publish(models["lambda"], name="x", version="1.0.0", registry=tmp_path / "new-reg")
    assert not (tmp_path / "new-reg").exists()


# --------------------------------------------------------------------------- serve + install


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder: Path):
    """A real `python -m http.server` for ``folder``: (process, base URL)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/index.json", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("python -m http.server did not start") from None
            time.sleep(0.1)


@pytest.mark.tf
def test_publish_serve_with_http_server_install_and_load(models, tmp_path, monkeypatch):
    import numpy as np

    reg = tmp_path / "published"
    result = run(
        "publish", str(models["v1"]), "--name", "tiny-net", "--version", "1.0.0",
        "--registry", str(reg), "--cut-point", "flat", "--summary", "three-way tiny net",
        "--json",
    ).stdout  # fmt: skip
    published = json.loads(result)
    assert published["model"] == "tiny-net@1.0.0" and published["cut_points"][0]["shape"] == [144]

    proc, url = _serve(reg)
    try:
        monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / "clean-home"))
        assert "added registry" in run("registry", "add", url, "--name", "team").stdout
        assert "tiny-net" in run("search", "tiny").stdout
        installed = json.loads(run("install", "tiny-net", "--json").stdout)
        rec = installed[0]["records"]["full"]
        assert installed[0]["registry"] == "team"
        assert rec["url"] == f"{url}/models/tiny-net/1.0.0/tiny-net.keras"
        assert rec["sha256"] == published["sha256"]
        model = modelzoo.load("tiny-net")
        features = modelzoo.load("tiny-net", cut="flat")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    original = modelzoo.load(models["v1"])
    np.testing.assert_allclose(model.predict(x, verbose=0), original.predict(x, verbose=0))
    assert features.output_shape == (None, 144)
    # the server is gone: everything needed is cached
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    assert modelzoo.load("tiny-net").output_shape == (None, 3)


@pytest.mark.tf
def test_load_inside_a_project_uses_the_locked_version(models, tmp_path, monkeypatch):
    root = tmp_path / "app"
    reg = root / "registry"
    publish(models["v1"], name="tiny-net", version="1.0.0", registry=reg)
    (root / "modelzoo.toml").write_text(
        '[registries]\nlocal = "./registry"\n\n[models]\n"tiny-net" = "^1"\n'
    )
    monkeypatch.chdir(root)
    mp.install_project()
    publish(models["v2"], name="tiny-net", version="1.1.0", registry=reg)
    assert modelzoo.load("tiny-net").output_shape == (None, 3)  # locked 1.0.0
    assert modelzoo.load("tiny-net@1.1.0").output_shape == (None, 4)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
    assert modelzoo.load("tiny-net").output_shape == (None, 4)  # no project: latest


# --------------------------------------------------------------------------- verify


def test_registry_verify_reports_every_artifact(tmp_path):
    reg = TestRegistry(tmp_path / "reg", base_url="https://models.example.com")
    good = reg.publish("good", variants={"full": 1000, "notop": 300})
    md5 = reg.publish("md5", variants={"full": 500}, hash_algo="md5")["full"]
    reg.publish("nohash", variants={"full": 200}, hash_algo=None)
    reg.publish("far", variants={"full": 10}, absolute=True)
    report = verify_registry(reg.root)
    statuses = [(c.name, c.variant, c.status) for c in report.checks]
    assert statuses == [
        ("far", "full", "remote"),
        ("good", "full", "ok"),
        ("good", "notop", "ok"),
        ("md5", "full", "ok"),
        ("nohash", "full", "unhashed"),
    ]
    assert report.ok and report.index == "ok"
    assert "ok" in run("registry", "verify", str(reg.root)).stdout

    good["full"].path.write_bytes(b"\0" * 1000)  # same size: only the hash tells
    good["notop"].path.write_bytes(b"short")
    md5.path.unlink()
    bad = reg.model_dir("bad", "1.0.0")
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{")
    report = verify_registry(reg.root)
    by = {(c.name, c.variant): c for c in report.checks}
    assert by[("good", "full")].status == "hash-mismatch"
    assert by[("good", "full")].expected == f"sha256:{good['full'].sha256}"
    assert by[("good", "notop")].status == "size-mismatch"
    assert by[("md5", "full")].status == "missing"
    assert by[("bad", "")].status == "invalid-manifest"
    assert report.index == "unbuilt" and not report.ok

    result = run("registry", "verify", str(reg.root), "--json", ok=False)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and len(doc["artifacts"]) == 6
    human = run("registry", "verify", str(reg.root), ok=False)
    assert human.exit_code == 1 and "hash-mismatch" in human.stdout and "problem(s)" in human.stdout


def test_registry_verify_notices_a_stale_or_missing_index(tmp_path):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("one", variants={"full": 100})
    reg.publish("two", variants={"full": 100}, index=False)
    assert verify_registry(reg.root).index == "stale"
    (reg.root / "index.json").unlink()
    report = verify_registry(reg.root)
    assert report.index == "missing" and "modelzoo registry index" in report.index_message
    run("registry", "index", str(reg.root))
    assert verify_registry(reg.root).ok
    reg.publish("three", variants={"full": 100}, declared={"full": BAD_SHA256})
    statuses = {c.name: c.status for c in verify_registry(reg.root).checks}
    assert statuses == {"one": "ok", "two": "ok", "three": "hash-mismatch"}
    shutil.rmtree(reg.root)
    assert run("registry", "verify", str(reg.root), ok=False).exit_code == 1


def test_read_labels(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('["cat", "dog"]')
    assert read_labels(path) == ["cat", "dog"]
    for bad in ('{"cat": 1}', "[]", "[1, 2]", "not json"):
        path.write_text(bad)
        with pytest.raises(UsageError):
            read_labels(path)
    with pytest.raises(UsageError, match="Cannot read labels"):
        read_labels(tmp_path / "missing.json")


def test_cli_publish_needs_a_registry_folder(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    result = run("publish", str(model), "--name", "m", "--version", "1.0.0", ok=False)
    assert result.exit_code == 1 and "not a registry folder" in result.output
    os.makedirs("models")  # the current folder now looks like a registry
    result = run("publish", str(model), "--name", "Bad", "--version", "1.0.0", ok=False)
    assert result.exit_code == 1 and "Invalid model name 'Bad'" in result.output


def test_publish_sign_adds_signed_targets_and_refuses_a_wrong_key(models, tmp_path):
    """publish --sign (issue 15): the new version is signed; a wrong key publishes nothing."""
    from modelzoo.errors import SigningError
    from modelzoo.hub import registry, signing

    root = tmp_path / "reg"
    publish(models["v1"], name="tiny-net", version="1.0.0", registry=root)
    signing.init_registry(root, tmp_path / "keys")
    other = tmp_path / "other"
    publish(models["v1"], name="x", version="1.0.0", registry=other)
    signing.init_registry(other, tmp_path / "otherkeys")
    before = snapshot(root)
    with pytest.raises(SigningError, match="is not a targets key"):
        publish(
            models["v2"],
            name="tiny-net",
            version="2.0.0",
            registry=root,
            sign=tmp_path / "otherkeys",
        )
    assert snapshot(root) == before
    result = publish(
        models["v2"], name="tiny-net", version="2.0.0", registry=root, sign=tmp_path / "keys"
    )
    assert result.signed.versions["targets"] == 2
    registry.add_registry(root, trust=root / "tuf" / "root.json")
    resolved = registry.resolve("tiny-net")
    assert (
        resolved.version == "2.0.0"
        and resolved.manifest.artifacts["full"].hash.hex == result.sha256
    )
