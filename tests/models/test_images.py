"""Image files through the CLI: one reader for train and predict, bad files and folders.

Real image files on disk, of a size (50x37) different from the model's input (32x32),
so that the resize method matters.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from modelzoo.cli import app

pytestmark = pytest.mark.tf

DIGITS = "mobilenet_v1_0.25_32_digits"


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _photo(rng, bright: bool) -> np.ndarray:
    """A 37x50 RGB image with fine detail (nearest and bilinear resizes disagree on it)."""
    img = rng.integers(0, 256, (37, 50, 3)).astype(np.float32)
    img[:, ::2] *= 0.2  # stripes
    if bright:
        img[10:30, 15:40] = 255.0
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Two classes of 50x37 photos, PNG and JPEG, plus a grey PNG (read as RGB)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(11)
    for label, bright in (("dark", False), ("light", True)):
        (root / label).mkdir()
        for i in range(6):
            img = Image.fromarray(_photo(rng, bright))
            if i % 2:
                img.save(root / label / f"{i}.jpg", quality=90)
            else:
                img.save(root / label / f"{i}.png")
    Image.fromarray(_photo(rng, True)[..., 0]).save(root / "light" / "grey.png")
    return root


@pytest.fixture(scope="module")
def trained(photo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "photos.keras"
    res = _run(
        "train", DIGITS, "--cut", "conv_pw_13_relu", "--data", photo_folder, "--epochs", 2,
        "--batch-size", 4, "--val-split", 0.25, "--out", out, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_predict_reads_pixels_exactly_as_training_does(trained, photo_folder):
    import tf_keras as keras

    files = sorted(str(p) for p in photo_folder.rglob("*.*"))
    res = _run("predict", trained, *files, "--top", 2, "--json")
    assert res.exit_code == 0, res.output
    by_cli = {
        r["image"]: [p["p"] for p in sorted(r["top"], key=lambda t: t["label"])]
        for r in json.loads(res.stdout)
    }
    # The training pipeline's tensors: what image_dataset_from_directory (the pipeline
    # train used) gives, fed to the saved model directly.
    ds = keras.utils.image_dataset_from_directory(
        photo_folder, image_size=(32, 32), batch_size=None, shuffle=False, label_mode=None
    )
    pixels = np.stack(list(ds.as_numpy_iterator()))
    model = keras.models.load_model(trained)
    direct = model.predict(pixels, verbose=0)
    expected = dict(zip(ds.file_paths, direct.tolist(), strict=True))
    assert len(expected) == len(by_cli) == 13
    for path, probs in expected.items():
        np.testing.assert_allclose(by_cli[path], probs, atol=1e-5, err_msg=path)


def test_the_folder_pipeline_and_the_file_reader_give_the_same_pixels(photo_folder):
    import tf_keras as keras

    from modelzoo.models.images import ImageFolder, read_images

    folder = ImageFolder.scan(photo_folder)
    streamed = {
        path: image
        for path, (image, _) in zip(
            folder.paths, folder.dataset((32, 32)).as_numpy_iterator(), strict=True
        )
    }
    read = read_images(list(streamed), (32, 32))
    np.testing.assert_array_equal(np.stack(list(streamed.values())), read)
    assert read.shape == (13, 32, 32, 3) and read.dtype == np.float32
    reference = keras.utils.image_dataset_from_directory(
        photo_folder, image_size=(32, 32), batch_size=None, shuffle=False, label_mode=None
    )
    for path, image in zip(reference.file_paths, reference.as_numpy_iterator(), strict=True):
        np.testing.assert_allclose(streamed[path], image, atol=1e-4, err_msg=path)
    # Labels follow the sorted class folders; the order is shuffled but seeded.
    assert folder.class_names == ("dark", "light")
    assert {
        p.split("/")[-2] for p, y in zip(folder.paths, folder.labels, strict=True) if y == 1
    } == {"light"}
    assert ImageFolder.scan(photo_folder, seed=0).paths == folder.paths


def _one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_predict_on_a_non_image_is_one_line_naming_the_file(trained, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n")
    line = _one_line_error(_run("predict", trained, notes), str(notes), "not a JPEG, PNG")
    assert "BytesIO" not in line


def _folder_with(tmp_path, bad_name: str, bad_bytes: bytes):
    from PIL import Image

    rng = np.random.default_rng(2)
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(_photo(rng, label == "b")).save(root / label / f"{i}.png")
    (root / "b" / bad_name).write_bytes(bad_bytes)
    return root


def test_train_refuses_a_corrupt_png_and_names_it(tmp_path):
    root = _folder_with(tmp_path, "broken.png", b"\x00garbage, not a PNG" * 10)
    res = _run("train", DIGITS, "--data", root, "--epochs", 1, "--out", tmp_path / "m.keras")
    _one_line_error(res, str(root / "b" / "broken.png"), "remove or replace it")
    assert not (tmp_path / "m.keras").exists()


def test_train_refuses_a_truncated_png_and_names_it(tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(0), True)).save(buf, "PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]  # a PNG signature, cut short
    root = _folder_with(tmp_path, "cut.png", truncated)
    res = _run(
        "train", DIGITS, "--cut", "conv_pw_13_relu", "--data", root, "--epochs", 1,
        "--batch-size", 2, "--val-split", 0, "--out", tmp_path / "m.keras",
    )  # fmt: skip
    _one_line_error(res, str(root / "b" / "cut.png"), "not a readable")
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({}, "has no class sub-folders"),
        ({"a": [], "b": ["notes.txt"]}, "Found no images in"),
    ],
)
def test_train_on_an_empty_folder_is_one_line(tmp_path, layout, expected):
    root = tmp_path / "empty"
    root.mkdir()
    for label, files in layout.items():
        (root / label).mkdir()
        for name in files:
            (root / label / name).write_text("x")
    _one_line_error(_run("train", DIGITS, "--data", root, "--epochs", 1), expected)


def test_learner_streams_a_folder_like_the_same_images_in_memory(photo_folder, _isolated_home):
    import tf_keras as keras

    from modelzoo import ImageFolder, TransferLearner, read_images

    base = keras.applications.MobileNet(
        alpha=0.25, input_shape=(32, 32, 3), include_top=False, weights=None
    )
    folder = ImageFolder.scan(photo_folder)
    x, y = read_images(folder.paths, (32, 32)), folder.labels

    def learner():
        keras.utils.set_random_seed(3)
        return TransferLearner(base, "conv_pw_13_relu", num_classes=2)

    streamed, in_memory = learner(), learner()
    a = streamed.fit(photo_folder, epochs=2, batch_size=4, shuffle=False, verbose=0)
    b = in_memory.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert streamed.last_fit["feature_cache"] == "miss" and streamed.labels == ["dark", "light"]
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    hist = streamed.fit(folder, epochs=1, batch_size=4, validation=str(photo_folder), verbose=0)
    assert streamed.last_fit["feature_cache"] == "hit"
    assert hist["val_loss"][0] == pytest.approx(streamed.evaluate(x, y)["loss"], rel=1e-4)
    np.testing.assert_allclose(
        streamed.evaluate(photo_folder)["loss"], streamed.evaluate(x, y)["loss"], rtol=1e-5
    )
    # Validation split from the folder; without the cache the images go through the base.
    plain = TransferLearner(base, "conv_pw_13_relu", num_classes=2, feature_cache=False)
    hist = plain.fit(photo_folder, epochs=1, batch_size=4, validation=0.25, verbose=0)
    assert plain.last_fit["examples"] == 10 and "val_loss" in hist


def test_feature_blocks_visit_every_row_once_per_epoch_in_a_new_order(tmp_path):
    from modelzoo.models.features import FeatureCache, feature_blocks

    cache = FeatureCache(tmp_path)
    rows = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    with cache.writer("k1", 50, (3,)) as w:
        for start in range(0, 50, 16):  # written in chunks
            w.write(rows[start : start + 16])
    np.testing.assert_array_equal(cache.get("k1", mmap=True), rows)
    labels = np.arange(50)
    blocks = feature_blocks(cache.path("k1"), labels, shuffle=True, seed=0, block_bytes=12 * 7)
    epochs = []
    for _ in range(2):
        got = list(blocks())
        assert max(len(b) for b, _ in got) == 7  # 7 rows of 12 bytes per block
        feats = np.concatenate([b for b, _ in got])
        ys = np.concatenate([y for _, y in got])
        np.testing.assert_array_equal(feats[:, 0], ys)  # rows keep their labels
        assert sorted(ys.tolist()) == list(range(50))
        epochs.append(ys)
    assert epochs[0].tolist() != epochs[1].tolist()
    with pytest.raises(ValueError, match="wrote 16 of 50"), cache.writer("k2", 50, (3,)) as w:
        w.write(rows[:16])
    assert not cache.path("k2").exists() and not list(tmp_path.glob(".tmp-*"))
