"""LiteRT export: real conversions with TensorFlow's converter, run in the LiteRT interpreter.

Every written ``.tflite`` is loaded again here with ``ai_edge_litert`` and compared with
Keras on inputs of the test's own, so the figures in ``FILE.tflite.json`` are checked
against an independent run, not just read back.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
from _server import LocalServer
from typer.testing import CliRunner

import modelzoo
from modelzoo.cli import app
from modelzoo.errors import ExportError, ParityError, UsageError

pytestmark = pytest.mark.tf

DIGITS = "mobilenet_v1_0.25_32_digits"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled digits model (real weights, preprocessing baked in), installed once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELZOO_HOME", str(tmp_path_factory.mktemp("litert-home")))
        mp.setenv("MODELZOO_DISABLE_PROGRESS_BARS", "1")
        return modelzoo.load(DIGITS, include_preprocessing=True)


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory):
    """Folders of real digit PNGs 0-4 (what the model learned), 20 per digit in sub-folders:
    ``seen`` as they are, ``dim`` the same images at 8% brightness (pixels 0-20)."""
    from PIL import Image

    from modelzoo.models.datasets import digits_to_rgb, load_digits

    root = tmp_path_factory.mktemp("litert-digits")
    x, y = load_digits()
    for d in range(5):
        # The last 20 of each digit: not the first ones _own_inputs reads.
        rgb = digits_to_rgb(x[y == d][-20:])
        for group, images in (("seen", rgb), ("dim", rgb * 0.08)):
            folder = root / group / str(d)
            folder.mkdir(parents=True)
            for i, img in enumerate(images.astype(np.uint8)):
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def _own_inputs(n=40):
    """Digits 0-4 as 0-255 RGB (the first ones, disjoint from ``digit_images``)."""
    from modelzoo.models.datasets import digits_to_rgb, load_digits

    x, y = load_digits()
    picks = np.concatenate([np.flatnonzero(y == d)[: n // 5] for d in range(5)])
    return digits_to_rgb(x[picks]).astype(np.float32)


def _run_tflite(path, x):
    """Run a written .tflite with ai_edge_litert on float inputs, (de)quantizing int8 I/O."""
    from ai_edge_litert.interpreter import Interpreter

    return _run_tflite_with(Interpreter(model_path=str(path)), x)


def _run_tflite_with(it, x):
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127)
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    y = it.get_tensor(out["index"]).astype(np.float32)
    if out["dtype"] == np.int8:
        scale, zero = out["quantization"]
        y = (y - zero) * scale
    return y


def test_every_quantization_mode_is_checked_and_described(digits, digit_images, tmp_path):
    x = _own_inputs()
    want = digits.predict(x, verbose=0)
    sizes = {}
    for mode in ("none", "float16", "dynamic", "int8"):
        out = tmp_path / f"digits_{mode}.tflite"
        data = digit_images / "seen" if mode == "int8" else None
        result = modelzoo.export_litert(digits, out, quantize=mode, data=data, labels=list("01234"))
        sizes[mode] = out.stat().st_size
        report = json.loads((tmp_path / f"digits_{mode}.tflite.json").read_text())
        assert report == json.loads(json.dumps(result.report))
        assert report["size"] == sizes[mode] == result.size
        assert report["quantization"] == mode
        assert report["runtime"].startswith("ai-edge-litert ")
        assert report["labels"] == list("01234")
        assert report["preprocessing"]["mode"] == "baked"
        assert report["preprocessing"]["input_size"] == [32, 32]
        assert report["inputs"][0]["shape"] == [-1, 32, 32, 3]
        assert report["outputs"][0]["shape"] == [-1, 5]
        parity = report["parity"]
        assert parity["passed"] and not parity["forced"]
        # The file on disk, run independently on other images, agrees as reported.
        got = _run_tflite(out, x)
        diff = float(np.max(np.abs(got - want)))
        if mode == "int8":
            assert parity["metric"] == "top1_agreement"
            assert parity["inputs"].startswith("64 images from ")
            assert parity["top1_agreement"] >= 0.9
            assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9
            assert report["calibration"]["images"] == 100  # 5 digits x 20 images
            assert report["inputs"][0]["dtype"] == "int8"
            assert report["outputs"][0]["dtype"] == "int8"
            # 0-255 pixels map exactly onto int8: scale 1, zero point -128.
            assert report["inputs"][0]["scale"] == pytest.approx(1.0)
            assert report["inputs"][0]["zero_point"] == -128
            assert 0 < report["outputs"][0]["scale"] < 0.01
        else:
            assert parity["metric"] == "relative_diff"
            assert parity["inputs"] == "16 seeded random inputs (seed 0)"
            assert report["calibration"] is None
            assert report["inputs"][0]["dtype"] == "float32"
            assert "scale" not in report["inputs"][0]
            assert parity["relative_diff"] <= parity["threshold"]
            assert diff <= modelzoo.export.litert.DEFAULT_MAX_DIFF[mode]
        if mode == "none":
            assert parity["max_abs_diff"] < 1e-4 and diff < 1e-4
    assert sizes["float16"] < 0.6 * sizes["none"]
    assert sizes["dynamic"] < 0.45 * sizes["none"]
    assert sizes["int8"] < 0.45 * sizes["none"]


def test_int8_without_data_is_refused_before_loading(tmp_path):
    out = tmp_path / "m.tflite"
    with pytest.raises(UsageError, match="pass --data DIR"):
        modelzoo.export_litert(DIGITS, out, quantize="int8")
    res = CliRunner().invoke(
        app, ["export", DIGITS, "--format", "litert", "--quantize", "int8", "--out", str(out)]
    )
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--data" in lines[0]
    assert not out.exists()
    assert not (tmp_path / "mz-home" / "blobs").exists()  # nothing was even installed
    for bad in (dict(min_agreement=1.5), dict(max_diff=-1.0), dict(max_diff=float("nan"))):
        with pytest.raises(UsageError, match="Received"):
            modelzoo.export_litert(DIGITS, out, **bad)
    with pytest.raises(UsageError, match="quantize='int4'"):
        modelzoo.export_litert(DIGITS, out, quantize="int4")
    with pytest.raises(UsageError, match=r"\.tflite file"):
        modelzoo.export_litert(DIGITS, tmp_path / "m.onnx")


def test_an_op_litert_cannot_run_is_named(tmp_path):
    import tf_keras as keras

    # CategoryEncoding counts tokens with TensorFlow's DenseBincount, which has no
    # LiteRT built-in kernel.
    inp = keras.Input((4,), dtype="int32")
    x = keras.layers.CategoryEncoding(num_tokens=10, output_mode="count")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(x), name="counts")
    out = tmp_path / "counts.tflite"
    with pytest.raises(ExportError) as info:
        modelzoo.export_litert(model, out)
    message = str(info.value)
    assert "DenseBincount" in message and "'category_encoding' (CategoryEncoding)" in message
    assert info.value.layer == "category_encoding"
    assert "\n" not in message
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_calibrated_on_unrepresentative_images_is_refused_unless_forced(
    digits, digit_images, tmp_path
):
    out = tmp_path / "dim.tflite"
    # Calibrated on dim images, int8 learns ranges a normal image overflows: checked on
    # normal images, it loses Keras' top-1 class on many of them.
    args = dict(quantize="int8", data=digit_images / "dim", check_data=digit_images / "seen")
    with pytest.raises(ParityError) as info:
        modelzoo.export_litert(digits, out, **args)
    parity = info.value.parity
    assert parity["metric"] == "top1_agreement" and parity["top1_agreement"] < 0.9
    assert parity["inputs"] == f"64 images from {digit_images / 'seen'}"
    message = str(info.value)
    assert "\n" not in message and "top-1 agreement" in message and "--force" in message
    assert not out.exists() and not list(tmp_path.iterdir())

    result = modelzoo.export_litert(digits, out, force=True, **args)
    report = json.loads((tmp_path / "dim.tflite.json").read_text())
    assert report["parity"] == result.parity
    assert report["parity"]["passed"] is False and report["parity"]["forced"] is True
    assert report["parity"]["top1_agreement"] == parity["top1_agreement"]
    assert report["calibration"] == {"images": 100, "source": str(digit_images / "dim")}
    x = _own_inputs()
    agree = np.mean(_run_tflite(out, x).argmax(1) == digits.predict(x, verbose=0).argmax(1))
    assert agree < 0.9  # the file written is the bad one the check measured


def test_cli_json_writes_a_forced_export_past_the_threshold(tmp_path):
    out = tmp_path / "d.tflite"
    res = CliRunner().invoke(
        app,
        [
            "export",
            DIGITS,
            "--format",
            "litert",
            "--quantize",
            "dynamic",
            "--max-diff",
            "1e-7",
            "--force",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report == json.loads((tmp_path / "d.tflite.json").read_text())
    assert report["quantization"] == "dynamic" and report["size"] == out.stat().st_size
    assert report["parity"]["passed"] is False and report["parity"]["forced"] is True
    assert report["parity"]["threshold"] == 1e-7 < report["parity"]["relative_diff"]
    assert report["labels"] == [str(d) for d in range(5)]  # from the manifest
    assert report["model"]["source"] == DIGITS and report["model"]["cut"] is None
    assert "failed the check against Keras" in res.stderr


def test_registry_name_with_cut_over_http(tmp_path, monkeypatch):
    from pathlib import Path

    out = tmp_path / "features.tflite"
    bundled = Path(__file__).parents[2] / "registry"  # served as a remote registry
    with LocalServer(bundled) as server:
        monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
        res = CliRunner().invoke(
            app,
            [
                "export",
                DIGITS,
                "--cut",
                "conv_pw_11_relu",
                "--format",
                "litert",
                "--out",
                str(out),
                "--json",
            ],
        )
        assert res.exit_code == 0, res.stderr
        fetched = [p for p in server.paths("GET") if p.endswith(".h5")]
        features = modelzoo.load(DIGITS, "conv_pw_11_relu", include_preprocessing=True)
    assert fetched == [f"/models/{DIGITS}/1.0.0/notop.h5"]  # a cut needs no classifier
    report = json.loads(res.stdout)
    assert report["model"]["cut"] == "conv_pw_11_relu"
    assert report["labels"] is None  # features, not classes
    assert report["outputs"][0]["shape"] == [-1, 2, 2, 128]
    assert report["preprocessing"]["mode"] == "baked"  # the manifest's "tf", in the model
    x = _own_inputs(10)
    got, want = _run_tflite(out, x), features.predict(x, verbose=0)
    assert np.max(np.abs(got - want)) <= 1e-3 * np.max(np.abs(want))


def test_without_ai_edge_litert_tf_lite_checks_and_says_so(tmp_path, monkeypatch, caplog):
    import tf_keras as keras

    from modelzoo.export.litert import litert_interpreter

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp))
    out = tmp_path / "m.tflite"
    modelzoo.export_litert(model, out)
    _, runtime = litert_interpreter(out.read_bytes())
    assert runtime.startswith("ai-edge-litert ")
    # As if ai-edge-litert were not installed: its import fails.
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        interpreter, runtime = litert_interpreter(out.read_bytes())
    assert runtime.startswith("tf.lite.Interpreter (TensorFlow 2.") and "fallback" in runtime
    assert type(interpreter).__module__.startswith("tensorflow.")
    assert "ai-edge-litert is not installed" in caplog.text and "modelzoo[litert]" in caplog.text
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(_run_tflite_with(interpreter, x), model(x).numpy(), atol=1e-6)


def test_a_model_loaded_without_its_preprocessing_says_what_to_apply(digits, tmp_path):
    bare = modelzoo.load(DIGITS)  # takes x / 127.5 - 1, not pixels
    out = tmp_path / "bare.tflite"
    report = modelzoo.export_litert(bare, out).report
    assert report["preprocessing"] == {
        "mode": "tf",
        "input_size": [32, 32],
        "channels": 3,
        "channel_order": "rgb",
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
    }
    # (pixels - mean) / std into the bare .tflite gives the baked model's outputs.
    x = _own_inputs(10)
    got = _run_tflite(out, (x - 127.5) / 127.5)
    np.testing.assert_allclose(got, digits.predict(x, verbose=0), atol=1e-4)


def test_a_learner_trained_on_a_folder_calibrates_int8_on_it(image_folder, tmp_path):
    learner = modelzoo.TransferLearner(DIGITS, "conv_pw_13_relu", num_classes=2)
    with pytest.raises(UsageError, match="pass --data DIR"):  # not trained on a folder yet
        modelzoo.export_litert(learner, tmp_path / "early.tflite", quantize="int8")
    learner.fit(image_folder, epochs=1, batch_size=8, verbose=0)
    result = modelzoo.export_litert(learner, tmp_path / "head.tflite", quantize="int8")
    report = result.report
    assert report["calibration"] == {"images": 16, "source": str(image_folder.resolve())}
    assert report["parity"]["inputs"] == f"16 images from {image_folder.resolve()}"
    assert report["labels"] == ["digit_5", "digit_6"] == learner.labels
    assert report["preprocessing"]["mode"] == "baked"
    assert report["outputs"][0]["shape"] == [-1, 2]
