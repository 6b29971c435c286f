"""The package's shape: the import graph has no cycle, layers point one way, privacy holds.

Read from the source with :mod:`ast`, so function-local imports count as much as the ones
at the top of a module: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "modelzoo"

#: Each folder's layer; an import may only point to the same layer or one below. The base
#: modules (errors, config, versions, progress, files, backend) sit in ``modelzoo/`` itself.
LAYERS = {
    "": 0,
    "hub": 1,
    "safety": 2,
    "distribute": 2,
    "models": 3,
    "export": 3,
    "viz": 3,
    "cli": 4,
}
#: Application modules in ``modelzoo/`` that orchestrate the layers below them.
APPS = {"modelzoo", "modelzoo.__main__", "modelzoo.demo"}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    name: str | None  # the name imported from it (None: the module itself)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _edges(module: str) -> list[Edge]:
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    here = module.split(".") if _is_package(module) else module.split(".")[:-1]
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "modelzoo":
                    edges.append(Edge(module, alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "modelzoo":
                source = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:
                    edges.append(Edge(module, submodule, None, node.lineno))
                else:
                    edges.append(Edge(module, source, alias.name, node.lineno))
    return [e for e in edges if e.target != module]


EDGES = [edge for module in sorted(MODULES) for edge in _edges(module)]


def _folder(module: str) -> str:
    parts = module.split(".")[1:]
    if module in MODULES and _is_package(module):
        return ".".join(parts)
    return ".".join(parts[:-1])


def _layer(module: str) -> int:
    if module in APPS:
        return LAYERS["cli"]
    return LAYERS[_folder(module).split(".")[0]]


def test_every_folder_has_a_layer():
    assert {_folder(m).split(".")[0] for m in MODULES} <= set(LAYERS)


def test_the_import_graph_has_no_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for edge in EDGES:
        if edge.target in MODULES:
            graph[edge.source].add(edge.target)
    # Tarjan's strongly connected components; any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_dependencies_point_down_the_layers():
    upward = [
        f"{e.source}:{e.line} imports {e.target} (layer {_layer(e.source)} -> {_layer(e.target)})"
        for e in EDGES
        if e.target in MODULES and _layer(e.target) > _layer(e.source)
    ]
    assert upward == []


def _private(edge: Edge) -> bool:
    leaf = edge.target.rsplit(".", 1)[-1]
    return leaf.startswith("_") and leaf != "__init__" or (edge.name or "").startswith("_")


def test_no_module_imports_a_private_name_from_another_folder():
    leaks = [
        f"{e.source}:{e.line} imports {e.target}{'.' + e.name if e.name else ''}"
        for e in EDGES
        if _private(e) and _folder(e.target) != _folder(e.source)
    ]
    assert leaks == []


def test_no_module_imports_an_underscored_name_of_another_module():
    # Stricter than the folder rule: a name another module needs is part of what its module
    # offers, so it is public there (folder-private modules keep the folder rule above).
    # This is what keeps line-count splits from coming back: a concept cut in two shows up
    # as one half importing the other's underscored helpers.
    leaks = [
        f"{e.source}:{e.line} imports {e.target}.{e.name}"
        for e in EDGES
        if e.name and e.name.startswith("_") and e.target != e.source
    ]
    assert leaks == []


def test_no_module_reads_a_private_attribute_of_a_module_from_another_folder():
    leaks = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"))
        bound = {}  # local name -> module it is bound to
        for e in _edges(module):
            if e.name is None and e.target in MODULES:
                bound[e.target.rsplit(".", 1)[-1]] = e.target
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and _folder(bound[node.value.id]) != _folder(module)
            ):
                leaks.append(f"{module}:{node.lineno} reads {bound[node.value.id]}.{node.attr}")
    assert leaks == []


def test_the_checks_see_what_they_claim(tmp_path):
    # The rules above are only as good as the graph: it must hold the lazy imports too.
    lazy = [e for e in EDGES if e.source == "modelzoo.models.learner"]
    assert any(e.target == "modelzoo.distribute.strategies" for e in lazy)
    assert len(MODULES) > 50
    edge = Edge("modelzoo.models.loading", "modelzoo.hub._project_file", None, 1)
    assert _private(edge) and _folder(edge.target) != _folder(edge.source)


@pytest.mark.parametrize("folder", ["hub", "safety"])
def test_importing_every_module_of_a_tf_free_folder_never_imports_tensorflow(folder):
    names = sorted(m for m in MODULES if _folder(m).split(".")[0] == folder)
    code = "import sys\n" + "".join(f"import {n}\n" for n in names)
    code += "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
