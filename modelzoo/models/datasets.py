"""Small data sets shipped inside the package, so the demo and tests run offline.

Only one so far: the UCI 8x8 handwritten digits (1797 images, classes 0-9, CC BY 4.0;
see ``modelzoo/_data/README.md`` for the attribution). This module uses numpy only and
never imports TensorFlow.

Typical use, as in the bundled demo::

    from modelzoo.models.datasets import digits_to_rgb, split_digits

    split = split_digits(range(5, 10))          # fixed train / held-out test per class
    few = split.few_shot(10, seed=0)            # 10 training images per class
    x = digits_to_rgb(few.x_train)              # (50, 32, 32, 3) float32 in 0..255
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

__all__ = [
    "DIGIT_CLASSES",
    "DEFAULT_TEST_FRACTION",
    "DigitsSplit",
    "load_digits",
    "digits_to_rgb",
    "split_digits",
]

#: The labels of the digits data set.
DIGIT_CLASSES: tuple[int, ...] = tuple(range(10))

#: Share of each class held out for testing by :func:`split_digits`.
DEFAULT_TEST_FRACTION = 0.25

_DIGITS_FILE = "digits.csv.gz"
_MAX_PIXEL = 16  # each pixel counts the "on" pixels of a 4x4 block


@functools.cache
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    # importlib.resources works from a checkout, a wheel and a zip alike.
    resource = importlib.resources.files("modelzoo") / "_data" / _DIGITS_FILE
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    images = table[:, :64].astype(np.uint8).reshape(-1, 8, 8)
    labels = table[:, 64].copy()
    # The cached copies are shared by every caller: make accidental writes fail loudly.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load the UCI 8x8 handwritten digits bundled with modelzoo.

    Returns:
        ``(images, labels)``: ``images`` is a ``uint8`` array of shape ``(1797, 8, 8)``
        with values 0..16; ``labels`` is an ``int64`` array of shape ``(1797,)`` with
        values 0..9. Both are fresh copies the caller may modify.
    """
    images, labels = _read_digits()
    return images.copy(), labels.copy()


def digits_to_rgb(images, size: int = 32) -> np.ndarray:
    """Turn 8x8 digit images into RGB images a MobileNet-style network accepts.

    Pixels are scaled from 0..16 to 0..255, enlarged by nearest-neighbour sampling
    (plain pixel repetition when ``size`` is a multiple of 8) and copied into three
    channels, giving bright strokes on a black background. The result is deterministic
    and still needs the model's preprocessing (mode ``"tf"``: ``x / 127.5 - 1``).

    Args:
        images: array-like of shape ``(N, 8, 8)`` or ``(N, 64)``, values 0..16.
        size: height and width of the output, a positive integer.

    Returns:
        A ``float32`` array of shape ``(N, size, size, 3)`` with values 0..255.

    Raises:
        UsageError: when ``images`` has another shape or values outside 0..16, or
            ``size`` is not a positive integer.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise UsageError(f"size must be a positive integer, got {size!r}; the models use 32.")
    arr = np.asarray(images)
    if arr.ndim == 2 and arr.shape[1] == 64:
        arr = arr.reshape(-1, 8, 8)
    if arr.ndim != 3 or arr.shape[1:] != (8, 8):
        raise UsageError(
            f"expected digit images of shape (N, 8, 8) or (N, 64), got {arr.shape}; "
            "load them with modelzoo.models.datasets.load_digits()."
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise UsageError(f"expected numeric pixel values 0..16, got dtype {arr.dtype}.")
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > _MAX_PIXEL):
        raise UsageError(
            f"expected pixel values in 0..16, got values from {arr.min()} to {arr.max()}; "
            "pass the raw images from load_digits(), not already-scaled ones."
        )
    scaled = arr.astype(np.float32) * np.float32(255.0 / _MAX_PIXEL)
    rows = (np.arange(size) * 8) // size  # source row/column of each output pixel
    big = scaled[:, rows][:, :, rows]
    return np.repeat(big[..., np.newaxis], 3, axis=-1)


@dataclass(frozen=True, eq=False)
class DigitsSplit:
    """A train / held-out test split of some digit classes.

    Attributes:
        classes: the digits in this split, in order; targets index into it.
        x_train: ``uint8`` images ``(n_train, 8, 8)``, grouped by class.
        y_train: ``int64`` targets ``(n_train,)``: the position of each image's digit in
            ``classes`` (so digits 5..9 become 0..4, ready for a 5-way classifier).
        x_test: ``uint8`` images ``(n_test, 8, 8)``, grouped by class.
        y_test: ``int64`` targets ``(n_test,)``, as ``y_train``.
        train_index: row of each training image in :func:`load_digits`.
        test_index: row of each test image in :func:`load_digits`.
    """

    classes: tuple[int, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray

    def digits(self, targets) -> np.ndarray:
        """Map targets (positions in :attr:`classes`) back to digit labels."""
        return np.asarray(self.classes, dtype=np.int64)[np.asarray(targets, dtype=np.int64)]

    def few_shot(self, per_class: int, *, seed: int = 0) -> DigitsSplit:
        """Keep ``per_class`` random training images of each class; the test part is unchanged.

        The draw depends only on ``seed`` and the class, and a larger ``per_class`` with the
        same seed keeps every image a smaller one chose.

        Args:
            per_class: training images to keep per class, at least 1.
            seed: seed of the draw.

        Raises:
            UsageError: when ``per_class`` is not a positive integer or exceeds the
                training images of some class.
        """
        if isinstance(per_class, bool) or not isinstance(per_class, int | np.integer):
            raise UsageError(f"per_class must be a positive integer, got {per_class!r}.")
        counts = np.bincount(self.y_train, minlength=len(self.classes))
        if per_class < 1 or per_class > counts.min():
            raise UsageError(
                f"per_class must be between 1 and {counts.min()} (the fewest training images "
                f"of any class in {list(self.classes)}), got {per_class}."
            )
        chosen = []
        for target, digit in enumerate(self.classes):
            rows = np.flatnonzero(self.y_train == target)
            rng = np.random.default_rng([_seed(seed), digit, 1])
            chosen.append(np.sort(rng.permutation(rows)[:per_class]))
        keep = np.concatenate(chosen)
        return DigitsSplit(
            classes=self.classes,
            x_train=self.x_train[keep],
            y_train=self.y_train[keep],
            x_test=self.x_test,
            y_test=self.y_test,
            train_index=self.train_index[keep],
            test_index=self.test_index,
        )


def split_digits(
    classes: Iterable[int] = DIGIT_CLASSES,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> DigitsSplit:
    """Split the digits of ``classes`` into a fixed training part and a held-out test part.

    Each class is split on its own with a generator seeded by ``(seed, digit)``, so a
    digit's test images are the same whichever other classes are asked for: the model
    pretrained on ``range(5)`` never saw the test images of ``split_digits(range(5))``.

    Args:
        classes: digits to include (0..9, no repeats); their order sets the targets.
        test_fraction: share of each class held out for testing, between 0 and 1.
        seed: seed of the split.

    Returns:
        A :class:`DigitsSplit`.

    Raises:
        UsageError: on unknown or repeated classes, or a ``test_fraction`` outside (0, 1).
    """
    wanted = _classes(classes)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not 0 < test_fraction < 1
    ):
        raise UsageError(
            f"test_fraction must be a number between 0 and 1 (exclusive), got {test_fraction!r}."
        )
    images, labels = _read_digits()
    train_rows, test_rows, train_y, test_y = [], [], [], []
    for target, digit in enumerate(wanted):
        rows = np.flatnonzero(labels == digit)
        rng = np.random.default_rng([_seed(seed), digit])
        shuffled = rng.permutation(rows)
        n_test = min(max(1, round(len(rows) * test_fraction)), len(rows) - 1)
        test_rows.append(np.sort(shuffled[:n_test]))
        train_rows.append(np.sort(shuffled[n_test:]))
        test_y.append(np.full(n_test, target, dtype=np.int64))
        train_y.append(np.full(len(rows) - n_test, target, dtype=np.int64))
    train_index = np.concatenate(train_rows)
    test_index = np.concatenate(test_rows)
    return DigitsSplit(
        classes=wanted,
        x_train=images[train_index].copy(),
        y_train=np.concatenate(train_y),
        x_test=images[test_index].copy(),
        y_test=np.concatenate(test_y),
        train_index=train_index,
        test_index=test_index,
    )


def _classes(classes: Iterable[int]) -> tuple[int, ...]:
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise UsageError(f"classes must be digits 0..9 such as range(5), got {classes!r}.")
    wanted = tuple(classes)
    bad = [
        c
        for c in wanted
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c not in DIGIT_CLASSES
    ]
    if not wanted or bad:
        raise UsageError(
            f"classes must be a non-empty collection of digits 0..9, got {list(wanted)!r}"
            + (f" (invalid: {bad!r})" if bad else "")
            + "."
        )
    repeated = sorted({int(c) for c in wanted if wanted.count(c) > 1})
    if repeated:
        raise UsageError(f"classes must not repeat, got {list(wanted)!r} (repeated: {repeated}).")
    return tuple(int(c) for c in wanted)


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)
