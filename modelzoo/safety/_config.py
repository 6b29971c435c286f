"""What a model config may name: every class and function reference is checked here.

A Keras config is JSON, but tf_keras turns names in it into code: a ``module`` field is
imported, a ``class_name`` is looked up and instantiated, a Lambda carries bytecode, op
layers call TensorFlow symbols by name. :func:`check_config` walks every nested object
(layers, activations, initializers, regularizers, constraints, wrapped and nested
models, the compile config) and allows only built-in tf_keras classes, built-in
functions, and plain-math TensorFlow/NumPy functions of modules already loaded. The
built-in set comes from tf_keras itself, imported lazily through ``backend.keras()``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from .. import backend, files
from ..errors import UnsafeModelError

__all__ = ["parse_config", "check_config", "count_layers", "builtin_names"]

# --- what a config may reference --------------------------------------------------------

# Roots a function reference may import from; classes must come from tf_keras itself.
_FUNCTION_ROOTS = frozenset({"keras", "tf_keras", "tensorflow", "numpy", "builtins"})
_CLASS_ROOTS = frozenset({"keras", "tf_keras"})
_TYPESPEC_ROOTS = frozenset({"keras", "tf_keras", "tensorflow"})
# Built-in classes that run code stored in the file: refused by name.
_CODE_CLASSES = {
    "Lambda": "is a Lambda layer, which runs Python code stored in the file",
    "TensorFlowOpLayer": "is a TensorFlowOpLayer, which runs a TensorFlow op stored in the file",
}
# Marker objects of Keras' JSON encoders: plain data, no lookup.
_PLAIN_DATA = frozenset(
    {"__tensor__", "__numpy__", "__bytes__", "__tuple__", "__ellipsis__", "TensorShape"}
)
# Where tf_keras keeps the classes and functions a config may name.
_CLASS_NAMESPACES = (
    "layers",
    "layers.experimental",
    "layers.experimental.preprocessing",
    "initializers",
    "regularizers",
    "constraints",
    "optimizers",
    "optimizers.legacy",
    "optimizers.schedules",
    "optimizers.experimental",
    "losses",
    "metrics",
    "models",
    "mixed_precision",
    "experimental",
)
_FUNCTION_NAMESPACES = ("activations", "losses", "metrics")
_NOT_FUNCTIONS = frozenset({"get", "serialize", "deserialize"})
# Op layers call a TensorFlow symbol named in the config; lookup layers may read a file.
_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
_ATTRIBUTE_LAYERS = frozenset({"InstanceProperty", "InstanceMethod"})
_LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})
# Symbol parts that reach files, the network, the interpreter or other Keras loaders.
_DENY_PARTS = frozenset(
    {
        "io", "os", "sys", "gfile", "file_io", "subprocess", "shutil", "pickle", "marshal",
        "ctypes", "ctypeslib", "raw_ops", "debugging", "summary", "saved_model", "data",
        "distribute", "autograph", "config", "sysconfig", "tpu", "train", "queue", "lookup",
        "profiler", "testing", "test", "f2py", "distutils", "npyio", "platform", "tools",
        "app", "flags", "logging", "keras", "tf_keras", "estimator", "function", "builtins",
    }
)  # fmt: skip
_DENY_WORDS = (
    "file", "print", "py_func", "numpy_function", "library", "save", "restore",
    "checkpoint", "write", "read", "load", "exec", "eval", "system", "import", "pickle",
    "shell", "remove", "delete", "rmtree", "rename", "mkdir", "glob", "memmap", "open",
    "fromregex", "genfromtxt", "attr", "globals", "socket", "url", "http", "download",
)  # fmt: skip


def parse_config(text: str, path: str, what: str) -> dict[str, Any]:
    """Decode a config document (plain JSON, never Keras' decoder).

    Raises:
        UnsafeModelError: for invalid JSON, absurd nesting or a non-object document.
    """
    try:
        doc = files.loads(text)
    except files.InvalidJSONError as exc:
        raise UnsafeModelError(path, f"{what} is {exc.reason}") from None
    if not isinstance(doc, dict):
        raise UnsafeModelError(path, f"{what} is not a JSON object")
    return doc


def check_config(doc: Any, *, path: str, owner: str = "the model config") -> set[str]:
    """Walk every nested object of a decoded config; refuse code and unknown classes.

    Args:
        doc: the decoded config (model config, training config or config.json).
        path: the file named in errors.
        owner: how to name the top-level object in errors.

    Returns:
        The Keras class names the config uses.

    Raises:
        UnsafeModelError: naming the layer and the reference that is not allowed.
    """
    classes, functions = builtin_names()
    seen: set[str] = set()
    stack: list[tuple[Any, str]] = [(doc, owner)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((item, where) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        if "class_name" in node:
            where = _owner(node, where)
            _check_object(node, where, path, classes, functions, seen)
        for key, value in node.items():
            if isinstance(value, dict | list):
                stack.append((value, "the compile config" if key == "compile_config" else where))
    return seen


def _check_object(node: dict, where: str, path: str, classes, functions, seen: set) -> None:
    name = node["class_name"]
    module = node.get("module")
    registered = node.get("registered_name")

    def refuse(reason: str) -> UnsafeModelError:
        return UnsafeModelError(path, f"{where} {reason}")

    if not isinstance(name, str) or not (module is None or isinstance(module, str)):
        raise refuse(f"has a malformed class_name/module ({name!r}, {module!r})")
    if name == "function":
        _check_function(node, module, registered, functions, refuse)
        return
    if name == "__lambda__":
        raise refuse("holds a serialized Python lambda, which runs code stored in the file")
    if name == "__typespec__":
        _check_typespec(node, module, registered, refuse)
        return
    if name == "TypeSpec":  # legacy JSON: looked up in TensorFlow's TypeSpec registry
        problem = _unsafe_symbol(str(node.get("type_spec", "")))
        if problem:
            raise refuse(f"names type spec {node.get('type_spec')!r}, which {problem}")
        return
    if name in _PLAIN_DATA or name == "CompositeTensor":
        return
    if name in _CODE_CLASSES:
        raise refuse(_CODE_CLASSES[name])
    if module is not None and module.split(".")[0] not in _CLASS_ROOTS:
        raise refuse(
            f"names class {name!r} from module {module!r}: loading it would import (run) "
            "that module, and only built-in tf_keras classes are allowed"
        )
    for candidate in (name, registered):
        if candidate is not None and candidate not in classes:
            raise refuse(
                f"uses class {candidate!r}, which is not a built-in tf_keras class (an "
                "unknown custom object: its code is not part of the file)"
            )
    seen.add(name)
    config = node.get("config")
    if isinstance(config, dict):
        _check_layer_config(name, config, refuse)


def _check_function(node, module, registered, functions, refuse) -> None:
    fn = node.get("config")
    if not isinstance(fn, str) or not fn.isidentifier():
        raise refuse(f"references a function by the malformed name {fn!r}")
    if registered not in (None, "function", fn):
        raise refuse(f"references function {fn!r} under another registered name {registered!r}")
    root = module.split(".")[0] if module else None
    if root is not None and root not in _FUNCTION_ROOTS:
        raise refuse(
            f"references function {fn!r} from module {module!r}: loading it would import "
            "(run) that module, and only tf_keras, keras, tensorflow and numpy functions "
            "are allowed"
        )
    if root in (None, "keras", "tf_keras", "builtins"):
        if fn not in functions:
            raise refuse(
                f"references function {fn!r}, which is not a built-in tf_keras function "
                "(activations, losses, metrics)"
            )
        return
    problem = _unsafe_symbol(f"{module}.{fn}")
    if problem:
        raise refuse(f"references {module}.{fn}, which {problem}")
    # Only functions of modules already imported: resolving must not import anything new.
    loaded = sys.modules.get(module)
    target = vars(loaded).get(fn) if loaded is not None else None
    if target is None or isinstance(target, type) or not callable(target):
        raise refuse(f"references {module}.{fn}, which is not a function tf_keras has loaded")


def _check_typespec(node, module, registered, refuse) -> None:
    spec = node.get("spec_name")
    if not isinstance(spec, str) or not spec.isidentifier() or not spec.endswith("Spec"):
        raise refuse(f"names a malformed type spec {spec!r}")
    root = module.split(".")[0] if module else None
    if root not in _TYPESPEC_ROOTS or registered not in (None, spec):
        raise refuse(f"names type spec {spec!r} from module {module!r}, outside TensorFlow")
    if root == "tensorflow":
        loaded = sys.modules.get(module)
        if not isinstance(vars(loaded).get(spec) if loaded is not None else None, type):
            raise refuse(f"names type spec {module}.{spec}, which TensorFlow has not loaded")


def _check_layer_config(name: str, config: dict, refuse) -> None:
    """Built-in layers whose config names code to call or a host file to read."""
    if name in _OP_LAYERS:
        symbol = config.get("function")
        problem = _unsafe_symbol(symbol) if isinstance(symbol, str) else "is not a name"
        if problem:
            raise refuse(f"calls TensorFlow symbol {symbol!r}, which {problem}")
    elif name == "ClassMethod":
        cls, method = config.get("cls_symbol"), config.get("method_name")
        symbol = f"{cls}.{method}"
        named = isinstance(cls, str) and isinstance(method, str)
        problem = _unsafe_symbol(symbol) if named else "is not a name"
        if problem or str(method).startswith("_"):
            raise refuse(f"calls class method {symbol!r}, which {problem or 'is private'}")
    elif name in _ATTRIBUTE_LAYERS:
        attr = config.get("attr_name")
        problem = _unsafe_symbol(attr) if isinstance(attr, str) else "is not a name"
        if problem or str(attr).startswith("_"):
            raise refuse(f"accesses tensor attribute {attr!r}, which {problem or 'is private'}")
    elif name in _LOOKUP_LAYERS and isinstance(config.get("vocabulary"), str):
        raise refuse(f"reads its vocabulary from the file {config['vocabulary']!r} on this machine")


def _unsafe_symbol(symbol: str) -> str | None:
    """Why a dotted symbol may not be called, or None when it is plain math."""
    parts = symbol.split(".")
    if not all(part.isidentifier() for part in parts):
        return "is not a valid dotted name"
    for part in parts:
        low = part.lower()
        if low in _DENY_PARTS or any(word in low for word in _DENY_WORDS):
            return "can reach files, the network, the interpreter or another loader"
    return None


def _owner(node: dict, outer: str) -> str:
    config = node.get("config")
    label = config.get("name") if isinstance(config, dict) else None
    name = node.get("class_name")
    if isinstance(label, str) and isinstance(name, str) and name != "function":
        return f"{name} {label!r}"
    return outer


def count_layers(doc: dict) -> int | None:
    """Layers of a Functional/Sequential config, or None for anything else."""
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(config.get("layers"), list):
        return len(config["layers"])
    if isinstance(config, list):  # very old Sequential configs
        return len(config)
    return None


@functools.cache
def builtin_names() -> tuple[frozenset[str], frozenset[str]]:
    """(class names, function names) that tf_keras itself provides."""
    keras = backend.keras()
    classes: set[str] = set()
    functions: set[str] = set()
    for dotted in _CLASS_NAMESPACES:
        classes.update(n for n, obj in _public(keras, dotted) if isinstance(obj, type))
    for dotted in _FUNCTION_NAMESPACES:
        functions.update(
            n for n, obj in _public(keras, dotted) if callable(obj) and not isinstance(obj, type)
        )
    # Layers only tf_keras' own deserializer knows (Functional, TFOpLambda, V1/V2 RNNs, ...);
    # looked up in sys.modules because importing tf_keras already loaded it.
    registry = sys.modules.get("tf_keras.src.layers.serialization")
    if registry is not None:
        registry.populate_deserializable_objects()
        for n, obj in registry.LOCAL.ALL_OBJECTS.items():
            (classes if isinstance(obj, type) else functions).add(n)
    else:  # pragma: no cover - depends on tf_keras internals
        classes.update({"Functional", "TFOpLambda", "SlicingOpLambda", "ClassMethod"})
    # tf_keras registers its new optimizers as "Custom>Adam" etc.; user registrations
    # (another module) are custom objects and stay unknown.
    for n, obj in keras.saving.get_custom_objects().items():
        if str(getattr(obj, "__module__", "")).startswith("tf_keras."):
            (classes if isinstance(obj, type) else functions).add(n)
    return frozenset(classes), frozenset(functions - _NOT_FUNCTIONS)


def _public(keras, dotted: str) -> list[tuple[str, Any]]:
    obj = keras
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return []
    return [(n, v) for n, v in vars(obj).items() if not n.startswith("_")]
