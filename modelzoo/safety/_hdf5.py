"""Structural checks of an HDF5 file, done before h5py or tf_keras reads any data from it.

HDF5 can make a reader pull bytes from outside the file (external storage, external
links, virtual datasets), follow links into other places (soft links), load filter
plugins (shared libraries) or allocate far more memory than the file holds (declared
huge datasets, deflate chunks that inflate without bound). This module walks every
link and dataset header and refuses such files; it never reads dataset values, except
for inflating deflate-compressed chunks under a size bound.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from .. import backend
from ..errors import UnsafeModelError, first_line

__all__ = ["Hdf5Facts", "scan_hdf5", "EXPANSION_FACTOR", "SLACK_BYTES", "MAX_OBJECTS"]

#: Declared dataset bytes may exceed the file size this many times: room for
#: compressed weights, nowhere near the ratios of an allocation bomb.
EXPANSION_FACTOR = 4
#: Allowance on top of that, so that tiny files with a few small empty datasets pass.
SLACK_BYTES = 1 << 20
#: Links walked before giving up: the largest Keras models have a few thousand.
MAX_OBJECTS = 200_000

# Filters built into HDF5/h5py; any other id makes HDF5 dlopen a plugin library.
_BUILTIN_FILTERS = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    32000: "lzf",
}
_DEFLATE = 1


@dataclass(frozen=True)
class Hdf5Facts:
    """What the scan learnt about an HDF5 file.

    Attributes:
        layout: ``"legacy"`` (``layer_names`` attribute or ``model_weights`` group, as
            written by ``save_weights("x.h5")`` and legacy ``model.save``), ``"v3"``
            (``layers``/``vars`` groups, as inside ``.keras`` or ``x.weights.h5``) or
            ``"unknown"``.
        model_config: the ``model_config`` attribute (JSON text), if any.
        training_config: the ``training_config`` attribute (JSON text), if any.
        layer_names: the ``layer_names`` attribute of a legacy weights file, if any.
        n_datasets: datasets found.
        declared_bytes: total bytes the datasets declare (shape x item size).
    """

    layout: str
    model_config: str | None
    training_config: str | None
    layer_names: tuple[str, ...] | None
    n_datasets: int
    declared_bytes: int


def scan_hdf5(source: Any, *, path: str, size: int, max_bytes: int, context: str = "") -> Hdf5Facts:
    """Check an HDF5 file (a path or a seekable binary file object) and describe it.

    Args:
        source: what ``h5py.File`` opens.
        path: the file named in errors (for a zip member: the archive).
        size: bytes the HDF5 file occupies (the member size inside a zip).
        max_bytes: absolute cap on the total declared dataset bytes.
        context: prefix for reasons, e.g. ``"member model.weights.h5: "``.

    Raises:
        UnsafeModelError: naming ``path`` and the first problem found.
    """
    h5py = backend.h5py()

    def refuse(reason: str) -> UnsafeModelError:
        return UnsafeModelError(path, context + reason)

    try:
        handle = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise refuse(f"it is not a readable HDF5 file ({first_line(exc)})") from None
    with handle:
        try:
            n_datasets, declared = _walk(h5py, handle, refuse)
            facts = _describe(handle, n_datasets, declared, refuse)
        except UnsafeModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            # h5py raises these for damaged headers; a file we cannot inspect is refused.
            raise refuse(f"its HDF5 structure cannot be inspected ({first_line(exc)})") from None
    limit = EXPANSION_FACTOR * size + SLACK_BYTES
    if declared > limit:
        raise refuse(
            f"its datasets declare {declared:,} bytes but the file holds only {size:,} "
            f"(more than {EXPANSION_FACTOR}x its size): reading them would allocate memory "
            "the file cannot fill"
        )
    if declared > max_bytes:
        raise refuse(f"its datasets declare {declared:,} bytes, above the cap of {max_bytes:,}")
    return facts


def _walk(h5py, handle, refuse) -> tuple[int, int]:
    """Check every link, then every dataset header (low-level API: ~20x faster)."""
    links: list[tuple[bytes, int]] = []

    def on_link(name: bytes, info) -> int | None:
        links.append((name, info.type))
        return 1 if len(links) > MAX_OBJECTS else None  # non-None stops the visit

    # H5Lvisit recurses through hard-linked groups only, once each, so it ends on cycles.
    handle.id.links.visit(on_link, info=True)
    if len(links) > MAX_OBJECTS:
        raise refuse(f"it holds more than {MAX_OBJECTS:,} HDF5 links")
    for name, kind in links:
        where = "/" + _text(name)
        if kind == h5py.h5l.TYPE_EXTERNAL:
            filename, target = handle.id.links.get_val(name)
            raise refuse(
                f"{where!r} is an HDF5 external link to {_text(filename)!r}:{_text(target)!r}, "
                "which would make h5py read another file on this machine"
            )
        if kind == h5py.h5l.TYPE_SOFT:
            target = _text(handle.id.links.get_val(name))
            raise refuse(f"{where!r} is an HDF5 soft link to {target!r}; model files have none")
        if kind != h5py.h5l.TYPE_HARD:
            raise refuse(f"{where!r} is an HDF5 link of unknown type {kind}")
    datasets: list[bytes] = []

    def on_object(name: bytes, info) -> None:
        if info.type == h5py.h5o.TYPE_DATASET:
            datasets.append(name)

    h5py.h5o.visit(handle.id, on_object, info=True)  # each object once, however linked
    declared = 0
    for name in datasets:
        declared += _check_dataset(h5py, h5py.h5d.open(handle.id, name), "/" + _text(name), refuse)
    return len(datasets), declared


def _check_dataset(h5py, dsid, where: str, refuse) -> int:
    """Refuse datasets that read outside the file or need plugins; return declared bytes."""
    dcpl = dsid.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        count = dcpl.get_virtual_count()
        sources = ", ".join(repr(_text(dcpl.get_virtual_filename(i))) for i in range(min(count, 3)))
        raise refuse(
            f"dataset {where!r} is a virtual dataset mapped from {sources}, which would make "
            "h5py read other files on this machine"
        )
    if dcpl.get_external_count() > 0:
        external = _text(dcpl.get_external(0)[0])
        raise refuse(
            f"dataset {where!r} keeps its data in external file {external!r}, which would "
            "make h5py read that file from this machine into the weights"
        )
    codes = []
    for i in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(i)[0]
        if code not in _BUILTIN_FILTERS:
            raise refuse(
                f"dataset {where!r} needs HDF5 filter #{code}, which is not built in: HDF5 "
                "would load a plugin library to decode it"
            )
        codes.append(code)
    itemsize = dsid.get_type().get_size()
    if _DEFLATE in codes and layout == h5py.h5d.CHUNKED:
        chunk_bytes = itemsize
        for dim in dcpl.get_chunk():
            chunk_bytes *= dim
        _check_deflate_chunks(dsid, where, codes.index(_DEFLATE), chunk_bytes, refuse)
    return dsid.get_space().get_simple_extent_npoints() * itemsize


def _check_deflate_chunks(dsid, where: str, filter_index: int, chunk_bytes: int, refuse) -> None:
    """Inflate each stored chunk with a bound: HDF5's own inflate grows its buffer freely."""
    for i in range(dsid.get_num_chunks()):
        info = dsid.get_chunk_info(i)
        if info.filter_mask & (1 << filter_index):
            continue  # deflate was skipped for this chunk
        _mask, raw = dsid.read_direct_chunk(info.chunk_offset)
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(raw, chunk_bytes + 1)
        except zlib.error as exc:
            raise refuse(f"dataset {where!r} has a corrupt deflate chunk ({exc})") from None
        if len(out) > chunk_bytes:
            raise refuse(
                f"dataset {where!r} has a deflate chunk of {len(raw):,} bytes that inflates "
                f"beyond its {chunk_bytes:,}-byte chunk size (a decompression bomb)"
            )


def _describe(handle, n_datasets: int, declared: int, refuse) -> Hdf5Facts:
    attrs = handle.attrs
    model_config = _text_attr(attrs, "model_config", refuse)
    training_config = _text_attr(attrs, "training_config", refuse)
    layer_names = None
    if "layer_names" in attrs:
        try:
            layer_names = tuple(_text(n) for n in attrs["layer_names"])
        except TypeError:
            raise refuse("its 'layer_names' attribute is not a list of names") from None
    if layer_names is not None or "model_weights" in handle:
        layout = "legacy"
    elif "layers" in handle or "vars" in handle:
        layout = "v3"
    else:
        layout = "unknown"
    return Hdf5Facts(layout, model_config, training_config, layer_names, n_datasets, declared)


def _text_attr(attrs, name: str, refuse) -> str | None:
    if name not in attrs:
        return None
    value = attrs[name]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(f"its {name!r} attribute is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise refuse(f"its {name!r} attribute is not text (got {type(value).__name__})")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name
