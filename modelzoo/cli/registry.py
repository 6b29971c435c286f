"""``modelzoo registry list|add|remove|index``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._output import emit_json, out, table

__all__ = ["app"]

app = typer.Typer(
    help="Manage where models come from (priority: MODELZOO_REGISTRY > added > bundled).",
    no_args_is_help=True,
)


def _registry_dict(r) -> dict:
    return {"name": r.name, "kind": r.kind, "origin": r.origin, "location": r.location}


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json")) -> None:
    """Registries in priority order, highest first."""
    from ..registry import list_registries

    regs = list_registries()
    if json_out:
        emit_json([_registry_dict(r) for r in regs])
        return
    table(
        ["priority", "name", "kind", "from", "location"],
        [(i + 1, r.name, r.kind, r.origin, r.location) for i, r in enumerate(regs)],
    )


@app.command("add")
def add_cmd(
    location: str = typer.Argument(..., help="A folder, file:// or http(s):// URL."),
    name: str = typer.Option(None, "--name", help="Short name (default: derived)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Add a registry; it takes priority over those added before it."""
    from ..registry import add_registry

    reg = add_registry(location, name=name)
    if json_out:
        emit_json(_registry_dict(reg))
    else:
        out().print(f"added registry {reg.name!r}: {reg.location}", markup=False)


@app.command("remove")
def remove_cmd(
    name: str = typer.Argument(..., help="Name or location of an added registry."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Remove an added registry (the bundled one always stays)."""
    from ..registry import remove_registry

    reg = remove_registry(name)
    if json_out:
        emit_json(_registry_dict(reg))
    else:
        out().print(f"removed registry {reg.name!r}", markup=False)


@app.command("index")
def index_cmd(
    folder: Path = typer.Argument(..., help="Registry folder (with models/<name>/<version>/)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Validate every manifest in a registry folder and (re)write its index.json."""
    from ..registry import build_index, write_index

    path = write_index(folder)
    index = build_index(folder)
    if json_out:
        emit_json({"index": path, "models": len(index["models"])})
    else:
        out().print(f"wrote {path}: {len(index['models'])} model version(s)", markup=False)
