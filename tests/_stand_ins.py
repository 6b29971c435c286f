"""Bundled Keras Applications manifests served from a local registry with stand-in weights.

The real weight files need the internet; their stand-ins are built the way the weights'
authors built theirs (the manifest's constructor and kwargs, ``weights=None``), saved in the
same ``h5-weights`` format, and published under the bundled manifest with their real hash,
so everything after the download (hash check, scan, build, load, cut) runs as for users.
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path

from modelzoo.hub.registry import bundled_registry_path, write_index

__all__ = ["BUNDLED", "bundled_doc", "publish_stand_in"]

BUNDLED = bundled_registry_path()


def bundled_doc(name: str) -> dict:
    """The bundled manifest of ``name`` (version 1.0.0) as a dict."""
    return json.loads((BUNDLED / "models" / name / "1.0.0" / "manifest.json").read_text("utf-8"))


def publish_stand_in(root: Path, base_url: str, name: str) -> dict:
    """Publish ``name``'s bundled manifest into the registry folder ``root`` (served at
    ``base_url``) with random ``notop`` weights; the ``full`` file is named but not written.
    Returns the published manifest document."""
    import tf_keras as keras

    doc = bundled_doc(name)
    folder = root / "models" / name / "1.0.0"
    folder.mkdir(parents=True)
    kwargs = {k: v for k, v in doc["build"]["kwargs"].items() if k != "input_shape"}
    ctor = getattr(keras.applications, doc["build"]["constructor"])
    stand_in = ctor(
        include_top=False, weights=None, input_shape=tuple(doc["input"]["shape"]), **kwargs
    )
    notop = doc["artifacts"]["notop"]
    path = folder / notop["file_name"]
    stand_in.save_weights(path)
    del stand_in
    keras.backend.clear_session()
    gc.collect()
    notop["url"] = f"{base_url}/models/{name}/1.0.0/{notop['file_name']}"
    notop["hash"] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    full = doc["artifacts"]["full"]
    full["url"] = f"{base_url}/models/{name}/1.0.0/{full['file_name']}"
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    write_index(root)
    return doc
