"""modelzoo.models.datasets: the bundled UCI digits, RGB, seeded splits, few-shot draws."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

from modelzoo.errors import ModelZooError, UsageError
from modelzoo.models.datasets import (
    DEFAULT_TEST_FRACTION,
    DIGIT_CLASSES,
    DigitsSplit,
    digits_to_rgb,
    load_digits,
    split_digits,
)

# Per-class counts of the UCI optdigits test part (digits 0..9), from its documentation.
COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


# --- load_digits -------------------------------------------------------------------------


def test_data_file_is_package_data():
    resource = files("modelzoo") / "_data" / "digits.csv.gz"
    assert resource.is_file()
    assert (files("modelzoo") / "_data" / "README.md").read_text().count("CC BY 4.0") >= 1


def test_load_digits_shapes_dtypes_ranges_and_counts():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8)
    assert images.dtype == np.uint8
    assert labels.shape == (1797,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert images.min() == 0 and images.max() == 16
    assert np.bincount(labels).tolist() == COUNTS
    assert sorted(set(labels.tolist())) == list(DIGIT_CLASSES)


def test_load_digits_first_row_matches_the_file():
    images, labels = load_digits()
    # first line of digits.csv.gz: a zero
    assert images[0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]
    assert images[0, 7].tolist() == [0, 0, 6, 13, 10, 0, 0, 0]
    assert labels[0] == 0


def test_load_digits_returns_independent_copies():
    images, labels = load_digits()
    images[:] = 99
    labels[:] = -1
    again, again_labels = load_digits()
    assert again.max() == 16
    assert again_labels.min() == 0


def test_datasets_module_does_not_import_tensorflow():
    code = (
        "import sys; "
        "from modelzoo.models.datasets import load_digits, split_digits, digits_to_rgb; "
        "s = split_digits(range(5)).few_shot(3); digits_to_rgb(s.x_train); load_digits(); "
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TF imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- digits_to_rgb -----------------------------------------------------------------------


def test_digits_to_rgb_shape_range_and_channels():
    images, _ = load_digits()
    rgb = digits_to_rgb(images[:20])
    assert rgb.shape == (20, 32, 32, 3)
    assert rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 255.0
    assert np.array_equal(rgb[..., 0], rgb[..., 1])
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_digits_to_rgb_repeats_each_pixel_in_a_block_scaled_to_255():
    image = np.zeros((1, 8, 8), dtype=np.uint8)
    image[0, 2, 5] = 16
    image[0, 7, 0] = 8
    rgb = digits_to_rgb(image, size=32)
    assert np.all(rgb[0, 8:12, 20:24] == 255.0)
    assert np.allclose(rgb[0, 28:32, 0:4], 8 * 255 / 16)
    assert rgb[0].sum() == pytest.approx(16 * 3 * (255.0 + 8 * 255 / 16))


def test_digits_to_rgb_accepts_flat_rows_and_other_sizes():
    images, _ = load_digits()
    flat = images[:4].reshape(4, 64)
    assert np.array_equal(digits_to_rgb(flat), digits_to_rgb(images[:4]))
    same_size = digits_to_rgb(images[:2], size=8)[..., 0]
    assert np.allclose(same_size, images[:2].astype(np.float64) * 255 / 16)
    odd = digits_to_rgb(images[:2], size=20)
    assert odd.shape == (2, 20, 20, 3)
    assert odd.max() <= 255.0
    assert digits_to_rgb(np.zeros((0, 8, 8))).shape == (0, 32, 32, 3)


def test_digits_to_rgb_is_deterministic():
    images, _ = load_digits()
    assert np.array_equal(digits_to_rgb(images[:50]), digits_to_rgb(images[:50]))


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((8, 8)),  # a single image without the batch axis
        np.zeros((3, 28, 28)),
        np.zeros((3, 63)),
        np.zeros((3, 8, 8, 1)),
    ],
)
def test_digits_to_rgb_rejects_wrong_shapes(images):
    with pytest.raises(UsageError, match=r"shape \(N, 8, 8\)"):
        digits_to_rgb(images)


@pytest.mark.parametrize("bad", [17, -1, 255.0, np.nan, np.inf])
def test_digits_to_rgb_rejects_values_outside_0_16(bad):
    images = np.zeros((2, 8, 8), dtype=np.float64)
    images[1, 3, 3] = bad
    with pytest.raises(UsageError, match="0..16"):
        digits_to_rgb(images)


def test_digits_to_rgb_rejects_non_numeric_pixels():
    with pytest.raises(UsageError, match="numeric"):
        digits_to_rgb(np.full((1, 8, 8), "a"))


@pytest.mark.parametrize("size", [0, -32, 32.0, True, "32"])
def test_digits_to_rgb_rejects_bad_sizes(size):
    with pytest.raises(UsageError, match="size must be a positive integer"):
        digits_to_rgb(np.zeros((1, 8, 8)), size=size)


def test_usage_error_is_a_modelzoo_error_and_value_error():
    with pytest.raises(ModelZooError):
        digits_to_rgb(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError):
        digits_to_rgb(np.zeros((1, 4, 4)))


# --- split_digits ------------------------------------------------------------------------


def test_split_is_disjoint_complete_and_stratified():
    split = split_digits(range(5))
    assert isinstance(split, DigitsSplit)
    assert split.classes == (0, 1, 2, 3, 4)
    train, test = set(split.train_index.tolist()), set(split.test_index.tolist())
    assert not train & test
    _, labels = load_digits()
    assert train | test == set(np.flatnonzero(labels < 5).tolist())
    for digit in range(5):
        n_test = int(np.sum(split.y_test == digit))
        assert n_test == round(COUNTS[digit] * DEFAULT_TEST_FRACTION)
        assert int(np.sum(split.y_train == digit)) == COUNTS[digit] - n_test


def test_split_images_and_targets_match_the_data():
    images, labels = load_digits()
    split = split_digits([7, 2, 9])
    assert split.classes == (7, 2, 9)
    assert np.array_equal(split.x_train, images[split.train_index])
    assert np.array_equal(split.x_test, images[split.test_index])
    # targets are positions in `classes`; digits() maps them back
    assert np.array_equal(split.digits(split.y_train), labels[split.train_index])
    assert np.array_equal(split.digits(split.y_test), labels[split.test_index])
    assert set(split.y_train.tolist()) == {0, 1, 2}
    assert split.x_train.dtype == np.uint8 and split.x_train.shape[1:] == (8, 8)


def test_split_is_deterministic_and_depends_on_the_seed():
    a, b = split_digits(range(5)), split_digits(range(5))
    assert np.array_equal(a.train_index, b.train_index)
    assert np.array_equal(a.test_index, b.test_index)
    c = split_digits(range(5), seed=1)
    assert not np.array_equal(a.test_index, c.test_index)


def test_a_digit_is_split_the_same_whatever_else_is_asked_for():
    # The model pretrained on digits 0-4 must never have seen the test images of any
    # later split that includes those digits.
    everything = split_digits()
    alone = split_digits([3])
    row_digits = everything.digits(everything.y_test)
    assert np.array_equal(everything.test_index[row_digits == 3], alone.test_index)
    upper = split_digits(range(5, 10))
    assert set(upper.test_index.tolist()) <= set(everything.test_index.tolist())


def test_split_test_fraction():
    split = split_digits([0], test_fraction=0.5)
    assert len(split.test_index) == 89 and len(split.train_index) == 89
    tiny = split_digits([0], test_fraction=0.001)  # at least one test image
    assert len(tiny.test_index) == 1
    huge = split_digits([0], test_fraction=0.999)  # at least one training image
    assert len(huge.train_index) == 1


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        ([10], "invalid: \\[10\\]"),
        ([-1, 2], "invalid: \\[-1\\]"),
        ([1.0], "invalid"),
        ([True], "invalid"),
        ([], "non-empty"),
        ([1, 2, 1], "repeated: \\[1\\]"),
        ("01234", "such as range"),
        (5, "such as range"),
    ],
)
def test_split_rejects_bad_classes(classes, match):
    with pytest.raises(UsageError, match=match):
        split_digits(classes)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.2", None])
def test_split_rejects_bad_test_fraction(fraction):
    with pytest.raises(UsageError, match="test_fraction must be a number between 0 and 1"):
        split_digits(range(5), test_fraction=fraction)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_split_rejects_bad_seed(seed):
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        split_digits(range(5), seed=seed)


# --- few_shot ----------------------------------------------------------------------------


def test_few_shot_takes_n_per_class_from_the_training_part_only():
    split = split_digits(range(5, 10))
    few = split.few_shot(10, seed=0)
    assert few.classes == split.classes
    assert np.bincount(few.y_train).tolist() == [10] * 5
    assert set(few.train_index.tolist()) <= set(split.train_index.tolist())
    assert np.array_equal(few.test_index, split.test_index)
    assert np.array_equal(few.x_test, split.x_test)
    images, _ = load_digits()
    assert np.array_equal(few.x_train, images[few.train_index])
    assert np.array_equal(few.digits(few.y_train), np.repeat(np.arange(5, 10), 10))


def test_few_shot_is_seeded_and_nested():
    split = split_digits(range(5, 10))
    a, b = split.few_shot(10, seed=0), split.few_shot(10, seed=0)
    assert np.array_equal(a.train_index, b.train_index)
    other = split.few_shot(10, seed=1)
    assert not np.array_equal(a.train_index, other.train_index)
    bigger = split.few_shot(20, seed=0)
    assert set(a.train_index.tolist()) <= set(bigger.train_index.tolist())


def test_few_shot_of_everything_keeps_the_whole_class():
    split = split_digits([8])
    every = split.few_shot(len(split.train_index))
    assert sorted(every.train_index.tolist()) == sorted(split.train_index.tolist())


@pytest.mark.parametrize("per_class", [0, -3, 10_000])
def test_few_shot_rejects_impossible_counts(per_class):
    split = split_digits(range(5))
    with pytest.raises(UsageError, match="per_class must be between 1 and 133") as info:
        split.few_shot(per_class)
    assert str(per_class) in str(info.value)


@pytest.mark.parametrize("per_class", [2.5, True, "10"])
def test_few_shot_rejects_non_integers(per_class):
    with pytest.raises(UsageError, match="per_class must be a positive integer"):
        split_digits(range(5)).few_shot(per_class)


def test_few_shot_rejects_bad_seed():
    with pytest.raises(UsageError, match="seed"):
        split_digits(range(5)).few_shot(5, seed=-2)
