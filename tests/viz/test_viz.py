"""Pictures and maps of models: feature maps, filters, training curves, the layer tree."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from modelzoo.cli import app
from modelzoo.errors import DependencyError, LayerNotFoundError, UsageError
from modelzoo.viz import maps as viz
from modelzoo.viz.plots import DPI

BUNDLED = "mobilenet_v1_0.25_32_digits"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def png(path: Path) -> np.ndarray:
    """Decoded pixels, checked to be a real, non-blank picture."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels[:, :, :3].var() > 0, f"{path} is blank"
    return pixels


def fig_pixels(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * DPI
    return round(height), round(width)


def tile_grid(fig):
    grids = [ax for ax in fig.axes if ax.get_label() == "tile grid"]
    assert grids, "no tile grid in the figure"
    return grids


def tile_origins(ax) -> list[tuple[float, float]]:
    """Top-left corner of each tile's image, in the grid's inch coordinates."""
    corners = []
    for image in ax.images:
        left, _, _, top = image.get_extent()
        corners.append((round(left, 6), round(top, 6)))
    return corners


# -- grid layout ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (8, (3, 3)),
     (9, (3, 3)), (10, (3, 4)), (16, (4, 4)), (17, (4, 5)), (64, (8, 8)), (65, (8, 9))],
)  # fmt: skip
def test_grid_shape_examples(n, expected):
    assert viz.grid_shape(n) == expected


def test_grid_shape_is_ceil_sqrt_columns_without_empty_rows():
    for n in range(1, 400):
        rows, cols = viz.grid_shape(n)
        assert cols == math.ceil(math.sqrt(n))
        assert rows * cols >= n > (rows - 1) * cols


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_grid_shape_rejects_non_positive_ints(bad):
    with pytest.raises(UsageError, match="at least one tile"):
        viz.grid_shape(bad)


# -- feature-map figures (numpy in, no TensorFlow) -----------------------------------------


def test_maps_figure_tiles_labels_and_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    maps = rng.random((5, 7, 10)) * 3
    fig = viz.feature_maps_figure({"block/conv": maps}, max_channels=6)
    (grid,) = tile_grid(fig)
    assert len(grid.images) == 6
    rows, cols = viz.grid_shape(6)
    origins = tile_origins(grid)
    assert len({x for x, _ in origins}) == cols and len({y for _, y in origins}) == rows
    # row-major: the first `cols` tiles share the top row
    assert len({y for _, y in origins[:cols]}) == 1
    labels = [t.get_text() for t in grid.texts]
    assert labels == [str(c) for c in range(6)]
    texts = " ".join(t.get_text() for t in fig.texts)
    assert (
        "block/conv" in texts and "5\u00d77\u00d710" in texts and "channels 0\u20135 of 10" in texts
    )
    # per-channel normalisation: every tile spans the full colour scale
    for c, image in enumerate(grid.images):
        data = np.asarray(image.get_array())
        assert data.min() == 0.0 and data.max() == 1.0
        expected = (maps[:, :, c] - maps[:, :, c].min()) / np.ptp(maps[:, :, c])
        np.testing.assert_allclose(data, expected)
    path = viz.save_figure(fig, tmp_path / "sub" / "maps.png")
    assert png(path).shape[:2] == fig_pixels(fig)


def test_maps_figure_marks_dead_and_flat_channels_and_uses_one_scale_for_1x1():
    maps = np.stack([np.zeros((3, 3)), np.full((3, 3), 2.0), np.arange(9.0).reshape(3, 3)], -1)
    (grid,) = tile_grid(viz.feature_maps_figure({"relu": maps}))
    assert [t.get_text() for t in grid.texts] == ["0 dead", "1 flat", "2"]
    one = np.array([[[0.0, 1.0, 4.0, 0.0]]])  # a 1x1 map per channel
    fig = viz.feature_maps_figure({"top": one})
    (grid,) = tile_grid(fig)
    assert [float(np.asarray(im.get_array())[0, 0]) for im in grid.images] == [0, 0.25, 1, 0]
    assert "one colour scale" in " ".join(t.get_text() for t in fig.texts)


def test_maps_sheet_stacks_one_grid_per_layer():
    rng = np.random.default_rng(1)
    maps = {"a": rng.random((8, 8, 3)), "b": rng.random((2, 2, 20)), "c": rng.random((4, 4, 1))}
    fig = viz.feature_maps_figure(maps, max_channels=16)
    grids = tile_grid(fig)
    assert [len(g.images) for g in grids] == [3, 16, 1]
    tops = [g.get_position().y1 for g in grids]
    assert tops == sorted(tops, reverse=True)  # in the order given, top to bottom


def test_maps_figure_rejects_non_spatial_values_and_bad_options():
    with pytest.raises(UsageError, match=r"height, width, channels.*'dense' with shape \(10,\)"):
        viz.feature_maps_figure({"dense": np.ones(10)})
    with pytest.raises(UsageError, match="max_channels"):
        viz.feature_maps_figure({"x": np.ones((2, 2, 2))}, max_channels=0)
    with pytest.raises(UsageError, match="normalize"):
        viz.feature_maps_figure({"x": np.ones((2, 2, 2))}, normalize="global")
    with pytest.raises(UsageError, match="no layers"):
        viz.feature_maps_figure({})


# -- training curves --------------------------------------------------------------------

HISTORY = {
    "loss": [1.2, 0.7, 0.4, 0.3],
    "accuracy": [0.40, 0.70, 0.85, 0.90],
    "val_loss": [1.3, 0.9, 0.6, 0.65],
    "val_accuracy": [0.35, 0.60, 0.80, 0.78],
}


def test_history_figure_draws_the_actual_values():
    fig = viz.history_figure(HISTORY)
    loss_ax, metric_ax = fig.axes
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert lines["loss"] in loss_ax.get_lines() and lines["accuracy"] in metric_ax.get_lines()
    for key, values in HISTORY.items():
        np.testing.assert_allclose(lines[key].get_ydata(), values)
        np.testing.assert_allclose(lines[key].get_xdata(), [1, 2, 3, 4])
    assert {ln.get_label() for ln in loss_ax.get_lines()} >= {"loss", "val_loss"}
    assert {ln.get_label() for ln in metric_ax.get_lines()} >= {"accuracy", "val_accuracy"}
    assert lines["val_loss"].get_linestyle() == "--" and lines["loss"].get_linestyle() == "-"
    best = {ln.get_label(): ln.get_xydata().tolist() for ax in fig.axes for ln in ax.get_lines()}
    assert best["best val_loss: 0.6 (epoch 3)"] == [[3, 0.6]]
    assert best["best val_accuracy: 0.8 (epoch 3)"] == [[3, 0.8]]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends[0] == ["loss", "val_loss", "best val_loss: 0.6 (epoch 3)"]


def test_plot_history_writes_a_png_with_two_panels(tmp_path):
    path = viz.plot_history(HISTORY, tmp_path / "curves" / "history.png")
    assert path == tmp_path / "curves" / "history.png"
    assert png(path).shape[:2] == fig_pixels(viz.history_figure(HISTORY))


def test_history_with_only_loss_has_one_panel_and_accepts_history_objects(tmp_path):
    class History:  # the shape of keras.callbacks.History
        history = {"loss": [3.0, 2.0], "lr": [0.1, 0.1]}

    fig = viz.history_figure(History())
    assert len(fig.axes) == 1
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["loss"]
    assert viz.plot_history(History(), tmp_path / "h.svg").read_text().startswith("<?xml")


@pytest.mark.parametrize(
    ("history", "message"),
    [({}, "dict of metric name"), ([1, 2], "dict of metric name"), ({"loss": []}, "no values"),
     ({"lr": [0.1]}, "no loss or metric")],
)  # fmt: skip
def test_plot_history_rejects_empty_or_wrong_input(tmp_path, history, message):
    with pytest.raises(UsageError, match=message):
        viz.plot_history(history, tmp_path / "h.png")


def test_saving_to_an_unknown_suffix_or_a_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"'\.bmpx'.*Valid suffixes:.*\.png"):
        viz.plot_history(HISTORY, tmp_path / "h.bmpx")
    with pytest.raises(UsageError, match="is a folder"):
        viz.plot_history(HISTORY, tmp_path)
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib_is_a_one_line_dependency_error(tmp_path):
    # A fresh interpreter where importing matplotlib fails, as on an install without the
    # extra; no TensorFlow is loaded on this path.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from modelzoo import errors\n"
        "from modelzoo.viz import maps as viz\n"
        "try:\n"
        "    viz.plot_history({'loss': [1.0]}, 'h.png')\n"
        "except errors.DependencyError as exc:\n"
        "    print('CAUGHT', isinstance(exc, ImportError), exc)\n"
        "sys.modules['tensorboard'] = None\n"
        "try:\n"
        "    viz.tensorboard_callback('logs')\n"
        "except errors.DependencyError as exc:\n"
        "    print('TB', exc)\n"
        "assert 'tensorflow' not in sys.modules\n"
        "sys.argv = ['modelzoo', 'filters', 'nothing.keras']\n"
        "from modelzoo.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "MODELZOO_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "CAUGHT True matplotlib is needed for drawing pictures" in proc.stdout
    assert "pip install 'modelzoo[viz]'" in proc.stdout
    assert "TB tensorboard is needed for TensorBoard logs" in proc.stdout
    assert "pip install 'tensorboard>=2.21,<2.22'" in proc.stdout
    assert proc.returncode == 1
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and "matplotlib is needed" in error_lines[0]
    assert "Traceback" not in proc.stderr
    assert "tensorflow" not in proc.stderr.lower()
    assert issubclass(DependencyError, ImportError)


def test_cli_errors_keep_square_brackets():
    result = run("info", "missing[viz]", ok=False)
    assert result.exit_code == 1 and "'missing[viz]'" in result.output


# -- TensorFlow: activations, feature maps, filters, layer map --------------------------


@pytest.fixture(scope="module")
def tiny():
    """8x8x3 -> conv(4, same) -> relu -> pool /2 -> conv(6, valid) -> GAP -> dense(3)."""
    from modelzoo.backend import keras

    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.Input((8, 8, 3), name="image")
    x = k.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = k.layers.ReLU(name="relu")(x)
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.Conv2D(6, 3, name="conv2")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = k.layers.Dense(3, name="dense")(x)
    model = k.Model(inputs, outputs, name="tiny")
    conv = model.get_layer("conv")
    kernel = np.arange(3 * 3 * 3 * 4, dtype=np.float32).reshape(3, 3, 3, 4) / 50.0 - 1.0
    conv.set_weights([kernel, np.array([0.1, -0.2, 0.0, 0.3], dtype=np.float32)])
    return model


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).uniform(0, 255, (8, 8, 3)).astype(np.float32)


@pytest.mark.tf
def test_activations_match_a_direct_tf_keras_forward_pass(tiny, image):
    from modelzoo.backend import keras

    k = keras()
    batch = np.stack([image, image[::-1], image / 2])
    for name in ("conv", "relu", "pool", "conv2", "dense"):
        direct = k.Model(tiny.input, tiny.get_layer(name).output)(batch).numpy()
        got = viz.activations(tiny, name, batch, batch_size=2)
        assert got.shape == direct.shape and got.dtype == np.float32
        # float32 sums of values in the thousands: compare relative to the layer's scale
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())
    relu, pool = viz.activations(tiny, ["relu", "pool"], image)
    assert relu.shape == (1, 8, 8, 4) and pool.shape == (1, 4, 4, 4)
    np.testing.assert_allclose(relu, np.maximum(viz.activations(tiny, "conv", image), 0))
    np.testing.assert_allclose(viz.activations(tiny, 2, image), relu)  # top-level index


@pytest.mark.tf
def test_activations_read_image_files_at_the_input_size(tiny, tmp_path):
    from PIL import Image

    from modelzoo.models.images import read_images

    rng = np.random.default_rng(5)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)).save(path)
    expected = viz.activations(tiny, "relu", read_images([path], (8, 8)))
    np.testing.assert_allclose(viz.activations(tiny, "relu", path), expected)
    np.testing.assert_allclose(viz.activations(tiny, "relu", [str(path)]), expected)
    with pytest.raises(UsageError, match="No such image file"):
        viz.activations(tiny, "relu", tmp_path / "missing.png")


@pytest.mark.tf
def test_activation_errors_name_the_problem(tiny, image):
    with pytest.raises(LayerNotFoundError, match=r"'rleu'.*Did you mean: 'relu'"):
        viz.activations(tiny, "rleu", image)
    with pytest.raises(UsageError, match=r"\(8, 8, 3\).*Received: \(16, 16, 3\).*file path"):
        viz.activations(tiny, "relu", np.zeros((16, 16, 3)))
    with pytest.raises(UsageError, match="one image. Received a batch of 2"):
        viz.feature_maps(tiny, "relu", np.zeros((2, 8, 8, 3)))
    with pytest.raises(UsageError, match=r"'dense' with shape \(3,\)"):
        viz.feature_maps(tiny, "dense", image)
    with pytest.raises(UsageError, match="batch_size"):
        viz.activations(tiny, "relu", image, batch_size=0)
    with pytest.raises(UsageError, match="needs a tf_keras Model"):
        viz.activations(object(), "relu", image)


@pytest.mark.tf
def test_feature_maps_picture_has_one_tile_per_channel(tiny, image, tmp_path):
    pixels = viz.feature_maps(tiny, "pool", image)
    values = viz.activations(tiny, "pool", image)[0]
    fig = viz.feature_maps_figure({"pool": values}, max_channels=3)
    (grid,) = tile_grid(fig)
    assert len(grid.images) == 3
    full = viz.feature_maps_figure({"pool": values})
    assert pixels.dtype == np.uint8 and pixels.shape == (*fig_pixels(full), 3)
    assert pixels.var() > 0
    path = viz.save_feature_maps(tiny, ["relu", "pool"], image, tmp_path / "sheet.png")
    sheet = viz.feature_maps_figure(
        dict(
            zip(
                ["relu", "pool"],
                [a[0] for a in viz.activations(tiny, ["relu", "pool"], image)],
                strict=True,
            )
        )
    )
    assert png(path).shape[:2] == fig_pixels(sheet)


@pytest.mark.tf
def test_filter_tiles_of_known_weights(tiny):
    from modelzoo.backend import keras

    first = viz.filter_tiles(tiny)  # default: the first Conv2D
    kernel = tiny.get_layer("conv").get_weights()[0]
    assert (first.layer, first.kind, first.total, first.kernel_shape) == (
        "conv",
        "rgb",
        4,
        (3, 3, 3, 4),
    )
    for i in range(4):
        f = kernel[:, :, :, i]
        np.testing.assert_allclose(first.tiles[i], (f - f.min()) / np.ptp(f), atol=1e-6)
    deeper = viz.filter_tiles(tiny, "conv2", max_filters=5)
    k2 = tiny.get_layer("conv2").get_weights()[0]
    assert deeper.kind == "gray" and deeper.total == 6 and deeper.tiles.shape == (5, 3, 3)
    mean = k2.mean(axis=2)
    for i in range(5):
        expected = (mean[:, :, i] - mean[:, :, i].min()) / np.ptp(mean[:, :, i])
        np.testing.assert_allclose(deeper.tiles[i], expected, atol=1e-6)
    assert "not directly interpretable" in deeper.note

    k = keras()
    inputs = k.Input((6, 6, 2))
    x = k.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inputs)
    x = k.layers.Conv2D(3, 1, name="pw")(x)
    model = k.Model(inputs, x)
    dw = viz.filter_tiles(model)
    assert dw.layer == "dw" and dw.kind == "gray" and dw.tiles.shape == (4, 3, 3)
    pw = viz.filter_tiles(model, "pw")
    assert pw.kind == "matrix" and pw.tiles.shape == (4, 3)
    np.testing.assert_allclose(pw.tiles, model.get_layer("pw").get_weights()[0][0, 0])


@pytest.mark.tf
def test_filters_default_looks_inside_nested_models_and_errors(tiny, tmp_path):
    from modelzoo.backend import keras

    k = keras()
    inputs = k.Input((8, 8, 3))
    outer = k.Model(inputs, k.layers.Dense(2)(tiny(inputs)), name="outer")
    tiles = viz.filter_tiles(outer)
    assert tiles.layer == "tiny/conv" and tiles.kind == "rgb"
    assert viz.filter_tiles(outer, "conv2").layer == "tiny/conv2"  # bare name, found nested
    path = viz.plot_filters(outer, tmp_path / "f.png")
    assert png(path).shape[:2] == fig_pixels(viz.filters_figure(tiles))
    with pytest.raises(UsageError, match=r"'relu' is a ReLU, not a 2D convolution.*conv, conv2"):
        viz.filter_tiles(tiny, "relu")
    with pytest.raises(LayerNotFoundError, match="Did you mean"):
        viz.filter_tiles(tiny, "conv9")
    dense_only = k.Sequential([k.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(UsageError, match="no 2D convolution"):
        viz.filter_tiles(dense_only)
    with pytest.raises(UsageError, match="max_filters"):
        viz.filter_tiles(tiny, max_filters=0)


@pytest.mark.tf
def test_layer_map_marks_resolution_drops_stage_ends_and_cut_points(tiny):
    rows = {r.path: r for r in viz.layer_map(tiny, cut_points=["relu"])}
    assert rows["pool"].downsample == ((8, 8), (4, 4))
    assert rows["conv2"].downsample == ((4, 4), (2, 2))
    assert rows["conv"].downsample is None
    assert rows["relu"].stage_end == (8, 8) and rows["pool"].stage_end == (4, 4)
    assert rows["conv2"].stage_end == (2, 2)
    assert rows["relu"].cut_point == "" and rows["conv"].cut_point is None
    assert [r.path for r in viz.layer_map(tiny) if r.cut_point is not None] == []
    text = viz.format_layer_map(list(rows.values()), title="tiny")
    assert "v halves 8x8 -> 4x4" in text and "* CUT POINT" in text
    assert "resolution: 8x8 -> 4x4 (pool) -> 2x2 (conv2)" in text
    assert "usual cuts): relu 8x8x4, pool 4x4x4, conv2 2x2x6" in text


@pytest.mark.tf
def test_layer_map_tree_nests_inner_models(tiny):
    from modelzoo.backend import keras
    from modelzoo.hub.manifest import CutPoint

    k = keras()
    inputs = k.Input((8, 8, 3))
    outer = k.Model(inputs, k.layers.Dense(2, name="head")(tiny(inputs)), name="outer")
    rows = viz.layer_map(outer, cut_points=[CutPoint("pool", note="4x4 grid")])
    tree = viz.layer_map_tree(rows)
    assert [n["type"] for n in tree] == ["InputLayer", "Functional", "Dense"]
    assert "layers" not in tree[0] and tree[1]["name"] == "tiny"
    inner = tree[1]["layers"]
    assert [n["name"] for n in inner][1:] == ["conv", "relu", "pool", "conv2", "gap", "dense"]
    pool = inner[3]
    assert pool["path"] == "tiny/pool" and pool["cut_point"] == "4x4 grid"
    assert pool["downsample"] == ((8, 8), (4, 4))
    text = viz.format_layer_map(rows)
    assert "\n  pool " in text and "* CUT POINT: 4x4 grid" in text


@pytest.mark.tf
def test_tensorboard_callback_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional install")
    from modelzoo.backend import keras

    k = keras()
    inputs = k.Input((2,))
    m = k.Model(inputs, k.layers.Dense(1)(inputs))
    m.compile("sgd", "mse")
    callback = viz.tensorboard_callback(tmp_path / "logs")
    m.fit(np.ones((4, 2)), np.ones(4), epochs=1, verbose=0, callbacks=[callback])
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


# -- CLI on a tiny saved model ----------------------------------------------------------


@pytest.fixture()
def saved(tiny, image, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    model_path = tmp_path / "tiny.keras"
    tiny.save(model_path)
    image_path = tmp_path / "img.png"
    Image.fromarray(image.astype(np.uint8)).save(image_path)
    return model_path, image_path


@pytest.mark.tf
def test_cli_activations_writes_one_picture_per_layer_with_stats(saved, tmp_path):
    model, img = saved
    data = json.loads(
        run("activations", model, "--layer", "relu", "-l", "pool", "--image", img, "--json").stdout
    )
    assert data["files"] == ["maps_relu.png", "maps_pool.png"]
    for name in data["files"]:
        png(tmp_path / name)
    relu = data["layers"][0]
    direct = viz.activations(str(model), "relu", img)[0]
    assert relu["shape"] == [8, 8, 4] and relu["file"] == "maps_relu.png"
    assert relu["max"] == pytest.approx(float(direct.max()), rel=1e-5)
    assert relu["dead_channels"] == int(np.sum(~direct.reshape(-1, 4).any(axis=0)))
    human = run("activations", model, "-l", "conv2", "-i", img, "--out", tmp_path / "c2.png").stdout
    assert "conv2: 2x2x6" in human and "c2.png" in human
    png(tmp_path / "c2.png")


@pytest.mark.tf
def test_cli_activations_sheet_and_out_patterns(saved, tmp_path):
    model, img = saved
    sheet = json.loads(
        run("activations", model, "-l", "relu", "-l", "pool", "-i", img, "--sheet", "--json").stdout
    )
    assert (
        sheet["files"] == ["maps.png"] and [s["file"] for s in sheet["layers"]] == ["maps.png"] * 2
    )
    png(tmp_path / "maps.png")
    out_dir = tmp_path / "pics"
    out_dir.mkdir()
    pattern = json.loads(
        run("activations", model, "-l", "relu", "-l", "pool", "-i", img,
            "--out", tmp_path / "x" / "act.png", "--max-channels", "2", "--json").stdout
    )  # fmt: skip
    assert pattern["files"] == [str(tmp_path / "x" / f"act_{n}.png") for n in ("relu", "pool")]
    folder = json.loads(
        run("activations", model, "-l", "pool", "-i", img, "-o", out_dir, "--json").stdout
    )
    assert folder["files"] == [str(out_dir / "maps_pool.png")]


@pytest.mark.tf
def test_cli_activation_errors_are_one_line(saved):
    model, img = saved
    result = run("activations", model, "-l", "rleu", "-i", img, ok=False)
    assert result.exit_code == 1
    assert "error: No layer 'rleu'" in result.output and "Did you mean: 'relu'" in result.output
    assert "Traceback" not in result.output
    result = run("activations", model, "-l", "dense", "-i", img, ok=False)
    assert result.exit_code == 1 and "(height, width, channels)" in result.output
    result = run("activations", model, "-l", "relu", "-i", "nope.png", ok=False)
    assert result.exit_code == 1 and "No such image file: nope.png" in result.output


@pytest.mark.tf
def test_cli_filters_and_tree_on_a_saved_model(saved, tmp_path):
    model, _ = saved
    data = json.loads(run("filters", model, "--json").stdout)
    assert data["layer"] == "conv" and data["view"] == "rgb" and data["filters"] == 4
    assert data["kernel_shape"] == [3, 3, 3, 4] and data["file"] == "filters.png"
    png(tmp_path / "filters.png")
    human = run("filters", model, "--layer", "conv2", "--out", tmp_path / "f2.png").stdout
    assert "conv2 (Conv2D, kernel 3x3x4x6): 6 of 6 filters as gray" in human
    result = run("filters", model, "--layer", "gap", ok=False)
    assert result.exit_code == 1 and "not a 2D convolution" in result.output

    text = run("layers", model, "--tree").stdout
    assert "pool" in text and "v halves 8x8 -> 4x4" in text and "last at 8x8" in text
    tree = json.loads(run("layers", model, "--tree", "--json").stdout)["tree"]
    assert [n["name"] for n in tree] == ["image", "conv", "relu", "pool", "conv2", "gap", "dense"]
    assert tree[3]["downsample"] == [[8, 8], [4, 4]]
    only = run("layers", model, "--tree", "--filter", "*conv*").stdout
    assert "conv2" in only and "relu " not in only


# -- the bundled pretrained model --------------------------------------------------------


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    from PIL import Image

    from modelzoo.models.datasets import digits_to_rgb, load_digits

    images, labels = load_digits()
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    rgb = digits_to_rgb(images[labels == 3][:1])[0]
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


@pytest.mark.tf
def test_bundled_model_applies_its_preprocessing(digit_png):
    import modelzoo as mz
    from modelzoo.models.images import read_images
    from modelzoo.models.preprocessing import preprocess

    model = mz.load(BUNDLED)
    raw = read_images([digit_png], (32, 32))
    direct = mz.slice(model, "conv_pw_1_relu")(preprocess(raw, "tf")).numpy()
    # a file path is read at the input size; a registry name is covered by the CLI test
    np.testing.assert_allclose(
        viz.activations(model, "conv_pw_1_relu", digit_png), direct, atol=1e-5
    )
    np.testing.assert_allclose(viz.activations(model, "conv_pw_1_relu", raw), direct, atol=1e-5)
    baked = mz.load(BUNDLED, include_preprocessing=True)  # nested base, preprocessing inside
    np.testing.assert_allclose(viz.activations(baked, "conv_pw_1_relu", raw), direct, atol=1e-4)
    assert viz.filter_tiles(baked).layer.endswith("/conv1")  # not the preprocessing conv
    rows = {r.path: r for r in viz.layer_map(baked)}  # cut points from the manifest
    base = next(r.path for r in rows.values() if r.is_model)
    assert rows[f"{base}/conv_pw_13_relu"].cut_point.startswith("last activation")
    assert rows[f"{base}/conv_pw_1_relu"].stage_end == (16, 16)
    assert rows["preprocess_tf"].stage_end is None  # no features to cut at
    # already-preprocessed pixels with preprocessing="none" give the same numbers
    np.testing.assert_allclose(
        viz.activations(model, "conv_pw_1_relu", preprocess(raw, "tf"), preprocessing="none"),
        direct,
        atol=1e-5,
    )


@pytest.mark.tf
def test_cli_on_the_bundled_model(digit_png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = json.loads(
        run("activations", BUNDLED, "-l", "conv_pw_1_relu", "-l", "conv_pw_13_relu",
            "-i", digit_png, "--json").stdout
    )  # fmt: skip
    assert data["preprocessing"] == "tf"
    assert [s["shape"] for s in data["layers"]] == [[16, 16, 16], [1, 1, 256]]
    for name in data["files"]:
        png(tmp_path / name)
    text = run("layers", BUNDLED, "--tree").stdout
    for cut in ("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"):
        line = next(ln for ln in text.splitlines() if ln.startswith(cut + " "))
        assert "* CUT POINT" in line
    assert "v halves 16x16 -> 8x8" in text
    assert "usual cuts): conv_pw_1_relu 16x16x16, conv_pw_3_relu 8x8x32" in text
