"""``modelzoo cache path|size|prune|clear``."""

from __future__ import annotations

import typer

from ._options import JSON_OPTION
from ._output import emit_json, human_size, out, table

__all__ = ["app"]

app = typer.Typer(help="Inspect and clean the local cache.", no_args_is_help=True)


@app.command("path")
def path_cmd(json_out: bool = JSON_OPTION) -> None:
    """Print the cache root (MODELZOO_HOME or the platform cache folder)."""
    from ..hub.cache import Cache

    root = Cache().root
    if json_out:
        emit_json({"path": root})
    else:
        typer.echo(str(root))


@app.command("size")
def size_cmd(json_out: bool = JSON_OPTION) -> None:
    """Bytes used by each area of the cache."""
    from ..hub.cache import Cache

    sizes = Cache().size()
    if json_out:
        emit_json(sizes)
        return
    table(["area", "size"], [(k, human_size(v)) for k, v in sizes.items()])


@app.command("prune")
def prune_cmd(
    partials: bool = typer.Option(
        False, "--partials", help="Also delete recent partial downloads."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete unreferenced blobs, stale partial downloads and free lock files."""
    from ..hub.cache import Cache

    result = Cache().prune(partials=partials)
    if json_out:
        emit_json(result)
        return
    out().print(
        f"removed {len(result.blobs)} blob(s), {len(result.partials)} partial file(s), "
        f"{len(result.locks)} lock(s); freed {human_size(result.bytes_freed)}"
    )


@app.command("clear")
def clear_cmd(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete every installed model and download (keeps registry configuration).

    Only modelzoo's own folders and files are deleted; a folder modelzoo did not create
    (no CACHEDIR.TAG marker) is refused.
    """
    from ..hub.cache import Cache

    cache = Cache()
    plan = cache.clear_plan()  # refuses a folder that is not modelzoo's, before asking
    if not plan:
        if json_out:
            emit_json({"deleted": [], "bytes_freed": 0})
        else:
            out().print(f"{cache.root} holds nothing to clear.", markup=False)
        return
    if not yes:
        console = out()
        console.print("This deletes:", markup=False)
        for path, size in plan:
            console.print(f"  {human_size(size):>9}  {path}", markup=False)
        total = sum(size for _, size in plan)
        if not typer.confirm(f"Delete these ({human_size(total)})?"):
            out().print("Nothing was deleted.", markup=False)
            return
    freed = cache.clear()
    if json_out:
        emit_json({"deleted": [path for path, _ in plan], "bytes_freed": freed})
    else:
        out().print(f"cleared {cache.root}; freed {human_size(freed)}", markup=False)
