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

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    # package manager (TensorFlow-free)
    "search": "registry",
    "info": "registry",
    "resolve": "registry",
    "install": "installer",
    "list_installed": "cache",
    "remove": "cache",
    "verify": "cache",
    "Manifest": "manifest",
    # models (TensorFlow)
    "load": "loading",
    "layers": "slicing",
    "slice": "slicing",
    "freeze": "slicing",
    "unfreeze": "slicing",
    "attach_head": "heads",
    "TransferLearner": "transfer",
    "ImageFolder": "images",
    "read_images": "images",
    "make_strategy": "distribute",
    "export_tfjs": "tfjs",
    "export_browser_training": "browser",
    "export_litert": "litert",
    "scan": "safety",
    "feature_maps": "viz",
    "plot_filters": "viz",
    "plot_history": "viz",
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
