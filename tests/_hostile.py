"""Builders of hostile model files for tests/safety/test_safety.py.

Every file is made at test time from a tiny real tf_keras model, then altered with
h5py / zipfile the way an attacker would. Files whose payload runs code write a
*marker* file when the payload runs, so a test can prove whether it ran.
"""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelzoo import backend

__all__ = [
    "CONTRAST_SCRIPT",
    "tiny_model",
    "save_keras",
    "save_h5",
    "save_weights",
    "lambda_h5",
    "evil_module",
    "edit_keras_config",
    "edit_h5_config",
    "replace_dataset",
    "external_storage_weights",
    "external_link_weights",
    "soft_link_weights",
    "virtual_dataset_weights",
    "declared_huge_weights",
    "deflate_bomb_weights",
    "plugin_filter_weights",
    "secret_weights",
    "zip_with_member",
    "zip_with_symlink",
    "zip_with_padding",
    "dense_layer",
]

SECRET_KERNEL = np.arange(12, dtype="float32").reshape(4, 3) + 1000.0

#: Loads files with plain tf_keras (safe_mode=True), as an unprotected user would, in a
#: separate interpreter so that hostile imports stay out of the test process.
CONTRAST_SCRIPT = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["syspath"])
import tf_keras
results = {}
for key, case in spec["cases"].items():
    try:
        tf_keras.models.load_model(case["path"], safe_mode=True, compile=case["compile"])
        results[key] = "loaded"
    except Exception as exc:
        results[key] = (type(exc).__name__ + ": " + str(exc))[:300]
print("RESULTS=" + json.dumps(results))
"""


def tiny_model(name: str = "tiny"):
    """Input(4) -> Dense(3, relu) 'hidden' -> Dense(2, softmax) 'out'."""
    keras = backend.keras()
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(hidden)
    return keras.Model(inputs, outputs, name=name)


def save_keras(folder: Path, name: str = "model.keras", model=None) -> Path:
    path = Path(folder) / name
    (model or tiny_model()).save(path)
    return path


def save_h5(folder: Path, name: str = "model.h5", model=None) -> Path:
    path = Path(folder) / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf_keras nags that HDF5 is legacy
        (model or tiny_model()).save(path)
    return path


def save_weights(folder: Path, name: str = "weights.h5", model=None) -> Path:
    path = Path(folder) / name
    (model or tiny_model()).save_weights(path)
    return path


def lambda_h5(folder: Path, marker: Path, name: str = "lambda.h5") -> Path:
    """A legacy .h5 model whose Lambda layer writes ``marker`` whenever it is called.

    tf_keras calls it while rebuilding the model, so loading the file writes the marker.
    """
    keras = backend.keras()
    source = (
        "def payload(x):\n"
        "    import pathlib\n"
        f"    pathlib.Path({str(marker)!r}).write_text('code from the model file ran')\n"
        "    return x\n"
    )
    namespace: dict = {}
    exec(compile(source, "<hostile model>", "exec"), namespace)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(2, name="hidden")(inputs)
    outputs = keras.layers.Lambda(namespace["payload"], name="payload")(hidden)
    path = save_h5(folder, name, keras.Model(inputs, outputs))
    Path(marker).unlink(missing_ok=True)  # building the model above called it once
    return path


def evil_module(folder: Path, name: str, marker: Path) -> Path:
    """``folder/name.py``: writes ``marker`` when imported; defines ``f`` and ``EvilModel``."""
    path = Path(folder) / f"{name}.py"
    path.write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('module from the model config ran')\n"
        "def f(*args, **kwargs):\n"
        "    return 0.0\n"
        "class EvilModel:\n"
        "    pass\n"
    )
    return path


def edit_keras_config(src: Path, dest: Path, edit: Callable[[dict], None]) -> Path:
    """Copy a .keras archive with its config.json changed by ``edit`` (in place)."""
    with zipfile.ZipFile(src) as archive:
        config = json.loads(archive.read("config.json"))
        edit(config)
        with zipfile.ZipFile(dest, "w") as out:
            for info in archive.infolist():
                data = archive.read(info)
                if info.filename == "config.json":
                    data = json.dumps(config).encode()
                out.writestr(info.filename, data)
    return dest


def edit_h5_config(src: Path, dest: Path, edit: Callable[[dict], None]) -> Path:
    """Copy a legacy .h5 model with its model_config attribute changed by ``edit``."""
    h5py = backend.h5py()
    shutil.copyfile(src, dest)
    with h5py.File(dest, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return dest


def dense_layer(config: dict, name: str = "hidden") -> dict:
    """The layer dict called ``name`` inside a functional model config."""
    for layer in config["config"]["layers"]:
        if layer["config"].get("name") == name:
            return layer
    raise KeyError(name)


# --- HDF5 weights files --------------------------------------------------------------

KERNEL = "hidden/hidden/kernel:0"  # where save_weights("x.h5") keeps the first kernel


def replace_dataset(path: Path, name: str, **create) -> None:
    """Delete dataset ``name`` and create it again with ``create`` kwargs (same shape)."""
    h5py = backend.h5py()
    with h5py.File(path, "r+") as f:
        old = f[name]
        shape, dtype = old.shape, old.dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, **create)


def secret_weights(folder: Path) -> Path:
    """A weights file with SECRET_KERNEL as the hidden kernel: "another file on the host"."""
    model = tiny_model()
    model.get_layer("hidden").set_weights([SECRET_KERNEL, np.zeros(3, "float32")])
    return save_weights(folder, "secret.h5", model)


def external_storage_weights(folder: Path, secret: Path) -> Path:
    """The hidden kernel's bytes live in ``secret`` (HDF5 external storage)."""
    secret.write_bytes(SECRET_KERNEL.tobytes())
    path = save_weights(folder, "external_storage.h5")
    replace_dataset(path, KERNEL, external=[(str(secret), 0, SECRET_KERNEL.nbytes)])
    return path


def external_link_weights(folder: Path, secret_h5: Path) -> Path:
    """The 'hidden' layer group is an external link into another HDF5 file."""
    h5py = backend.h5py()
    path = save_weights(folder, "external_link.h5")
    with h5py.File(path, "r+") as f:
        del f["hidden"]
        f["hidden"] = h5py.ExternalLink(str(secret_h5), "/hidden")
    return path


def soft_link_weights(folder: Path) -> Path:
    h5py = backend.h5py()
    path = save_weights(folder, "soft_link.h5")
    with h5py.File(path, "r+") as f:
        f["shortcut"] = h5py.SoftLink("/hidden")
    return path


def virtual_dataset_weights(folder: Path, secret_h5: Path) -> Path:
    """The hidden kernel is a virtual dataset mapping the kernel of another file."""
    h5py = backend.h5py()
    path = save_weights(folder, "virtual.h5")
    layout = h5py.VirtualLayout(shape=SECRET_KERNEL.shape, dtype="float32")
    layout[:] = h5py.VirtualSource(str(secret_h5), KERNEL, shape=SECRET_KERNEL.shape)
    with h5py.File(path, "r+") as f:
        del f[KERNEL]
        f.create_virtual_dataset(KERNEL, layout)
    return path


def declared_huge_weights(folder: Path, n_items: int = 10**12) -> Path:
    """A chunked dataset declaring ``n_items`` floats (4 TB) in a file of a few KB."""
    h5py = backend.h5py()
    path = save_weights(folder, "declared_huge.h5")
    with h5py.File(path, "r+") as f:
        f.create_dataset("huge", shape=(n_items,), dtype="float32", chunks=(1024,))
    return path


def deflate_bomb_weights(folder: Path, inflated: int = 64 << 20) -> Path:
    """A 4 KB deflate-chunked dataset whose one chunk inflates to ``inflated`` bytes."""
    h5py = backend.h5py()
    path = save_weights(folder, "deflate_bomb.h5")
    with h5py.File(path, "r+") as f:
        ds = f.create_dataset(
            "bomb", shape=(1024,), dtype="float32", chunks=(1024,), compression="gzip"
        )
        ds.id.write_direct_chunk((0,), zlib.compress(bytes(inflated), 9))
    return path


def plugin_filter_weights(folder: Path, filter_id: int = 32001) -> Path:
    """A dataset whose pipeline names a filter plugin (Blosc's id) HDF5 would dlopen."""
    h5py = backend.h5py()
    path = save_weights(folder, "plugin_filter.h5")
    with h5py.File(path, "r+") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((16,))
        dcpl.set_filter(filter_id, h5py.h5z.FLAG_OPTIONAL)
        space = h5py.h5s.create_simple((16,))
        h5py.h5d.create(f.id, b"plugin", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
    return path


# --- zip archives --------------------------------------------------------------------


def zip_with_member(src: Path, dest: Path, member: str | zipfile.ZipInfo, data: bytes) -> Path:
    """Copy a .keras archive and add one member (duplicates allowed, as attackers do)."""
    shutil.copyfile(src, dest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(dest, "a") as archive:
            archive.writestr(member, data)
    return dest


def zip_with_symlink(src: Path, dest: Path, name: str = "assets/link") -> Path:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so the mode bits below mean what they say
    info.external_attr = (0o120777 << 16) & 0xFFFF0000
    return zip_with_member(src, dest, info, b"/etc/passwd")


def zip_with_padding(src: Path, dest: Path, size: int = 200 << 20) -> Path:
    """Add ``assets/padding.bin``: ``size`` zero bytes, deflated (~1000x), written streaming."""
    shutil.copyfile(src, dest)
    info = zipfile.ZipInfo("assets/padding.bin")
    info.compress_type = zipfile.ZIP_DEFLATED
    block = bytes(1 << 20)
    with (
        zipfile.ZipFile(dest, "a", compresslevel=9) as archive,
        archive.open(info, "w", force_zip64=True) as member,
    ):
        for _ in range(size // len(block)):
            member.write(block)
    return dest
