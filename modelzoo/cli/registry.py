"""``modelzoo registry list|add|remove|index|verify|init|sign|rotate-keys``."""

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
    return {
        "name": r.name,
        "kind": r.kind,
        "origin": r.origin,
        "location": r.location,
        "signed": r.signed,
    }


def _expiry(values: list[str] | None) -> dict:
    """``--expires ROLE=DAYS`` (repeatable) as timedeltas."""
    from datetime import timedelta

    from ..errors import UsageError

    result = {}
    for item in values or ():
        role, _, days = item.partition("=")
        try:
            value = float(days)
        except ValueError:
            value = 0.0
        if value <= 0:
            raise UsageError(f"Invalid --expires {item!r}: use ROLE=DAYS, e.g. timestamp=1.")
        result[role.strip()] = timedelta(days=value)
    return result


_EXPIRES = typer.Option(
    None,
    "--expires",
    metavar="ROLE=DAYS",
    help="Validity of a role's metadata (defaults: timestamp=1 snapshot=7 targets=365 root=365).",
)
_KEYS = typer.Option(
    ..., "--keys", help="Folder of the online keys (targets.pem, snapshot.pem, timestamp.pem)."
)
_ROOT_KEYS = typer.Option(
    None, "--root-keys", help="Folder of the root key, kept offline (default: --keys)."
)


def _print_signed(verb: str, result, json_out: bool) -> None:
    if json_out:
        emit_json(
            {
                "registry": result.root,
                "versions": result.versions,
                "targets": result.targets,
                "root_sha256": result.root_sha256,
            }
        )
        return
    v = result.versions
    out().print(
        f"{verb} {result.root}: root v{v['root']}, targets v{v['targets']} ({result.targets} "
        f"targets), snapshot v{v['snapshot']}, timestamp v{v['timestamp']}\n"
        f"  clients trust it with: modelzoo registry add LOCATION --root-sha256 "
        f"{result.root_sha256}\n  (or --trust {result.root / 'tuf' / 'root.json'})",
        markup=False,
    )


@app.command("list")
def list_cmd(json_out: bool = JSON_OPTION) -> None:
    """Registries in priority order, highest first."""
    from ..hub.registry import list_registries

    regs = list_registries()
    if json_out:
        emit_json([_registry_dict(r) for r in regs])
        return
    table(
        ["priority", "name", "kind", "from", "signed", "location"],
        [
            (i + 1, r.name, r.kind, r.origin, "yes" if r.signed else "no", r.location)
            for i, r in enumerate(regs)
        ],
    )


@app.command("add")
def add_cmd(
    location: str = typer.Argument(..., help="A folder, file:// or http(s):// URL."),
    name: str = typer.Option(None, "--name", help="Short name (default: derived)."),
    trust: Path = typer.Option(
        None,
        "--trust",
        metavar="ROOT.json",
        help="Trusted TUF root of a signed registry (from its publisher).",
    ),
    root_sha256: str = typer.Option(
        None,
        "--root-sha256",
        metavar="HEX",
        help="Or: the sha256 its current tuf/root.json must have (pinned on first contact).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Add a registry; it takes priority over those added before it.

    With --trust or --root-sha256 the registry is signed: every index, manifest and
    artifact hash read from it is verified with TUF from then on.
    """
    from ..hub.registry import add_registry

    reg = add_registry(location, name=name, trust=trust, root_sha256=root_sha256)
    if json_out:
        emit_json(_registry_dict(reg))
    else:
        signed = " (signed: verified with TUF)" if reg.signed else ""
        out().print(f"added registry {reg.name!r}: {reg.location}{signed}", markup=False)


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


@app.command("init")
def init_cmd(
    folder: Path = typer.Argument(..., help="Registry folder (its index.json must be current)."),
    keys: Path = _KEYS,
    root_keys: Path = _ROOT_KEYS,
    expires: list[str] = _EXPIRES,
    json_out: bool = JSON_OPTION,
) -> None:
    """Sign a registry folder with TUF: create missing ed25519 keys (0600) and metadata."""
    from ..hub.signing import init_registry

    result = init_registry(folder, keys, root_keys=root_keys, expires=_expiry(expires))
    _print_signed("signed", result, json_out)


@app.command("sign")
def sign_cmd(
    folder: Path = typer.Argument(..., help="Signed registry folder."),
    keys: Path = _KEYS,
    expires: list[str] = _EXPIRES,
    json_out: bool = JSON_OPTION,
) -> None:
    """Sign the folder's current index and manifests again (after edits; renews expiry)."""
    from ..hub.signing import sign_registry

    result = sign_registry(folder, keys, expires=_expiry(expires))
    _print_signed("signed", result, json_out)


@app.command("rotate-keys")
def rotate_keys_cmd(
    folder: Path = typer.Argument(..., help="Signed registry folder."),
    role: str = typer.Option(..., "--role", help="root | targets | snapshot | timestamp."),
    keys: Path = _KEYS,
    root_keys: Path = _ROOT_KEYS,
    expires: list[str] = _EXPIRES,
    json_out: bool = JSON_OPTION,
) -> None:
    """Replace a role's key: a new root version signed by the old (and new) root key.

    The old key file is kept as ROLE.pem.retired-<keyid>; clients follow the rotation.
    """
    from ..hub.signing import rotate_keys

    result = rotate_keys(
        folder, role=role, keys=keys, root_keys=root_keys, expires=_expiry(expires)
    )
    _print_signed(f"rotated the {role} key of", result, json_out)
