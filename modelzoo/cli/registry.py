"""``modelzoo registry list|add|remove|index|verify``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION
from ._output import emit_json, out, table

__all__ = ["app"]

app = typer.Typer(
    help="Manage where models come from (priority: MODELZOO_REGISTRY > added > bundled).",
    no_args_is_help=True,
)


def _registry_dict(r) -> dict:
    return {"name": r.name, "kind": r.kind, "origin": r.origin, "location": r.location}


@app.command("list")
def list_cmd(json_out: bool = JSON_OPTION) -> None:
    """Registries in priority order, highest first."""
    from ..hub.registry import list_registries

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
    json_out: bool = JSON_OPTION,
) -> None:
    """Add a registry; it takes priority over those added before it."""
    from ..hub.registry import add_registry

    reg = add_registry(location, name=name)
    if json_out:
        emit_json(_registry_dict(reg))
    else:
        out().print(f"added registry {reg.name!r}: {reg.location}", markup=False)


@app.command("remove")
def remove_cmd(
    name: str = typer.Argument(..., help="Name or location of an added registry."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Remove an added registry (the bundled one always stays)."""
    from ..hub.registry import remove_registry

    reg = remove_registry(name)
    if json_out:
        emit_json(_registry_dict(reg))
    else:
        out().print(f"removed registry {reg.name!r}", markup=False)


@app.command("index")
def index_cmd(
    folder: Path = typer.Argument(..., help="Registry folder (with models/<name>/<version>/)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Validate every manifest in a registry folder and (re)write its index.json."""
    from ..hub.registry import build_index, write_index

    path = write_index(folder)
    index = build_index(folder)
    if json_out:
        emit_json({"index": path, "models": len(index["models"])})
    else:
        out().print(f"wrote {path}: {len(index['models'])} model version(s)", markup=False)


@app.command("verify")
def verify_cmd(
    folder: Path = typer.Argument(..., help="Registry folder (with models/<name>/<version>/)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Re-hash every artifact stored in a registry folder against its manifest (exit 1 on
    problems) and check that index.json is up to date."""
    from ..hub.folder import verify_registry

    report = verify_registry(folder)
    if json_out:
        emit_json(
            {
                "ok": report.ok,
                "index": report.index,
                "index_message": report.index_message,
                "leftovers": list(report.leftovers),
                "artifacts": [
                    {
                        "model": f"{c.name}@{c.version}",
                        "variant": c.variant,
                        "status": c.status,
                        "path": c.path,
                        "expected": c.expected,
                        "actual": c.actual,
                        "message": c.message,
                    }
                    for c in report.checks
                ],
            }
        )
    else:
        console = out()
        for c in report.checks:
            console.print(f"{c.status:<17}{c.message}", markup=False)
        console.print(f"{'index ' + report.index:<17}{report.index_message}", markup=False)
        for path in report.leftovers:
            console.print(
                f"{'leftover':<17}{path}: staging folder of an interrupted publish; the next "
                "publish removes it (or delete it)",
                markup=False,
            )
        bad = sum(not c.ok for c in report.checks) + (report.index != "ok")
        bad += len(report.leftovers)
        console.print(
            f"{len(report.checks)} artifact(s) checked: "
            + ("no problems" if report.ok else f"{bad} problem(s)"),
            markup=False,
        )
    if not report.ok:
        raise typer.Exit(1)
