"""Image files: the one reader (decode → RGB → resize) and image folders streamed with tf.data.

Training, evaluation, ``predict`` and the viz commands all read pixels through
:func:`decode_resize`, so a model sees the same pixels at prediction time as in
training: TensorFlow's decoders (JPEG, PNG, GIF first frame, BMP), grey and RGBA
converted to RGB, then a bilinear resize to the model's input size (what
``image_dataset_from_directory`` did), as float32 in 0–255.

An :class:`ImageFolder` (one sub-folder per class) is only a list of paths and labels
until it is read: :meth:`ImageFolder.dataset` decodes and resizes on the fly in a
``tf.data`` pipeline, so 10⁶ images take no more memory than 10.

Bad files are refused, never skipped silently: a file whose first bytes are not a
JPEG/PNG/GIF/BMP signature is named when the folder is scanned, and a file that starts
well but does not decode is found and named when the pipeline fails
(:meth:`ImageFolder.find_unreadable`). Remove or replace the file and run again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend
from ..errors import DataError, UsageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_METHOD",
    "ImageFolder",
    "decode_resize",
    "read_images",
]

#: File name endings read as images in a folder (case-insensitive); others are ignored.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: ``tf.image.resize`` method used everywhere.
RESIZE_METHOD = "bilinear"

_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
_KINDS = "JPEG, PNG, GIF or BMP"


def decode_resize(data, size: tuple[int, int] | None):
    """Decode encoded image bytes (a string tensor) to float32 RGB ``(H, W, 3)`` in 0–255.

    Args:
        data: the file's bytes, a scalar ``tf.string`` tensor (usable inside ``tf.data``).
        size: ``(height, width)`` to resize to (bilinear), or None for the native size.
    """
    tf = backend.tf()
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    if size is None:
        return tf.cast(image, tf.float32)
    image = tf.image.resize(image, size, method=RESIZE_METHOD)
    image.set_shape((size[0], size[1], 3))
    return image


def _check_signature(path: Path, head: bytes) -> None:
    if not head.startswith(_SIGNATURES):
        shown = head[:8].hex(" ") if head else "an empty file"
        raise DataError(
            f"{path} is not a {_KINDS} image (it starts with {shown}); "
            "remove or replace it and run again."
        )


def _unreadable(path: Path, exc: BaseException) -> DataError:
    text = str(getattr(exc, "message", exc))
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]", "", text)  # TensorFlow's op decorations
    reason = " ".join(text.split())[:160]
    return DataError(
        f"{path} is not a readable {_KINDS} image ({reason}); remove or replace it and run again."
    )


def read_images(
    paths: Sequence[str | os.PathLike[str]], size: tuple[int, int] | None
) -> np.ndarray:
    """Read image files as a float32 batch ``(N, H, W, 3)`` in 0–255 (see :func:`decode_resize`).

    Args:
        paths: image files.
        size: ``(height, width)``, or None to keep each file's size (all must agree then).

    Raises:
        UsageError: a path does not exist.
        DataError: a file is not a readable image (named in the message).
    """
    tf = backend.tf()
    arrays = []
    for p in paths:
        path = Path(p)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"No such image file: {path}.") from None
        except OSError as exc:
            raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        _check_signature(path, data[:16])
        try:
            arrays.append(decode_resize(tf.constant(data), size).numpy())
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as exc:
            raise _unreadable(path, exc) from exc
    if size is None and len({a.shape for a in arrays}) > 1:
        raise DataError("Images of different sizes need a target size to be batched together.")
    return np.stack(arrays)


@dataclass(frozen=True, eq=False)
class ImageFolder:
    """Image files in ``root/<class>/…``, listed (in a seeded random order) but not read.

    Build one with :meth:`scan`. ``paths[i]`` has label ``labels[i]``, an index into
    ``class_names`` (the sub-folder names, sorted).
    """

    root: Path
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray

    @classmethod
    def scan(cls, root: str | os.PathLike[str], *, seed: int = 0) -> ImageFolder:
        """List the images of ``root`` (one sub-folder per class, searched recursively).

        Files are shuffled once with ``seed`` so that a validation split takes images of
        every class. Only names ending in :data:`IMAGE_EXTENSIONS` are listed; each one's
        first bytes are checked (a fast check; the pixels are read later).

        Raises:
            DataError: ``root`` is not a folder, has no class sub-folders or no images, or
                holds a file that is not an image (named).
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"{root} is not a folder; --data needs a folder with one sub-folder of "
                "images per class."
            )
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError(
                f"{root} has no class sub-folders; put the images of each class in its own "
                f"sub-folder ({root}/cat/1.jpg, {root}/dog/1.jpg, ...)."
            )
        paths: list[str] = []
        labels: list[int] = []
        for index, name in enumerate(classes):
            for folder, dirs, files in os.walk(root / name, followlinks=True):
                dirs.sort()
                for file in sorted(files):
                    if file.lower().endswith(IMAGE_EXTENSIONS):
                        path = Path(folder) / file
                        try:
                            with open(path, "rb") as f:
                                head = f.read(16)
                        except OSError as exc:
                            raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
                        _check_signature(path, head)
                        paths.append(str(path))
                        labels.append(index)
        if not paths:
            raise DataError(
                f"Found no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files in "
                f"its sub-folders {', '.join(classes)}); add images to the class sub-folders."
            )
        order = np.random.default_rng(seed).permutation(len(paths))
        return cls(
            root=root,
            class_names=tuple(classes),
            paths=tuple(paths[i] for i in order),
            labels=np.asarray(labels, dtype=np.int32)[order],
        )

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> ImageFolder:
        """The images at positions ``index`` (same classes)."""
        index = np.asarray(index, dtype=np.int64)
        return ImageFolder(
            self.root, self.class_names, tuple(self.paths[i] for i in index), self.labels[index]
        )

    def split(self, fraction: float) -> tuple[ImageFolder, ImageFolder]:
        """``(train, validation)``: the last ``fraction`` of the (shuffled) images validate.

        Raises:
            DataError: the fraction is outside (0, 1) or leaves one side empty.
        """
        if not 0.0 < fraction < 1.0:
            raise DataError(f"The validation fraction must be in (0, 1). Received: {fraction}.")
        n_val = int(round(len(self) * fraction))
        if n_val < 1 or n_val >= len(self):
            raise DataError(
                f"{len(self)} images cannot be split {1 - fraction:.0%}/{fraction:.0%} into "
                "training and validation; add images or change the validation fraction."
            )
        cut = len(self) - n_val
        return self.subset(range(cut)), self.subset(range(cut, len(self)))

    def fingerprint(self) -> str:
        """sha256 over each file's path, size, modification time and label, in order."""
        h = hashlib.sha256()
        for path, label in zip(self.paths, self.labels, strict=True):
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{int(label)}\n".encode())
        return h.hexdigest()

    def dataset(
        self,
        size: tuple[int, int],
        *,
        shuffle: bool = False,
        seed: int | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        """A ``tf.data.Dataset`` of ``(image, label)`` read from disk as it is iterated.

        Args:
            size: ``(height, width)`` of the model's input.
            shuffle: reshuffle the file order every epoch (else keep the folder's order).
            seed: the shuffle seed (None: TensorFlow's global seed).
            start: read only ``paths[start:stop]``.
            stop: see ``start``.
        """
        tf = backend.tf()
        paths = list(self.paths[start:stop])
        labels = self.labels[start:stop]
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        if shuffle:  # only the paths are shuffled: a buffer of strings, not of images
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def read(path, label):
            return decode_resize(tf.io.read_file(path), size), label

        return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def find_unreadable(self, size: tuple[int, int] | None = None) -> DataError | None:
        """Decode every file once and return the error naming the first bad one (or None).

        Slow (a full pass); used to name the culprit after a pipeline failed to decode.
        """
        tf = backend.tf()
        for path in self.paths:
            try:
                decode_resize(tf.io.read_file(path), size)
            except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as exc:
                return _unreadable(Path(path), exc)
        return None
