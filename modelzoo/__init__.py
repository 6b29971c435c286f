"""modelzoo: ``npm install`` for pretrained neural networks.

Install verified pretrained tf-keras models from registries of manifests, slice them at
named layers, attach trainable heads and train them on CPU, GPU or TPU::

    import modelzoo as mz
    features = mz.load("mobilenet_v1_1.0_224", cut="conv_pw_13_relu")
    model = mz.attach_head(features, num_classes=4, hidden=(100,))

Every public name is resolved lazily, so ``import modelzoo`` is fast and never imports
TensorFlow; only the functions that build models do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .config import VERSION as __version__  # noqa: F401 (public)

# public name -> module that defines it
_LAZY = {
    # package manager (TensorFlow-free)
    "search": "hub.registry",
    "info": "hub.registry",
    "resolve": "hub.registry",
    "install": "hub.install",
    "list_installed": "hub.cache",
    "remove": "hub.cache",
    "verify": "hub.cache",
    "verify_signature": "hub.model_signature",
    "Manifest": "hub.manifest",
    # models (TensorFlow)
    "load": "models.loading",
    "layers": "models.loading",
    "slice": "models.slicing",
    "freeze": "models.slicing",
    "unfreeze": "models.slicing",
    "attach_head": "models.heads",
    "TransferLearner": "models.learner",
    "train_from_folder": "models.training",
    "ImageFolder": "models.images",
    "read_images": "models.images",
    "make_strategy": "distribute.strategies",
    "export_tfjs": "export.tfjs",
    "export_browser_training": "export.browser",
    "export_litert": "export.litert",
    "scan": "safety.scan",
    "feature_maps": "viz.maps",
    "plot_filters": "viz.maps",
    "plot_history": "viz.maps",
}

__all__ = sorted([*_LAZY, "errors", "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from . import errors  # noqa: F401


def __getattr__(name: str):
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
