"""Golden outputs: recorded by publish and the scripts, checked by `verify --outputs` and export.

The registry models here are real: the bundled digits model (a trained MobileNet, alpha
0.25, 32x32) served over HTTP from a local registry, beside copies of its manifest that
differ in one field. ``publish`` records golden outputs from the model in memory, not
through the code path that checks them.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _server import LocalServer
from typer.testing import CliRunner

from modelzoo.cli import app
from modelzoo.errors import GoldenMismatchError, ManifestError, ModelFileError
from modelzoo.hub.manifest import parse_manifest

REPO = Path(__file__).resolve().parents[2]
DIGITS = "mobilenet_v1_0.25_32_digits"
CUTS = ["conv_pw_13_relu", "conv_pw_11_relu", "conv_pw_5_relu"]
tf = pytest.mark.tf


def cli(*args: str, code: int = 0):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


# ------------------------------------------------------------------ a local registry


def _copy_model(root: Path, source: str, name: str, change) -> None:
    src = root / "models" / source / "1.0.0"
    dst = root / "models" / name / "1.0.0"
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    doc["name"] = name
    change(doc)
    (dst / "manifest.json").write_text(json.dumps(doc, indent=2))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bundled digits model served over HTTP, and copies whose manifests differ in one
    field (a trained model: its outputs depend on its input, unlike random weights')."""
    from modelzoo.hub import registry

    root = tmp_path_factory.mktemp("golden-registry")
    shutil.copytree(REPO / "registry/models" / DIGITS, root / "models" / DIGITS)

    def kwarg(**changes):
        return lambda d: d["build"]["kwargs"].update(changes)

    _copy_model(root, DIGITS, "digits_torch", lambda d: d["input"].update(preprocessing="torch"))
    _copy_model(root, DIGITS, "digits_alpha", kwarg(alpha=0.5))
    _copy_model(root, DIGITS, "digits_logits", kwarg(classifier_activation=None))
    _copy_model(root, DIGITS, "digits_plain", lambda d: d.pop("golden"))
    registry.write_index(root)
    with LocalServer(root) as server:
        yield server


@pytest.fixture
def registry_env(served, monkeypatch):
    monkeypatch.setenv("MODELZOO_REGISTRY", served.url)
    return served


# ------------------------------------------------------------------ verify --outputs


@tf
def test_correct_manifest_passes(registry_env):
    from modelzoo.models.golden import verify_outputs

    report = verify_outputs(DIGITS)
    assert report.ok, [c.message for c in report.checks]
    assert [c.output for c in report.checks] == ["top", *CUTS]
    for check in report.checks:
        assert check.max_abs_diff <= check.tolerance
    # the cuts were computed with the notop file, as load(cut=...) does
    fetched = {r.path for r in registry_env.requests}
    assert {f"/models/{DIGITS}/1.0.0/{v}.h5" for v in ("full", "notop")} <= fetched


@tf
def test_flipped_preprocessing_mode_is_caught(registry_env):
    # recorded with "tf", the manifest now says "torch"
    res = cli("verify", "--outputs", "digits_torch", code=1)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("MISMATCH") for line in lines)
    assert "digits_torch@1.0.0 top: max |Δ|" in lines[0]
    rows = json.loads(cli("verify", "--outputs", "digits_torch", "--json", code=1).stdout)
    assert [(r["output"], r["ok"]) for r in rows] == [(o, False) for o in ("top", *CUTS)]
    for row in rows:
        assert row["max_abs_diff"] > row["tolerance"] > 0
        assert "exceeds the tolerance" in row["message"] and "\n" not in row["message"]


@tf
def test_wrong_kwarg_that_still_loads_is_caught_at_the_output_it_changes(registry_env):
    from modelzoo.models.golden import verify_outputs

    # classifier_activation=None: the same weights load, the top gives logits
    report = verify_outputs("digits_logits")
    assert [(c.output, c.ok) for c in report.checks] == [("top", False)] + [(c, True) for c in CUTS]


@tf
def test_wrong_alpha_is_caught(registry_env):
    from modelzoo.models.golden import verify_outputs

    with pytest.raises(ModelFileError):
        verify_outputs("digits_alpha")  # alpha 0.5: the weights do not fit the architecture
    res = cli("verify", "--outputs", "digits_alpha", code=1)
    assert res.stdout.startswith("MISMATCH digits_alpha: cannot build the model its manifest")
    assert len(res.stdout.strip().splitlines()) == 1


@tf
def test_digits_model_golden_outputs_verify():
    """The bundled registry's own copy (no MODELZOO_REGISTRY), as users get it."""
    manifest = json.loads(
        (REPO / "registry/models" / DIGITS / "1.0.0/manifest.json").read_text("utf-8")
    )
    assert [c["layer"] for c in manifest["cut_points"]] == CUTS
    assert [o["cut"] for o in manifest["golden"]["outputs"]] == [None, *CUTS]
    rows = json.loads(cli("verify", "--outputs", DIGITS, "--json").stdout)
    assert [(r["output"], r["ok"]) for r in rows] == [(o, True) for o in ("top", *CUTS)]


@tf
def test_verify_outputs_without_a_name_checks_every_installed_model(registry_env):
    cli("install", DIGITS, "digits_plain", "digits_torch")
    res = cli("verify", "--outputs", code=1)
    lines = res.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["MISMATCH"] * 4 + ["ok"] * 4 + ["skipped"]
    assert lines[-1] == "skipped  digits_plain@1.0.0: no golden outputs in its manifest"


def test_verify_outputs_of_a_model_without_golden_outputs_says_so(registry_env):
    res = cli("verify", "--outputs", "digits_plain", code=1)
    assert "carries no golden outputs" in res.output
    assert "scripts/gen_golden.py" in res.output


# ------------------------------------------------------------------ publish


def _small_net(seed: int):
    from modelzoo.backend import keras

    k = keras()
    k.utils.set_random_seed(seed)
    inp = k.Input((8, 8, 3), name="image")
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = k.layers.Flatten(name="flat")(x)
    out = k.layers.Dense(3, activation="softmax", name="probs")(x)
    return k.Model(inp, out, name="small_net")


@tf
def test_publish_records_golden_outputs_that_verify(tmp_path, monkeypatch):
    from modelzoo.models.golden import verify_outputs
    from modelzoo.models.publish import publish

    saved = tmp_path / "small.keras"
    _small_net(0).save(saved)
    reg = tmp_path / "reg"
    result = publish(
        saved, name="small", version="1.0.0", registry=reg, cut_points=["conv"],
        preprocessing="tf",
    )  # fmt: skip
    golden = json.loads(result.manifest_path.read_text())["golden"]
    assert golden["input"] == {
        "generator": "uniform", "seed": 0, "shape": [2, 8, 8, 3], "low": 0.0, "high": 255.0
    }  # fmt: skip
    assert [(o["cut"], o["shape"]) for o in golden["outputs"]] == [
        (None, [2, 3]),
        ("conv", [2, 6, 6, 4]),
    ]
    assert result.manifest.golden is not None
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
    assert verify_outputs("small").ok

    # the publisher's mode was "tf"; a manifest edited to "caffe" no longer matches
    doc = json.loads(result.manifest_path.read_text())
    doc["input"]["preprocessing"] = "caffe"
    result.manifest_path.write_text(json.dumps(doc))
    assert [c.output for c in verify_outputs("small").failures] == ["top", "conv"]

    no_golden = publish(saved, name="small", version="1.0.1", registry=reg, golden=False)
    assert "golden" not in json.loads(no_golden.manifest_path.read_text())


@tf
def test_cli_publish_and_info_show_golden_outputs(tmp_path, monkeypatch):
    from modelzoo.backend import keras

    saved = tmp_path / "small.keras"
    _small_net(0).save(saved)
    reg = tmp_path / "reg"
    args = ["publish", str(saved), "--registry", str(reg), "--name", "small"]
    res = cli(*args, "--version", "1.0.0", "--cut-point", "flat")
    assert (
        "golden outputs: top, flat (users check them with `modelzoo verify --outputs small`)"
        in res.stdout
    )
    rows = json.loads(cli(*args, "--version", "1.0.1", "--no-golden", "--json").stdout)
    assert rows["golden"] == []
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
    assert (
        "golden        top, flat (modelzoo verify --outputs)" in cli("info", "small@1.0.0").stdout
    )
    assert "golden" not in cli("info", "small@1.0.1").stdout

    # a model without a fixed input size publishes without golden outputs
    k = keras()
    inp = k.Input((None, None, 3))
    dynamic = k.Model(inp, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(2, 3)(inp)))
    dynamic.save(tmp_path / "dynamic.keras")
    res = cli("publish", str(tmp_path / "dynamic.keras"), "--registry", str(reg), "--name",
              "dynamic", "--version", "1.0.0", "--json")  # fmt: skip
    assert json.loads(res.stdout)["golden"] == []


# ------------------------------------------------------------------ manifest schema


def _with_golden(**changes) -> dict:
    doc = json.loads((REPO / "registry/models" / DIGITS / "1.0.0/manifest.json").read_text("utf-8"))
    golden = doc["golden"]
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = golden
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[key] = value
    return doc


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"outputs__1__cut": "conv_pw_1_relu"}, "golden.outputs[1].cut"),
        ({"input__shape": [2, 64, 64, 3]}, "golden.input.shape"),
        ({"input__shape": [32, 32, 3]}, "golden.input.shape"),
        ({"input__generator": "normal"}, "golden.input.generator"),
        ({"input__low": 255.0}, "golden.input"),
        ({"outputs__0__indices": [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]}, "golden.outputs[0].indices"),
        ({"outputs__0__values": [0.1]}, "golden.outputs[0].values"),
        ({"outputs__0__atol": -1}, "golden.outputs[0].atol"),
        ({"outputs__2__cut": "conv_pw_13_relu"}, "golden.outputs"),
        ({"rtol": "1e-3"}, "golden.rtol"),
        ({"outputs": []}, "golden.outputs"),
    ],
)
def test_invalid_golden_fields_are_refused_naming_the_field(changes, field):
    with pytest.raises(ManifestError) as info:
        parse_manifest(_with_golden(**changes), source="m.json")
    assert info.value.field == field, str(info.value)


def test_golden_input_is_the_documented_random_state_stream():
    from modelzoo.models.golden import golden_input

    manifest = parse_manifest(_with_golden(), source="m.json")
    x = golden_input(manifest.golden.input)
    assert x.dtype == np.float32 and x.shape == (2, 32, 32, 3)
    expected = np.random.RandomState(0).uniform(0.0, 255.0, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(x, expected)
    assert x.min() >= 0 and x.max() < 255


# ------------------------------------------------------------------ scripts


@pytest.fixture
def stand_in_mobilenet(tmp_path):
    """The bundled mobilenet_v1_0.25_128 manifest, untouched, in a registry of its own;
    random stand-in weights served where MODELZOO_MIRROR sends the official URLs."""
    import tf_keras as keras

    from modelzoo.hub import registry

    name = "mobilenet_v1_0.25_128"
    root = tmp_path / "registry"
    shutil.copytree(REPO / "registry/models" / name, root / "models" / name)
    registry.write_index(root)
    doc = json.loads((root / "models" / name / "1.0.0/manifest.json").read_text())
    served = tmp_path / "served"
    keras.utils.set_random_seed(3)
    for variant, top in (("full", True), ("notop", False)):
        model = keras.applications.MobileNet(
            alpha=0.25, input_shape=(128, 128, 3), include_top=top, weights=None
        )
        url = doc["artifacts"][variant]["url"]
        target = served / url.split("https://storage.googleapis.com/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(target)
    with LocalServer(served) as server:
        yield root, name, server


@tf
@pytest.mark.slow
def test_gen_golden_adds_golden_outputs_through_the_installer(stand_in_mobilenet, tmp_path):
    root, name, server = stand_in_mobilenet
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        MODELZOO_MIRROR=f"https://storage.googleapis.com/={server.url}/",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    cmd = [sys.executable, str(REPO / "scripts/gen_golden.py"), "--registry", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"[1/1] {name}: top, conv_pw_13_relu" in proc.stderr
    path = root / "models" / name / "1.0.0/manifest.json"
    manifest = parse_manifest(json.loads(path.read_text()), source=str(path))
    assert [o.label for o in manifest.golden.outputs] == ["top", "conv_pw_13_relu"]
    assert manifest.golden.input.shape == (2, 128, 128, 3)
    assert manifest.golden.outputs[0].shape == (2, 1000)
    fetched = {r.path for r in server.requests}
    base = "/tensorflow/keras-applications/mobilenet/mobilenet_2_5_128_tf"
    assert {f"{base}.h5", f"{base}_no_top.h5"} <= fetched

    # a second run has nothing left to do; the manifest is unchanged
    before = path.read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert path.read_bytes() == before

    # and the recorded outputs verify in this process, from the same (mirrored) files
    os.environ["MODELZOO_REGISTRY"] = str(root)
    os.environ["MODELZOO_MIRROR"] = env["MODELZOO_MIRROR"]
    try:
        from modelzoo.models.golden import verify_outputs

        assert verify_outputs(name).ok
    finally:
        del os.environ["MODELZOO_REGISTRY"], os.environ["MODELZOO_MIRROR"]


def test_gen_keras_applications_keeps_golden_outputs_of_unchanged_manifests(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gen_keras_applications as gen
    finally:
        sys.path.remove(str(REPO / "scripts"))

    name = "mobilenet_v1_0.25_128"
    root = tmp_path / "registry"
    shutil.copytree(REPO / "registry/models", root / "models")
    path = root / "models" / name / "1.0.0/manifest.json"
    doc = json.loads(path.read_text())
    golden = _with_golden()["golden"]
    golden["input"]["shape"] = [2, 128, 128, 3]
    golden["outputs"] = golden["outputs"][:1]
    doc["golden"] = golden
    path.write_text(gen.dumps_manifest(doc))
    files = gen.generate(gen.DEFAULT_REFERENCE, root, compute=False)
    assert json.loads(files[path])["golden"] == golden
    assert files[path] == path.read_text()  # --check stays clean

    changed = copy.deepcopy(doc)
    changed["artifacts"]["full"]["url"] += "?old"  # built from other weights
    path.write_text(gen.dumps_manifest(changed))
    files = gen.generate(gen.DEFAULT_REFERENCE, root, compute=False)
    assert "golden" not in json.loads(files[path])


# ------------------------------------------------------------------ export (TF.js in Node)


@pytest.fixture(scope="module")
def node_modules():
    from _browser import ensure_tfjs, node_path, tfjs_cached

    if node_path() is None:
        pytest.skip("Node.js/npm not found: install Node.js >= 18 to run the TF.js tests")
    if os.environ.get("MODELZOO_TEST_NO_INSTALLS") == "1" and not tfjs_cached():
        pytest.skip("@tensorflow/tfjs not in ~/.cache/modelzoo-tests: ./dev test --browser")
    return ensure_tfjs() / "node_modules"


@tf
@pytest.mark.browser
def test_export_checks_golden_outputs_in_tfjs(node_modules, tmp_path, monkeypatch):
    from modelzoo.models.publish import publish

    saved = tmp_path / "small.keras"
    _small_net(1).save(saved)
    reg = tmp_path / "reg"
    result = publish(saved, name="small", version="1.0.0", registry=reg, preprocessing="caffe")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
    monkeypatch.setenv("NODE_PATH", str(node_modules))

    res = cli("export", "small", "--out", str(tmp_path / "web"), "--check-outputs")
    assert "golden outputs: the export matches them in TF.js (Node.js)" in res.stdout
    assert (tmp_path / "web" / "model.json").is_file()
    res = cli("export", "small", "--out", str(tmp_path / "web16"), "--float16")
    assert "matches them in TF.js" in res.stdout

    # Golden values the export does not reproduce: refused, and nothing is written.
    doc = json.loads(result.manifest_path.read_text())
    doc["golden"]["outputs"][0]["values"][1] += 0.25
    result.manifest_path.write_text(json.dumps(doc))
    res = cli("export", "small", "--out", str(tmp_path / "bad"), code=1)
    assert "small@1.0.0 top: max |Δ| 0.25 at values[1] exceeds the tolerance" in res.output
    assert "in tfjs" in res.output and not (tmp_path / "bad").exists()
    assert len(res.output.strip().splitlines()) == 1

    from modelzoo.export.tfjs_runtime import check_golden_tfjs
    from modelzoo.hub.project import resolve_in_context

    manifest = resolve_in_context("small").manifest
    with pytest.raises(GoldenMismatchError) as info:
        check_golden_tfjs(tmp_path / "web", manifest, baked=True)
    assert (info.value.output, info.value.runtime) == ("top", "tfjs")
    assert info.value.max_abs_diff > info.value.tolerance


@tf
@pytest.mark.browser
def test_digits_model_exports_to_tfjs_matching_its_golden_outputs(
    node_modules, tmp_path, monkeypatch
):
    """MobileNet's classifier pools with keepdims=True, which TF.js ignores: the export
    used to fail in TF.js ("expected ndim=4, found ndim=2") and now matches in Node."""
    monkeypatch.setenv("NODE_PATH", str(node_modules))
    for flags in ([], ["--float16"]):
        out = tmp_path / f"web{len(flags)}"
        res = cli("export", DIGITS, "--out", str(out), "--check-outputs", *flags)
        assert "golden outputs: the export matches them in TF.js (Node.js)" in res.stdout


@tf
@pytest.mark.browser
def test_keepdims_global_pooling_runs_in_tfjs(node_modules, tmp_path):
    from modelzoo.backend import keras
    from modelzoo.export.tfjs import export_tfjs
    from modelzoo.export.tfjs_runtime import find_node_tfjs, predict_in_node

    k = keras()
    k.utils.set_random_seed(4)
    L = k.layers
    sequential = k.Sequential(
        [k.Input((6, 6, 3)), L.Conv2D(4, 3), L.GlobalMaxPooling2D(keepdims=True),
         L.Conv2D(2, 1), L.Flatten()]
    )  # fmt: skip
    inp = k.Input((6, 6, 3))
    pool = L.GlobalAveragePooling2D(keepdims=True, name="pool")
    a = pool(L.Conv2D(4, 3, name="a")(inp))
    b = pool(L.Conv2D(4, 3, name="b")(inp))  # a pooling layer called twice
    seq = L.GlobalAveragePooling1D(keepdims=True)(L.Reshape((36, 3))(inp))  # (1, 3)
    outs = [L.Flatten()(L.Add()([a, b])), L.Flatten()(seq)]
    functional = k.Model(inp, L.Concatenate()(outs))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 6, 3)).astype("float32")
    os.environ["NODE_PATH"] = str(node_modules)
    try:
        runtime = find_node_tfjs()
    finally:
        del os.environ["NODE_PATH"]
    for i, model in enumerate((sequential, functional)):
        folder = export_tfjs(model, tmp_path / str(i)).out_dir
        y = predict_in_node(folder, x, runtime=runtime)
        np.testing.assert_allclose(y, model(x).numpy(), atol=1e-5)


@tf
def test_export_without_node_says_the_outputs_were_not_checked(tmp_path, monkeypatch):
    from modelzoo.models.publish import publish

    saved = tmp_path / "small.keras"
    _small_net(1).save(saved)
    reg = tmp_path / "reg"
    publish(saved, name="small", version="1.0.0", registry=reg)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no node, no npm
    monkeypatch.delenv("NODE_PATH", raising=False)
    res = cli("export", "small", "--out", str(tmp_path / "web"))
    assert "golden outputs not checked: Node.js with @tensorflow/tfjs not found" in res.stdout
    res = cli("export", "small", "--out", str(tmp_path / "web2"), "--check-outputs", code=1)
    assert "--check-outputs runs the export in Node.js" in res.output
    assert not (tmp_path / "web2").exists()
