"""CLI model commands on the bundled offline model: layers, train, predict, export, demo."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from modelzoo.cli import app

pytestmark = pytest.mark.tf

DIGITS = "mobilenet_v1_0.25_32_digits"


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_layers_filter_json_and_cut_points(run):
    res = run("layers", DIGITS, "--filter", "*pw_13*", "--json")
    data = json.loads(res.stdout)
    assert [c["layer"] for c in data["cut_points"]][0] == "conv_pw_13_relu"
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["conv_pw_13", "conv_pw_13_bn", "conv_pw_13_relu"]
    assert "conv_pw_13_relu" in run("layers", DIGITS, "--cut-points").stdout
    everything = run("layers", DIGITS, "--filter", "*")
    assert everything.exit_code == 0 and "conv1" in everything.stdout


def test_train_predict_export_round_trip(run, image_folder, tmp_path):
    out = tmp_path / "digits56.keras"
    res = run(
        "train",
        DIGITS,
        "--cut",
        "conv_pw_13_relu",
        "--data",
        image_folder,
        "--epochs",
        3,
        "--batch-size",
        4,
        "--val-split",
        0.25,
        "--out",
        out,
        "--seed",
        5,
        "--json",
    )
    assert res.exit_code == 0, res.stdout
    data = json.loads(res.stdout)
    assert data["fit"]["shuffle_seed"] == 5  # --seed also sets the shuffle order
    assert data["labels"] == ["digit_5", "digit_6"]
    assert len(data["history"]["loss"]) == 3 and "val_accuracy" in data["history"]
    assert out.exists() and (tmp_path / "digits56.labels.json").exists()

    image = next((image_folder / "digit_6").glob("*.png"))
    pred = json.loads(run("predict", out, image, "--top", 2, "--json").stdout)
    assert {p["label"] for p in pred[0]["top"]} == {"digit_5", "digit_6"}
    assert abs(sum(p["p"] for p in pred[0]["top"]) - 1.0) < 1e-4

    web = tmp_path / "web"
    exported = json.loads(run("export", out, "--out", web, "--with-demo", "--json").stdout)
    assert (web / "model.json").exists() and (web / "index.html").exists()
    assert json.loads((web / "labels.json").read_text()) == ["digit_5", "digit_6"]
    assert exported["dtype"] == "float32"

    # int8 without --data calibrates on the folder the model was trained on.
    lite = tmp_path / "digits56.tflite"
    res = run("export", out, "--format", "litert", "--quantize", "int8", "--out", lite, "--json")
    report = json.loads(res.stdout)
    assert report["calibration"] == {"images": 16, "source": str(image_folder.resolve())}
    assert report["labels"] == ["digit_5", "digit_6"] and report["parity"]["passed"]


def test_predict_with_a_registry_model(run, image_folder):
    image = next((image_folder / "digit_5").glob("*.png"))
    pred = json.loads(run("predict", DIGITS, image, "--json").stdout)
    assert pred[0]["top"][0]["label"] in {"0", "1", "2", "3", "4"}


def test_train_errors_are_one_line(run, tmp_path):
    res = CliRunner().invoke(app, ["train", DIGITS, "--data", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "sub-folder per class" in res.stderr


def test_demo_runs_offline_and_reports_both_accuracies(run, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    res = run("demo", "--seeds", 1, "--epochs", 3, "--out", tmp_path / "demo", "--json")
    assert res.exit_code == 0, res.stdout
    data = json.loads(res.stdout)
    seed = data["seeds"][0]
    assert 0.0 <= seed["transfer_accuracy"] <= 1.0 and 0.0 <= seed["scratch_accuracy"] <= 1.0
    assert data["test_examples"] == 225
    assert (tmp_path / "demo" / "digits_5_9.keras").exists()
    assert (tmp_path / "demo" / "web" / "model.json").exists()
    # The next step it suggests works as printed: a page that trains a head in the browser.
    command = shlex.split(data["browser_training"])
    assert command[:2] == ["modelzoo", "export"] and "--browser-training" in command
    res = run(*command[1:])
    assert res.exit_code == 0, res.stdout
    config = json.loads((tmp_path / "demo" / "train-web" / "browser-training.json").read_text())
    assert config["base"]["cut"] == data["cut"]
    # And the LiteRT export it suggests, as printed.
    command = shlex.split(data["litert"])
    assert command[:2] == ["modelzoo", "export"] and "litert" in command
    res = run(*command[1:], "--json")
    assert res.exit_code == 0, res.stdout
    report = json.loads(res.stdout)
    assert (tmp_path / "demo" / "digits_5_9.tflite").stat().st_size == report["size"]
    assert report["parity"]["passed"] and report["labels"] == ["5", "6", "7", "8", "9"]


def test_train_without_cut_uses_and_names_the_first_cut_point(run, image_folder, tmp_path):
    args = ["train", DIGITS, "--data", image_folder, "--epochs", 1, "--batch-size", 4]
    res = run(*args, "--val-split", 0, "--out", tmp_path / "m.keras")
    assert res.exit_code == 0, res.stdout
    assert "cut at conv_pw_13_relu (the manifest's first cut point" in res.stdout
    res = run(*args, "--val-split", 0, "--out", tmp_path / "m2.keras", "--json")
    assert json.loads(res.stdout)["cut"] == "conv_pw_13_relu"


def test_layers_shows_the_shapes_a_load_produces(run):
    """MobileNetV3's constructor defaults to (None, None, 3); the manifest says 224x224."""
    name = "mobilenet_v3_small_minimalistic_1.0_224"
    data = json.loads(run("layers", name, "--filter", "Conv_1/BatchNorm", "--json").stdout)
    [layer] = data["layers"]
    assert list(layer["output_shape"]) == [None, 7, 7, 576]
    assert list(data["cut_points"][0]["shape"]) == [7, 7, 576]


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [([32, 32], "(height, width, channels)"), ([100000, 100000, 3], "too large")],
)
def test_train_with_an_absurd_manifest_input_shape_is_one_line(
    tmp_path, image_folder, shape, fragment
):
    import shutil

    from modelzoo.hub.registry import bundled_registry_path, write_index

    root = tmp_path / "reg"
    src = bundled_registry_path() / "models" / DIGITS
    shutil.copytree(src, root / "models" / DIGITS)
    write_index(root)
    path = root / "models" / DIGITS / "1.0.0" / "manifest.json"
    doc = json.loads(path.read_text("utf-8"))
    doc["input"]["shape"] = shape
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = CliRunner().invoke(
        app,
        ["train", DIGITS, "--data", str(image_folder), "--epochs", "1"]
        + ["--out", str(tmp_path / "m.keras")],
        env={"MODELZOO_REGISTRY": str(root)},
    )
    assert res.exit_code == 1, res.stdout
    assert "input.shape" in res.stderr and fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
