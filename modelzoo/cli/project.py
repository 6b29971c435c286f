"""Project and distribution commands: ``add``, ``outdated``, ``pack``, ``unpack``, ``publish``.

``install`` (no names / ``--frozen``) and ``remove`` live in :mod:`.packages`; only
``publish`` imports TensorFlow (it loads the model to check and describe it).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION
from ._output import emit_json, human_size, offline_mode, out, table

__all__ = ["register", "project_option", "print_project_install"]


def project_option():
    return typer.Option(
        None,
        "--project",
        help="Project folder (default: MODELZOO_PROJECT, else the nearest modelzoo.toml "
        "above the current folder).",
    )


def _install_dict(result) -> dict:
    return {
        "project": result.project.path,
        "lock": result.project.lock_path,
        "frozen": result.frozen,
        "lock_changed": result.lock_changed,
        "installed": list(result.installed),
        "models": [
            {
                "name": m.name,
                "version": m.version,
                "constraint": m.constraint,
                "variants": [a.variant for a in m.artifacts],
                "registry": m.registry,
            }
            for m in result.lock.models
        ],
    }


def print_project_install(result, *, json_out: bool) -> None:
    """Show what a project install did (shared with ``install``)."""
    if json_out:
        emit_json(_install_dict(result))
        return
    console = out()
    for spec in result.installed:
        console.print(f"installed {spec}", markup=False)
    for m in result.lock.models:
        variants = ", ".join(a.variant for a in m.artifacts)
        console.print(f"  {m.name}@{m.version} [{variants}] from {m.registry}", markup=False)
    if result.frozen:
        console.print(
            f"{len(result.lock.models)} model(s) match {result.project.lock_path}", markup=False
        )
    elif result.lock_changed:
        console.print(f"wrote {result.project.lock_path}", markup=False)
    else:
        console.print(f"{result.project.lock_path} is up to date", markup=False)


def add_cmd(
    spec: str = typer.Argument(..., help="NAME or NAME@CONSTRAINT (e.g. resnet50@^1.0)."),
    variant: str = typer.Option(None, "--variant", help="full | notop | all (default: full)."),
    project: Path = project_option(),
    json_out: bool = JSON_OPTION,
) -> None:
    """Add a model to modelzoo.toml (created if missing), install it, update modelzoo.lock."""
    from ..hub.project import add

    print_project_install(add(spec, variant=variant, project=project), json_out=json_out)


def outdated_cmd(
    project: Path = project_option(),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Compare with cached registry indexes only (as MODELZOO_OFFLINE=1); by default "
        "remote indexes are revalidated with the server.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show newer versions: locked (or installed), wanted by the constraint, latest."""
    from ..hub.project import outdated

    with offline_mode(offline):
        rows = outdated(project)
    if json_out:
        emit_json(
            [
                {
                    "name": r.name,
                    "current": r.current,
                    "wanted": r.wanted,
                    "latest": r.latest,
                    "constraint": r.constraint,
                    "registry": r.registry,
                    "outdated": r.is_outdated,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        out().print("No models: nothing is locked or installed.")
        return
    table(
        ["model", "current", "wanted", "latest", "constraint", "registry"],
        [
            (
                r.name,
                r.current or "-",
                r.wanted or "-",
                r.latest or "(in no registry)",
                r.constraint,
                r.registry or "",
            )
            for r in rows
        ],
    )


def pack_cmd(
    specs: list[str] = typer.Argument(None, help="NAME or NAME@VERSION to pack."),
    lock: Path = typer.Option(None, "--lock", help="Pack exactly what a modelzoo.lock pins."),
    output: Path = typer.Option(..., "--output", "-o", help="bundle.tar or bundle.tar.gz"),
    variant: str = typer.Option(None, "--variant", help="full | notop | all (default: full)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Write models (installing them first) into one archive for air-gapped machines."""
    from ..hub.bundle import pack

    result = pack(specs or (), output=output, lock=lock, variant=variant)
    if json_out:
        emit_json(result)
        return
    out().print(
        f"packed {', '.join(result.models)} ({result.artifacts} artifact(s)) into "
        f"{result.path}: {human_size(result.size)}, sha256:{result.sha256}",
        markup=False,
    )


def unpack_cmd(
    bundle: Path = typer.Argument(..., help="A bundle written by `modelzoo pack`."),
    root_sha256: list[str] = typer.Option(
        None,
        "--root-sha256",
        metavar="HEX",
        help="A trusted TUF root to check signed models against (repeatable).",
    ),
    lock: Path = typer.Option(None, "--lock", help="Trust the TUF roots this modelzoo.lock pins."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Verify a bundle completely, then install its models into the cache (no network).

    Models from signed registries are also checked against their TUF signatures, from a
    root pinned by --lock or --root-sha256 (or one this machine already trusts).
    """
    from ..hub.bundle import unpack

    result = unpack(bundle, trusted_roots=root_sha256 or (), lock=lock)
    if json_out:
        emit_json(result)
        return
    console = out()
    for spec in result.installed:
        console.print(f"installed {spec} from {result.registry}", markup=False)
    for spec in result.already:
        console.print(f"already installed {spec}", markup=False)
    for spec in result.signed:
        console.print(f"signatures verified: {spec}", markup=False)


def publish_cmd(
    model_file: Path = typer.Argument(..., help="A saved model: .keras (preferred) or .h5."),
    name: str = typer.Option(..., "--name", help="Model name (a-z, 0-9, '.', '_', '-')."),
    version: str = typer.Option(..., "--version", help="Semantic version, e.g. 1.0.0."),
    registry: Path = typer.Option(
        None, "--registry", help="Registry folder (default: the current folder if it is one)."
    ),
    summary: str = typer.Option(None, "--summary", help="One line for search results."),
    license: str = typer.Option("unknown", "--license", help="e.g. Apache-2.0."),
    family: str = typer.Option(
        "", "--family", help="Model family shown by search, e.g. MobileNet."
    ),
    task: str = typer.Option(
        "image-classification", "--task", help="What the model does (shown by search/info)."
    ),
    tag: list[str] = typer.Option(None, "--tag", metavar="TAG", help="Search tag (repeatable)."),
    cut_point: list[str] = typer.Option(
        None, "--cut-point", metavar="LAYER", help="Layer to cut at (repeatable)."
    ),
    labels: Path = typer.Option(
        None,
        "--labels",
        help='Class names: the NAME.labels.json `train` wrote, or a JSON list ["a", "b"].',
    ),
    preprocessing: str = typer.Option("none", "--preprocessing", help="none|tf|caffe|torch."),
    golden: bool = typer.Option(
        True,
        "--golden/--no-golden",
        help="Record golden outputs (for a seeded input, at the top and each cut point) so "
        "users can check with `modelzoo verify --outputs` that they compute what you published.",
    ),
    sign: Path = typer.Option(
        None,
        "--sign",
        metavar="KEYDIR",
        help="Sign the registry's new state with the online TUF keys in KEYDIR.",
    ),
    oms_key: Path = typer.Option(
        None,
        "--oms-key",
        metavar="KEY",
        help="Sign the model file with this elliptic-curve private key (PEM) in the OpenSSF "
        "model-signing format: writes FILE.sig beside it (needs modelzoo[signing]).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Publish a saved model into a registry folder (serve it with any static web server)."""
    from ..errors import UsageError
    from ..models.publish import publish, read_labels

    if registry is None:
        here = Path.cwd()
        if not ((here / "index.json").is_file() or (here / "models").is_dir()):
            raise UsageError(
                f"{here} is not a registry folder (no index.json or models/). Pass "
                "--registry DIR (it is created if missing)."
            )
        registry = here
    result = publish(
        model_file,
        name=name,
        version=version,
        registry=registry,
        summary=summary,
        license=license,
        family=family,
        task=task,
        tags=tag or (),
        cut_points=cut_point or (),
        labels=read_labels(labels) if labels is not None else None,
        preprocessing=preprocessing,
        golden=golden,
        sign=sign,
        oms_key=oms_key,
    )
    recorded = result.manifest.golden
    golden_outputs = [o.label for o in recorded.outputs] if recorded else []
    if json_out:
        emit_json(
            {
                "model": result.manifest.spec,
                "manifest": result.manifest_path,
                "artifact": result.artifact_path,
                "sha256": result.sha256,
                "size": result.size,
                "index": result.index_path,
                "cut_points": result.manifest.cut_points,
                "golden": golden_outputs,
                "signed": result.signed.versions if result.signed else None,
                "signature": result.signature_path,
            }
        )
        return
    out().print(
        f"published {result.manifest.spec}: {result.artifact_path} "
        f"({human_size(result.size)}, sha256:{result.sha256})\n  index: {result.index_path}",
        markup=False,
    )
    if golden_outputs:
        out().print(
            f"  golden outputs: {', '.join(golden_outputs)} (users check them with "
            f"`modelzoo verify --outputs {result.manifest.name}`)",
            markup=False,
        )
    if result.signature_path:
        out().print(f"  OMS signature: {result.signature_path}", markup=False)
    if result.signed:
        v = result.signed.versions
        out().print(
            f"  signed: targets v{v['targets']}, snapshot v{v['snapshot']}, "
            f"timestamp v{v['timestamp']}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    """Add the project and distribution commands to ``app``."""
    app.command("add")(add_cmd)
    app.command("outdated")(outdated_cmd)
    app.command("pack")(pack_cmd)
    app.command("unpack")(unpack_cmd)
    app.command("publish")(publish_cmd)
