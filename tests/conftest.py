"""Shared fixtures: every test gets its own empty cache and a clean environment."""

from __future__ import annotations

import os

import pytest

# The strategy tests describe a machine without accelerators ("0 GPUs", "auto" -> CPU).
# On a GPU runner TensorFlow would see its GPUs and those facts would change, so the
# suite hides them (before TensorFlow is imported; subprocesses inherit it). The GPU
# code paths are tested up to where hardware would be needed.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

_ENV = (
    "MODELZOO_HOME",
    "MODELZOO_REGISTRY",
    "MODELZOO_OFFLINE",
    "MODELZOO_MIRROR",
    "MODELZOO_REQUIRE_HASHES",
    "MODELZOO_REQUIRE_SIGNED",
    "MODELZOO_DISABLE_PROGRESS_BARS",
    "MODELZOO_DEBUG",
    "MODELZOO_TIMEOUT",
    "MODELZOO_MAX_RETRIES",
    "MODELZOO_TRUST_CACHE",
    "MODELZOO_DEADLINE",
    "MODELZOO_MIN_RATE",
    "MODELZOO_PARALLEL",
    "MODELZOO_PARALLEL_MIN_SIZE",
    "MODELZOO_PARALLEL_PROBE",
    "MODELZOO_AUTH_TOKEN",
    "MODELZOO_AUTH_HOST",
    "MODELZOO_PROJECT",
    "MODELZOO_CPU_DEVICES",
    "TF_CONFIG",
    "TPU_NAME",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Point the cache at a fresh folder and clear every MODELZOO_* variable."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "mz-home"
    monkeypatch.setenv("MODELZOO_HOME", str(home))
    monkeypatch.setenv("MODELZOO_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return home


@pytest.fixture
def local_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "served"`` (see tests/_server.py)."""
    from _server import LocalServer

    root = tmp_path / "served"
    root.mkdir()
    with LocalServer(root) as server:
        yield server


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A real image folder: one sub-folder per class, 8 PNG digits 5 and 6 (32x32 RGB)."""
    import numpy as np
    from PIL import Image

    from modelzoo.models.datasets import digits_to_rgb, load_digits

    root = tmp_path_factory.mktemp("images")
    images, labels = load_digits()
    for digit in (5, 6):
        folder = root / f"digit_{digit}"
        folder.mkdir()
        rgb = digits_to_rgb(images[labels == digit][:8]).astype(np.uint8)
        for i, arr in enumerate(rgb):
            Image.fromarray(arr).save(folder / f"{i}.png")
    return root
