"""The README's Python API example runs verbatim, as a user would paste it.

The block is read from README.md itself, so an API change that breaks it fails here. The
models it names (``vgg16``, ``mobilenet_v1_1.0_224``) come from their bundled manifests,
served from a local registry with stand-in weights; the names it leaves to the reader
(``x_train``, ``photos/``...) are defined first, on real image files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _server import LocalServer
from _stand_ins import publish_stand_in

pytestmark = [pytest.mark.tf, pytest.mark.slow]

README = Path(__file__).resolve().parents[1] / "README.md"

# What the example leaves to the reader: four classes of 224x224 images in memory, and a
# folder of class sub-folders ("photos/") on disk.
_PRELUDE = """
import numpy as np
rng = np.random.default_rng(0)
x_train = rng.uniform(0, 255, (8, 224, 224, 3)).astype("float32")
y_train = np.arange(8) % 4
x_test, y_test = x_train[:4], y_train[:4]
"""

# What the example promises: both models load with plain tf_keras.
_EPILOGUE = """
import json
import tf_keras
pacman = tf_keras.models.load_model("pacman.keras")
pets = tf_keras.models.load_model(result.model)
print(json.dumps({"pacman": pacman.output_shape[-1], "pets": pets.output_shape[-1],
                  "labels": result.labels, "installed": [r.name for r in mz.list_installed()]}))
"""


def python_api_block() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = README.read_text("utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: the Python API section has no ```python block"
    return match.group(1)


def test_the_block_names_only_public_api():
    import modelzoo

    names = set(re.findall(r"\bmz\.(\w+)", python_api_block()))
    assert {"install", "load", "TransferLearner", "train_from_folder"} <= names
    assert names <= set(modelzoo.__all__), names - set(modelzoo.__all__)


def test_python_api_example_runs_verbatim(tmp_path, image_folder, monkeypatch):
    root = tmp_path / "registry"
    (root / "models").mkdir(parents=True)
    work = tmp_path / "work"
    shutil.copytree(image_folder, work / "photos")
    with LocalServer(root) as server:
        for name in ("vgg16", "mobilenet_v1_1.0_224"):
            publish_stand_in(root, server.url, name)
        monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
        script = _PRELUDE + python_api_block() + textwrap.dedent(_EPILOGUE)
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["pacman"] == 4
    assert facts["pets"] == 2 and facts["labels"] == ["digit_5", "digit_6"]
    # mz.remove("vgg16") ran after install; the sliced mobilenet stays installed
    assert "vgg16" not in facts["installed"]
    assert "mobilenet_v1_1.0_224" in facts["installed"]
    assert (work / "pacman.keras").is_file() and (work / "pets.keras").is_file()
