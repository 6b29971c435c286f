"""The safety scan: hostile model files are refused before tf_keras touches them.

Each attack is built at test time (tests/_hostile.py). For each we prove that modelzoo
refuses it with an UnsafeModelError naming the file and the reason, that its payload
never ran (no marker file, no secret in the weights), and, where the attack works on
this stack, that plain tf_keras *does* fall for it, so the test is not vacuous.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile

import _hostile as hostile
import numpy as np
import pytest

from modelzoo.errors import (
    ModelFileError,
    ModelZooError,
    NotInstalledError,
    UnsafeModelError,
    UsageError,
)
from modelzoo.safety import scan

pytestmark = pytest.mark.tf


def _refused(path, match: str, **kwargs) -> UnsafeModelError:
    """Assert scan(path) raises UnsafeModelError naming the file and matching ``match``."""
    kwargs.setdefault("expected_format", "keras")
    with pytest.raises(UnsafeModelError, match=match) as info:
        scan.scan(path, **kwargs)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "trust_remote_code=True" in str(info.value)  # the message gives the way out
    return info.value


# --- shared benign files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    """A tiny model saved as .keras, legacy .h5, weights .h5 and v3 .weights.h5."""
    folder = tmp_path_factory.mktemp("benign")
    model = hostile.tiny_model()
    return {
        "model": model,
        "keras": hostile.save_keras(folder, model=model),
        "h5": hostile.save_h5(folder, model=model),
        "weights": hostile.save_weights(folder, model=model),
        "weights_v3": hostile.save_weights(folder, "model.weights.h5", model=model),
        "x": np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4),
    }


@pytest.fixture(scope="module")
def contrast(tmp_path_factory):
    """Attacks 1-4 loaded with plain tf_keras (safe_mode=True) in a separate interpreter.

    Returns the folder and, per case, the marker path and what tf_keras did.
    """
    folder = tmp_path_factory.mktemp("contrast")
    base = hostile.save_keras(folder, "base.keras")
    markers = {k: folder / f"{k}.marker" for k in ("lambda", "renamed", "loss", "cls")}
    hostile.lambda_h5(folder, markers["lambda"], "lambda.h5")
    renamed = hostile.lambda_h5(folder, markers["renamed"], "renamed.h5")
    renamed.rename(folder / "renamed.keras")
    hostile.evil_module(folder, "evil_mod", markers["loss"])
    hostile.evil_module(folder, "evil_layers", markers["cls"])
    hostile.edit_keras_config(base, folder / "loss.keras", _evil_loss)
    hostile.edit_keras_config(base, folder / "cls.keras", _evil_root_class)
    cases = {
        "lambda": {"path": str(folder / "lambda.h5"), "compile": False},
        "renamed": {"path": str(folder / "renamed.keras"), "compile": False},
        "loss": {"path": str(folder / "loss.keras"), "compile": True},
        "cls": {"path": str(folder / "cls.keras"), "compile": False},
    }
    spec = json.dumps({"syspath": str(folder), "cases": cases})
    proc = subprocess.run(
        [sys.executable, "-c", hostile.CONTRAST_SCRIPT, spec],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS=")]
    assert lines, proc.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULTS=") :])
    return {k: (markers[k], results[k]) for k in cases}


def _fn(module: str, name: str, registered: str | None = None) -> dict:
    """A serialized function reference, as tf_keras writes them."""
    return {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": registered or name,
    }


def _evil_loss(config):
    config["compile_config"] = {"optimizer": "sgd", "loss": _fn("evil_mod", "f"), "metrics": None}


def _evil_root_class(config):
    config.update(module="evil_layers", class_name="EvilModel", registered_name="EvilModel")


def _evil_activation(config):
    hostile.dense_layer(config)["config"]["activation"] = _fn("evil_mod", "f")


# --- attack 1: Lambda in a legacy .h5 ----------------------------------------------------


def test_lambda_h5_runs_under_plain_tf_keras(contrast):
    marker, outcome = contrast["lambda"]
    assert marker.exists(), f"expected plain tf_keras to run the Lambda; it said: {outcome}"


def test_lambda_h5_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran.marker"
    path = hostile.lambda_h5(tmp_path, marker)
    err = _refused(path, "Lambda 'payload' is a Lambda layer", expected_format="h5")
    assert "runs Python code" in err.reason
    with pytest.raises(UnsafeModelError):
        scan.load_model_file(path, expected_format="h5")
    assert not marker.exists()


def test_trust_remote_code_loads_the_lambda_and_runs_it(tmp_path, caplog):
    """The one way past the scan: the Lambda then runs (its marker is written)."""
    marker = tmp_path / "ran.marker"
    path = hostile.lambda_h5(tmp_path, marker)
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        model = scan.load_model_file(path, expected_format="h5", trust_remote_code=True)
    assert model.get_layer("payload") is not None
    assert marker.exists()
    assert any("Skipping the safety scan" in r.getMessage() for r in caplog.records)


# --- attack 2: HDF5 bytes named .keras -----------------------------------------------------


def test_hdf5_named_keras_runs_under_plain_tf_keras(contrast):
    marker, outcome = contrast["renamed"]
    assert marker.exists(), f"expected the legacy loader to run the Lambda; it said: {outcome}"


def test_hdf5_named_keras_is_refused(tmp_path):
    marker = tmp_path / "ran.marker"
    path = hostile.lambda_h5(tmp_path, marker, "lambda.h5").rename(tmp_path / "m.keras")
    err = _refused(path, "content is HDF5, but format 'keras' must be a zip archive")
    assert err.path == str(path)
    with pytest.raises(UnsafeModelError):
        scan.load_model_file(path, expected_format="keras")
    assert not marker.exists()


# --- attack 3: a function from an arbitrary module -------------------------------------


def test_module_function_runs_under_plain_tf_keras(contrast):
    marker, outcome = contrast["loss"]
    assert marker.exists(), f"expected tf_keras to import evil_mod; it said: {outcome}"


def test_module_function_is_refused_even_when_importable(tmp_path, benign, monkeypatch):
    marker = tmp_path / "ran.marker"
    hostile.evil_module(tmp_path, "evil_mod", marker)
    monkeypatch.syspath_prepend(str(tmp_path))  # the module *could* be imported
    path = hostile.edit_keras_config(benign["keras"], tmp_path / "loss.keras", _evil_loss)
    _refused(path, "the compile config references function 'f' from module 'evil_mod'")
    with pytest.raises(UnsafeModelError, match="evil_mod"):
        scan.load_model_file(path, expected_format="keras", compile=True)
    assert not marker.exists()
    assert "evil_mod" not in sys.modules


def test_compile_config_is_ignored_when_not_compiling(tmp_path, benign, monkeypatch):
    """tf_keras drops compile_config when compile=False, so the file is then harmless."""
    marker = tmp_path / "ran.marker"
    hostile.evil_module(tmp_path, "evil_mod", marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = hostile.edit_keras_config(benign["keras"], tmp_path / "loss.keras", _evil_loss)
    report = scan.scan(path, expected_format="keras", check_compile_config=False)
    assert "Dense" in report.class_names
    model = scan.load_model_file(path, expected_format="keras", compile=False)
    assert model.count_params() == benign["model"].count_params()
    assert not marker.exists()
    assert "evil_mod" not in sys.modules


def test_module_activation_is_refused(tmp_path, benign):
    path = hostile.edit_keras_config(benign["keras"], tmp_path / "a.keras", _evil_activation)
    _refused(path, "Dense 'hidden' references function 'f' from module 'evil_mod'")


# --- attack 4: unknown custom classes ----------------------------------------------------


def test_module_class_runs_under_plain_tf_keras(contrast):
    marker, outcome = contrast["cls"]
    assert marker.exists(), f"expected tf_keras to import evil_layers; it said: {outcome}"


def test_module_class_is_refused(tmp_path, benign, monkeypatch):
    marker = tmp_path / "ran.marker"
    hostile.evil_module(tmp_path, "evil_layers", marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = hostile.edit_keras_config(benign["keras"], tmp_path / "c.keras", _evil_root_class)
    _refused(path, "names class 'EvilModel' from module 'evil_layers'")
    with pytest.raises(UnsafeModelError):
        scan.load_model_file(path, expected_format="keras")
    assert not marker.exists()


def _custom_layer(config):
    hostile.dense_layer(config).update({"class_name": "MyCustomLayer"})


def test_unknown_custom_layer_in_keras_is_refused(tmp_path, benign):
    path = hostile.edit_keras_config(benign["keras"], tmp_path / "c.keras", _custom_layer)
    _refused(path, "uses class 'MyCustomLayer', which is not a built-in tf_keras class")


def test_unknown_custom_layer_in_h5_is_refused(tmp_path, benign):
    path = hostile.edit_h5_config(benign["h5"], tmp_path / "c.h5", _custom_layer)
    _refused(path, "MyCustomLayer", expected_format="h5")
    with pytest.raises(UnsafeModelError, match="MyCustomLayer"):
        scan.load_model_file(path, expected_format="h5")


def test_lambda_anywhere_in_h5_config_is_refused(tmp_path, benign):
    """Nested inside a wrapper, the Lambda is still found."""

    def wrap(config):
        layer = hostile.dense_layer(config)
        inner = {
            "class_name": "Lambda",
            "config": {"name": "inner", "function": ["AA==", None, None]},
        }
        layer.update({"class_name": "TimeDistributed", "config": {"name": "td", "layer": inner}})

    path = hostile.edit_h5_config(benign["h5"], tmp_path / "w.h5", wrap)
    _refused(path, "Lambda 'inner' is a Lambda layer", expected_format="h5")


# --- references inside configs: every nested position and form -------------------------


def _set_layer(**fields):
    def edit(config):
        hostile.dense_layer(config).update(fields)

    return edit


def _set_in_dense(key, value):
    def edit(config):
        hostile.dense_layer(config)["config"][key] = value

    return edit


def _wrap_dense(wrapper):
    def edit(config):
        layer = hostile.dense_layer(config)
        layer["config"]["activation"] = _fn("evil_mod", "f")
        inner = dict(layer)
        layer.clear()
        layer.update({"module": "keras.layers", "class_name": wrapper, "registered_name": None,
                      "config": {"name": "wrapped", "layer": inner}})  # fmt: skip

    return edit


CONFIG_ATTACKS = {
    "keras-lambda-layer": (_set_layer(class_name="Lambda"), "is a Lambda layer"),
    "serialized-lambda": (
        _set_in_dense("activation", {"class_name": "__lambda__", "config": {"value": "x"}}),
        "holds a serialized Python lambda",
    ),
    "tf-op-layer": (_set_layer(class_name="TensorFlowOpLayer"), "runs a TensorFlow op"),
    "tf-op-write-file": (
        _set_layer(class_name="TFOpLambda", config={"name": "op", "function": "io.write_file"}),
        "calls TensorFlow symbol 'io.write_file'",
    ),
    "tf-op-keras-loader": (
        _set_layer(
            class_name="TFOpLambda", config={"name": "op", "function": "keras.models.load_model"}
        ),
        "calls TensorFlow symbol 'keras.models.load_model'",
    ),
    "private-class-method": (
        _set_layer(
            class_name="ClassMethod",
            config={"name": "cm", "cls_symbol": "RaggedTensor", "method_name": "__init__"},
        ),
        "calls class method 'RaggedTensor.__init__'",
    ),
    "dunder-attribute": (
        _set_layer(class_name="InstanceMethod", config={"name": "im", "attr_name": "__class__"}),
        "accesses tensor attribute '__class__'",
    ),
    "builtins-eval": (_set_in_dense("activation", _fn("builtins", "eval")), "'eval'"),
    "numpy-load": (_set_in_dense("activation", _fn("numpy", "load")), "numpy.load"),
    "tensorflow-unloaded-module": (
        _set_in_dense("activation", _fn("tensorflow.not_a_module", "relu")),
        "not a function tf_keras has loaded",
    ),
    "registered-name-swap": (
        _set_in_dense("activation", _fn("keras.activations", "relu", registered="f")),
        "under another registered name 'f'",
    ),
    "class-from-tensorflow": (
        _set_in_dense(
            "kernel_initializer",
            {
                "module": "tensorflow.python.ops.init_ops",
                "class_name": "GlorotUniform",
                "config": {},
                "registered_name": None,
            },
        ),  # fmt: skip
        "from module 'tensorflow.python.ops.init_ops'",
    ),
    "custom-registered-name": (
        _set_in_dense(
            "kernel_regularizer",
            {
                "module": "keras.regularizers",
                "class_name": "L2",
                "config": {},
                "registered_name": "my_package>Sneaky",
            },
        ),  # fmt: skip
        "uses class 'my_package>Sneaky'",
    ),
    "vocabulary-path": (
        _set_layer(class_name="StringLookup", config={"name": "lk", "vocabulary": "/etc/passwd"}),
        "reads its vocabulary from the file '/etc/passwd'",
    ),
    "time-distributed": (_wrap_dense("TimeDistributed"), "module 'evil_mod'"),
    "bidirectional": (_wrap_dense("Bidirectional"), "module 'evil_mod'"),
    "nested-model": (
        _set_in_dense(
            "nested",
            {
                "class_name": "Functional",
                "config": {
                    "name": "inner",
                    "layers": [{"class_name": "Lambda", "config": {"name": "deep"}}],
                },
            },
        ),  # fmt: skip
        "Lambda 'deep' is a Lambda layer",
    ),
    "typespec-module": (
        _set_in_dense(
            "spec",
            {
                "class_name": "__typespec__",
                "spec_name": "EvilSpec",
                "module": "evil_mod",
                "config": [],
                "registered_name": None,
            },
        ),  # fmt: skip
        "names type spec 'EvilSpec' from module 'evil_mod'",
    ),
    "main-module-class": (
        _set_layer(module="__main__", class_name="Dense"),
        "from module '__main__'",
    ),
}


@pytest.mark.parametrize("attack", sorted(CONFIG_ATTACKS))
def test_config_references_are_refused(tmp_path, benign, attack):
    edit, match = CONFIG_ATTACKS[attack]
    path = hostile.edit_keras_config(benign["keras"], tmp_path / f"{attack}.keras", edit)
    _refused(path, match)


def test_plain_math_functions_from_tensorflow_and_numpy_pass(tmp_path, benign):
    tf = pytest.importorskip("tensorflow")
    for fn in (tf.math.tanh, np.tanh):
        module, name = fn.__module__, fn.__name__
        edit = _set_in_dense("activation", _fn(module, name))
        path = hostile.edit_keras_config(benign["keras"], tmp_path / f"{name}.keras", edit)
        assert "Dense" in scan.scan(path, expected_format="keras").class_names


def test_malformed_configs_are_refused(tmp_path, benign):
    deep = "[" * 100_000 + "]" * 100_000

    def replace_config(text):
        dest = tmp_path / f"c{len(text) % 97}.keras"
        with zipfile.ZipFile(benign["keras"]) as src, zipfile.ZipFile(dest, "w") as out:
            for info in src.infolist():
                data = text.encode() if info.filename == "config.json" else src.read(info)
                out.writestr(info.filename, data)
        return dest

    _refused(replace_config("{not json"), "config.json is not valid JSON")
    _refused(replace_config('["a list"]'), "config.json is not a JSON object")
    _refused(replace_config('{"config": ' + deep + "}"), "nests too deeply")


# --- attack 5: HDF5 external storage ---------------------------------------------------


def test_external_storage_leaks_the_secret_without_the_scan(tmp_path):
    path = hostile.external_storage_weights(tmp_path, tmp_path / "secret.bin")
    model = hostile.tiny_model()
    model.load_weights(str(path))  # plain tf_keras: h5py reads the host file
    np.testing.assert_array_equal(model.get_layer("hidden").kernel.numpy(), hostile.SECRET_KERNEL)


def test_external_storage_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    path = hostile.external_storage_weights(tmp_path, secret)
    _refused(path, f"keeps its data in external file '{secret}'", expected_format="h5-weights")
    model = hostile.tiny_model()
    before = model.get_layer("hidden").kernel.numpy().copy()
    with pytest.raises(UnsafeModelError, match="external file"):
        scan.load_weights_file(model, path)
    np.testing.assert_array_equal(model.get_layer("hidden").kernel.numpy(), before)


# --- attacks 6, 7: external links, soft links, virtual datasets ------------------------


def test_external_link_leaks_another_file_without_the_scan(tmp_path):
    secret = hostile.secret_weights(tmp_path)
    path = hostile.external_link_weights(tmp_path, secret)
    model = hostile.tiny_model()
    model.load_weights(str(path))
    np.testing.assert_array_equal(model.get_layer("hidden").kernel.numpy(), hostile.SECRET_KERNEL)


def test_external_link_is_refused(tmp_path):
    secret = hostile.secret_weights(tmp_path)
    path = hostile.external_link_weights(tmp_path, secret)
    _refused(path, "'/hidden' is an HDF5 external link to", expected_format="h5-weights")
    with pytest.raises(UnsafeModelError):
        scan.load_weights_file(hostile.tiny_model(), path)


def test_soft_link_is_refused(tmp_path):
    path = hostile.soft_link_weights(tmp_path)
    _refused(path, "'/shortcut' is an HDF5 soft link to '/hidden'", expected_format="h5-weights")


def test_virtual_dataset_leaks_another_file_without_the_scan(tmp_path):
    secret = hostile.secret_weights(tmp_path)
    path = hostile.virtual_dataset_weights(tmp_path, secret)
    model = hostile.tiny_model()
    model.load_weights(str(path))
    np.testing.assert_array_equal(model.get_layer("hidden").kernel.numpy(), hostile.SECRET_KERNEL)


def test_virtual_dataset_is_refused(tmp_path):
    secret = hostile.secret_weights(tmp_path)
    path = hostile.virtual_dataset_weights(tmp_path, secret)
    _refused(path, "is a virtual dataset mapped from", expected_format="h5-weights")


# --- attack 10 and friends: allocation bombs and plugins in HDF5 ---------------------


def test_declared_huge_dataset_is_refused(tmp_path):
    path = hostile.declared_huge_weights(tmp_path)
    assert path.stat().st_size < 1 << 20  # the file is tiny; only the declaration is huge
    _refused(
        path,
        "declare 4,000,000,[0-9,]+ bytes but the file holds only",
        expected_format="h5-weights",
    )


def test_absolute_cap_on_declared_bytes(tmp_path, benign):
    report = scan.scan(benign["weights"], expected_format="h5-weights")
    assert report.n_layers == 3
    _refused(
        benign["weights"],
        "declare 92 bytes, above the cap of 50",
        expected_format="h5-weights",
        max_bytes=50,
    )


def test_deflate_chunk_bomb_is_refused(tmp_path):
    path = hostile.deflate_bomb_weights(tmp_path)
    _refused(path, "inflates beyond its 4,096-byte chunk size", expected_format="h5-weights")


def test_filter_plugin_is_refused(tmp_path):
    path = hostile.plugin_filter_weights(tmp_path)
    _refused(path, "needs HDF5 filter #32001", expected_format="h5-weights")


# --- attacks 8, 9: zip members -----------------------------------------------------------

ZIP_MEMBERS = {
    "parent": ("../evil", "contains '..' and would escape the extraction folder"),
    "nested-parent": ("assets/../../evil", "contains '..'"),
    "absolute": ("/tmp/evil", "is an absolute path"),
    "backslash": ("assets\\..\\evil", "contains a backslash"),
    "drive": ("C:/evil", "starts with a drive letter"),
    "duplicate": ("config.json", "appears twice"),
    "unexpected": ("evil.py", "is not expected here"),
}


@pytest.mark.parametrize("case", sorted(ZIP_MEMBERS))
def test_dangerous_zip_members_are_refused(tmp_path, benign, case):
    name, match = ZIP_MEMBERS[case]
    path = hostile.zip_with_member(benign["keras"], tmp_path / "m.keras", name, b"{}")
    _refused(path, f"member {name!r} {match}".replace("\\", "\\\\").replace(".", "\\."))
    outside = tmp_path.parent / "evil"
    with pytest.raises(UnsafeModelError):
        scan.load_model_file(path, expected_format="keras")
    assert not outside.exists()


def test_symlink_member_is_refused(tmp_path, benign):
    path = hostile.zip_with_symlink(benign["keras"], tmp_path / "m.keras")
    _refused(path, "member 'assets/link' is a symbolic link")


def test_padding_bomb_is_refused(tmp_path, benign):
    path = hostile.zip_with_padding(benign["keras"], tmp_path / "m.keras")
    assert path.stat().st_size < 2 << 20  # 200 MB of padding in well under 2 MB
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("assets/padding.bin").file_size == 200 << 20
    _refused(path, "member 'assets/padding.bin' expands from [0-9,]+ to 209,715,200 bytes")


def test_total_uncompressed_cap(benign):
    _refused(benign["keras"], "expands to more than 1,000 bytes", max_bytes=1000)


def test_zip_without_config_or_weights_is_refused(tmp_path):
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("metadata.json", "{}")
    _refused(empty, "has no config.json")
    no_weights = tmp_path / "noweights.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", "{}")
    _refused(no_weights, "neither model.weights.h5 nor model.weights.npz")


def test_hostile_weights_inside_keras_are_refused(tmp_path, benign):
    """The zip's model.weights.h5 gets the same HDF5 walk (here: a soft link)."""
    h5py = pytest.importorskip("h5py")
    with zipfile.ZipFile(benign["keras"]) as archive:
        (tmp_path / "w.h5").write_bytes(archive.read("model.weights.h5"))
    with h5py.File(tmp_path / "w.h5", "r+") as f:
        f["shortcut"] = h5py.SoftLink("/layers")
    dest = tmp_path / "m.keras"
    with zipfile.ZipFile(benign["keras"]) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            name = info.filename
            data = (
                (tmp_path / "w.h5").read_bytes() if name == "model.weights.h5" else src.read(info)
            )
            out.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)  # spooled path
    _refused(dest, "member model.weights.h5: '/shortcut' is an HDF5 soft link")


# --- format detection and mismatches ---------------------------------------------------


def test_detect_format(tmp_path, benign):
    h5py = pytest.importorskip("h5py")
    assert scan.detect_format(benign["h5"]) == "hdf5"
    assert scan.detect_format(benign["keras"]) == "zip"
    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=1024) as f:
        f["x"] = np.zeros(3)
    assert (tmp_path / "ub.h5").read_bytes()[:8] != b"\x89HDF\r\n\x1a\n"
    assert scan.detect_format(tmp_path / "ub.h5") == "hdf5"
    # A stored zip member whose bytes hold an HDF5 signature at offset 512: still a zip.
    aligned = tmp_path / "aligned.keras"
    with zipfile.ZipFile(aligned, "w") as archive:
        archive.writestr("assets/x", bytes(512 - 30 - len("assets/x")) + b"\x89HDF\r\n\x1a\n")
    assert aligned.read_bytes()[512:520] == b"\x89HDF\r\n\x1a\n"
    assert scan.detect_format(aligned) == "zip"
    (tmp_path / "junk.bin").write_bytes(b"GIF89a" + bytes(2000))
    assert scan.detect_format(tmp_path / "junk.bin") == "unknown"
    with pytest.raises(NotInstalledError):
        scan.detect_format(tmp_path / "missing.h5")


def test_format_mismatches_are_refused(tmp_path, benign):
    zip_as_blob = shutil.copyfile(benign["keras"], tmp_path / "blob1")
    _refused(
        zip_as_blob, "content is a zip archive, but format 'h5' must be HDF5", expected_format="h5"
    )
    _refused(benign["weights"], "content is HDF5, but format 'keras'", expected_format="keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a model at all")
    _refused(junk, "content is neither HDF5 nor zip")
    zip_named_h5 = shutil.copyfile(benign["keras"], tmp_path / "model.h5")
    _refused(zip_named_h5, "name ends in '.h5' but its content is a zip archive")
    h5_named_keras = shutil.copyfile(benign["h5"], tmp_path / "model2.keras")
    _refused(h5_named_keras, "name ends in '.keras' but its content is HDF5", expected_format="h5")
    _refused(benign["weights"], "holds no model", expected_format="h5")


def test_argument_errors(tmp_path, benign):
    with pytest.raises(UsageError, match="expected_format='pt'.*'h5-weights'"):
        scan.scan(benign["h5"], expected_format="pt")
    with pytest.raises(UsageError, match="max_bytes"):
        scan.scan(benign["h5"], expected_format="h5", max_bytes=0)
    with pytest.raises(NotInstalledError, match="does not exist"):
        scan.scan(tmp_path / "nope.keras", expected_format="keras")
    with pytest.raises(UnsafeModelError, match="not a regular file"):
        scan.scan(tmp_path, expected_format="keras")
    with pytest.raises(UsageError, match="load_weights_file"):
        scan.load_model_file(benign["weights"], expected_format="h5-weights")


# --- benign files pass and load ----------------------------------------------------------


def test_benign_keras_and_h5_load(benign):
    expected = benign["model"].predict(benign["x"], verbose=0)
    for fmt in ("keras", "h5"):
        report = scan.scan(benign[fmt], expected_format=fmt)
        assert report.n_layers == 3
        assert {"Dense", "InputLayer", "Functional"} <= set(report.class_names)
        assert report.warnings == ()
        model = scan.load_model_file(benign[fmt], expected_format=fmt)
        np.testing.assert_allclose(model.predict(benign["x"], verbose=0), expected, rtol=1e-6)


def test_benign_files_under_blob_names_load(tmp_path, benign):
    """Cached blobs may have no suffix: the loader gives tf_keras a name it understands."""
    expected = benign["model"].predict(benign["x"], verbose=0)
    for fmt in ("keras", "h5"):
        blob = shutil.copyfile(benign[fmt], tmp_path / f"sha256-{fmt}")
        model = scan.load_model_file(blob, expected_format=fmt)
        np.testing.assert_allclose(model.predict(benign["x"], verbose=0), expected, rtol=1e-6)
    for key, layout in (("weights", "legacy"), ("weights_v3", "v3")):
        blob = shutil.copyfile(benign[key], tmp_path / f"blob-{key}")
        assert scan.scan(blob, expected_format="h5-weights").weights_layout == layout
        fresh = hostile.tiny_model()
        scan.load_weights_file(fresh, blob)
        np.testing.assert_allclose(fresh.predict(benign["x"], verbose=0), expected, rtol=1e-6)
    assert not list(tmp_path.glob("*.h5"))  # aliases live in a temp folder, removed after


def test_compiled_model_with_tf_ops_passes(tmp_path):
    keras = pytest.importorskip("tf_keras")
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, activation="relu", kernel_constraint=keras.constraints.MaxNorm(2))(
        inputs
    )
    x = tf.math.add(x, 1.0)[:, :2]  # TFOpLambda + SlicingOpLambda
    x = keras.layers.TimeDistributed(keras.layers.Dense(2))(keras.layers.Reshape((2, 1))(x))
    model = keras.Model(inputs, x)
    model.compile(optimizer="adam", loss="mse", metrics=["mae", keras.metrics.AUC()])
    for fmt in ("keras", "h5"):
        path = hostile.save_h5(tmp_path, f"ops.{fmt}", model)  # the suffix picks the format
        report = scan.scan(path, expected_format=fmt)
        assert {"TFOpLambda", "SlicingOpLambda", "TimeDistributed"} <= set(report.class_names)
        loaded = scan.load_model_file(path, expected_format=fmt, compile=True)
        assert loaded.optimizer is not None


def test_mobilenet_keras_passes(tmp_path):
    keras = pytest.importorskip("tf_keras")
    model = keras.applications.MobileNet(
        alpha=0.25, input_shape=(32, 32, 3), weights=None, classes=10
    )
    path = hostile.save_keras(tmp_path, "mobilenet.keras", model)
    report = scan.scan(path, expected_format="keras")
    assert report.n_layers == len(model.layers)
    assert "DepthwiseConv2D" in report.class_names
    loaded = scan.load_model_file(path, expected_format="keras")
    assert loaded.count_params() == model.count_params()


def test_weights_for_another_architecture_give_a_clear_error(tmp_path, benign):
    keras = pytest.importorskip("tf_keras")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    with pytest.raises(ModelFileError, match="do not fit model") as info:
        scan.load_weights_file(other, benign["weights"])
    assert isinstance(info.value, ModelZooError)
    assert "build constructor and kwargs" in str(info.value)
    assert info.value.path == str(benign["weights"])


def test_weights_scan_warns_about_an_unused_config(benign):
    report = scan.scan(benign["h5"], expected_format="h5-weights")
    assert any("load_weights never reads it" in w for w in report.warnings)
    fresh = hostile.tiny_model()
    scan.load_weights_file(fresh, benign["h5"])  # a full .h5 model works as weights
    expected = benign["model"].predict(benign["x"], verbose=0)
    np.testing.assert_allclose(fresh.predict(benign["x"], verbose=0), expected, rtol=1e-6)


def test_npz_weights_are_scanned(tmp_path, benign):
    """.keras files may carry model.weights.npz (itself a zip): its members are checked."""
    from tf_keras.src.saving import saving_lib

    path = tmp_path / "npz.keras"
    saving_lib.save_model(benign["model"], str(path), weights_format="npz")
    with zipfile.ZipFile(path) as archive:
        assert "model.weights.npz" in archive.namelist()
    scan.scan(path, expected_format="keras")
    # tf_keras 2.21 writes npz weights as pickled object arrays but reads them with
    # allow_pickle=False, so it cannot load its own npz files: a clean ModelFileError.
    with pytest.raises(ModelFileError, match="Object arrays cannot be loaded"):
        scan.load_model_file(path, expected_format="keras")

    inner = tmp_path / "inner.npz"
    with zipfile.ZipFile(inner, "w") as npz:
        npz.writestr("../escape.npy", b"\x93NUMPY")
    hostile_path = tmp_path / "hostile.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(hostile_path, "w") as out:
        for info in src.infolist():
            is_npz = info.filename == "model.weights.npz"
            out.writestr(info.filename, inner.read_bytes() if is_npz else src.read(info))
    _refused(hostile_path, "member model.weights.npz: member '../escape.npy' contains '..'")
