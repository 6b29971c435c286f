"""Package-manager commands: ``search``, ``info``, ``install``, ``list``, ``remove``, ``verify``.

None of these import TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION
from ._output import emit_json, env_switch, human_size, offline_mode, out, table
from .project import print_project_install, project_option

__all__ = ["register"]

_REQUIRE_SIGNED = typer.Option(
    False,
    "--require-signed",
    help="Refuse unsigned registries (as MODELZOO_REQUIRE_SIGNED=1; bundled one excepted).",
)


def search_cmd(
    query: str = typer.Argument(None, help="Words or a glob (e.g. 'mobilenet_v2_*')."),
    task: str = typer.Option(None, "--task", help="Only this task."),
    tag: str = typer.Option(None, "--tag", help="Only models with this tag."),
    family: str = typer.Option(None, "--family", help="Only this family."),
    limit: int = typer.Option(0, "--limit", "-n", help="Show at most N results (0 = all)."),
    refresh: bool = typer.Option(False, "--refresh", help="Re-fetch remote registry indexes."),
    require_signed: bool = _REQUIRE_SIGNED,
    json_out: bool = JSON_OPTION,
) -> None:
    """Search the registries (reads only their indexes: fast)."""
    from ..hub.registry import search

    with env_switch("MODELZOO_REQUIRE_SIGNED", require_signed):
        results = search(query, task=task, tag=tag, family=family, refresh=refresh)
    if limit > 0:
        results = results[:limit]
    if json_out:
        emit_json([r.to_dict() for r in results])
        return
    if not results:
        out().print(f"No models match {query!r}. Try `modelzoo search` to list all.")
        return
    registries = {r.registry for r in results}
    columns = ["name", "version", "family", "summary"]
    if len(registries) > 1:
        columns.append("registry")
    rows = [(r.name, r.version, r.family, r.summary, r.registry)[: len(columns)] for r in results]
    table(columns, rows)


def info_cmd(
    spec: str = typer.Argument(..., help="name or name@version"),
    refresh: bool = typer.Option(
        False, "--refresh", help="Fetch remote registry indexes and manifests again."
    ),
    require_signed: bool = _REQUIRE_SIGNED,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show a model's manifest: input, preprocessing, artifacts, cut points, licence."""
    from ..hub.cache import list_installed
    from ..hub.registry import resolve

    with env_switch("MODELZOO_REQUIRE_SIGNED", require_signed):
        resolved = resolve(spec, refresh=refresh)
    m = resolved.manifest
    installed = [r for r in list_installed(m.name) if r.version == m.version]
    if json_out:
        emit_json(
            {
                **m.to_dict(),
                "registry": resolved.registry,
                "installed": [r.to_dict() for r in installed],
            }
        )
        return
    console = out()
    console.print(f"[bold]{m.spec}[/]  {m.summary}", markup=True)
    facts = [
        ("family", m.family),
        ("task", m.task),
        ("license", m.license),
        ("tags", ", ".join(m.tags)),
        ("paper", m.paper or ""),
        ("homepage", m.homepage or ""),
        ("registry", resolved.registry),
        ("input", f"shape {list(m.input.shape)}, min size {m.input.min_size}, {m.input.dtype}"),
        ("preprocessing", m.input.preprocessing),
        (
            "labels",
            m.labels
            if isinstance(m.labels, str)
            else (f"{len(m.labels)}: {', '.join(m.labels[:10])}" if m.labels else "none"),
        ),
        (
            "build",
            f"{m.build.kind} {m.build.constructor or ''} {m.build.kwargs or ''}".rstrip(),
        ),
        (
            "golden",
            f"{', '.join(o.label for o in m.golden.outputs)} (modelzoo verify --outputs)"
            if m.golden
            else "",
        ),
    ]
    for key, value in facts:
        if value:
            console.print(f"  {key:<14}{value}", markup=False)
    have = {r.variant for r in installed}
    console.print("  artifacts", markup=False)
    for a in m.artifacts.values():
        digest = str(a.hash) if a.hash else "no published hash (sha256 recorded on first use)"
        state = "installed" if a.variant in have else "not installed"
        console.print(
            f"    {a.variant:<6} {a.format}, {human_size(a.size)}, {state}\n"
            f"           {digest}\n           {a.url}",
            markup=False,
        )
    if m.cut_points:
        table(
            ["cut point", "output shape", "in artifact", "note"],
            [(c.layer, c.shape, c.variant or "full", c.note or "") for c in m.cut_points],
        )
    if m.notes:
        console.print(f"notes: {m.notes}", markup=False)


def install_cmd(
    specs: list[str] = typer.Argument(
        None, help="name or name@version (several allowed); none: the project's models."
    ),
    variant: str = typer.Option(None, "--variant", help="full | notop | all (default: full)."),
    force: bool = typer.Option(False, "--force", help="Download again even if installed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be fetched."),
    require_hashes: bool = typer.Option(
        None, "--require-hashes", help="Refuse artifacts without a published hash."
    ),
    frozen: bool = typer.Option(
        False,
        "--frozen",
        help="Install exactly what modelzoo.lock pins; fail if it disagrees with modelzoo.toml.",
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Fetch remote registry indexes and manifests again."
    ),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Use only the cache and cached registry indexes (as MODELZOO_OFFLINE=1).",
    ),
    parallel: int = typer.Option(
        None,
        "--parallel",
        help="Connections per large download (default MODELZOO_PARALLEL or 8; 1 = one stream).",
    ),
    require_signed: bool = _REQUIRE_SIGNED,
    project: Path = project_option(),
    json_out: bool = JSON_OPTION,
) -> None:
    """Download, verify and cache models (atomic; resumes interrupted downloads).

    Without names, install every model in the project's modelzoo.toml and write
    modelzoo.lock; with --frozen, install exactly what modelzoo.lock pins (like npm ci).
    Named models go to the cache only (use `modelzoo add` to put them in the project).
    """
    from ..hub.install import install

    if not specs or frozen:
        from ..errors import UsageError
        from ..hub.project import install_project

        if specs or variant or force or dry_run:
            given = " ".join(specs or []) or "--variant/--force/--dry-run"
            raise UsageError(
                "A project install (no model names, or --frozen) follows modelzoo.toml and "
                f"modelzoo.lock; it takes no {given}. Name models without --frozen to install "
                "them into the cache only."
            )
        with offline_mode(offline), env_switch("MODELZOO_REQUIRE_SIGNED", require_signed):
            result = install_project(project, frozen=frozen)
        print_project_install(result, json_out=json_out)
        return
    results = []
    with offline_mode(offline), env_switch("MODELZOO_REQUIRE_SIGNED", require_signed):
        for spec in specs:
            results.append(
                install(
                    spec,
                    variant=variant,
                    force=force,
                    dry_run=dry_run,
                    require_hashes=require_hashes,
                    refresh=refresh,
                    parallel=parallel,
                )
            )
    if json_out:
        emit_json(
            [
                {
                    "model": r.spec,
                    "registry": r.registry,
                    "dry_run": r.dry_run,
                    "fetched": list(r.fetched),
                    "linked": list(r.linked),
                    "records": {k: v.to_dict() for k, v in r.records.items()},
                    "planned": r.planned,
                }
                for r in results
            ]
        )
        return
    if dry_run:
        rows = []
        for r in results:
            for p in r.planned.values():
                rows.append((r.spec, p.variant, p.action, human_size(p.size), p.url))
        table(["model", "artifact", "action", "size", "url"], rows, title="Dry run")
        todo = [p for r in results for p in r.planned.values() if not p.cached]
        total = sum(p.size or 0 for p in todo)
        unknown = sum(p.size is None for p in todo)
        note = f" + {unknown} artifact(s) of unknown size" if unknown else ""
        out().print(f"would download {len(todo)} artifact(s): {human_size(total)}{note}")
        return
    console = out()
    for r in results:
        for variant_name, rec in r.records.items():
            if variant_name in r.fetched:
                verb = "installed"
            elif variant_name in r.linked:
                verb = "installed (bytes already in the cache)"
            else:
                verb = "already installed"
            trust = " (no published hash: sha256 recorded on first use)" * rec.trusted_on_first_use
            console.print(
                f"{verb} {r.spec} [{variant_name}] {human_size(rec.size)} "
                f"sha256:{rec.sha256[:16]}…{trust}\n  -> {rec.path}",
                markup=False,
            )


def list_cmd(
    name: str = typer.Argument(None, help="Only this model."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List installed models."""
    from ..hub.cache import list_installed

    records = list_installed(name)
    if json_out:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        out().print("Nothing installed. Try `modelzoo search` and `modelzoo install NAME`.")
        return
    table(
        ["model", "artifact", "size", "sha256", "pinned by", "installed"],
        [
            (
                r.spec,
                r.variant,
                human_size(r.size),
                r.sha256[:12],
                r.declared_hash.split(":", 1)[0] if r.declared_hash else "tofu",
                r.installed_at[:10],
            )
            for r in records
        ],
    )


def remove_cmd(
    spec: str = typer.Argument(..., help="name or name@version"),
    variant: str = typer.Option(None, "--variant", help="Only this artifact."),
    keep_cache: bool = typer.Option(
        False, "--keep-cache", help="In a project: only edit modelzoo.toml and modelzoo.lock."
    ),
    project: Path = project_option(),
    json_out: bool = JSON_OPTION,
) -> None:
    """Uninstall a model from the cache.

    Inside a project whose modelzoo.toml lists NAME (given without @version or
    --variant), also drop it from modelzoo.toml and modelzoo.lock; --keep-cache leaves
    the cached files for other projects.
    """
    from ..errors import NotInstalledError
    from ..hub.cache import remove
    from ..hub.project import remove_from_project
    from ..versions import split_spec

    name, version = split_spec(spec)
    in_project = False
    if version is None and variant is None:
        in_project = remove_from_project(name, project=project)
    removed = []
    if not keep_cache:
        try:
            removed = remove(spec, variant=variant)
        except NotInstalledError:
            if not in_project:
                raise
    if json_out:  # the same list as outside a project; modelzoo.toml shows the rest
        emit_json([r.to_dict() for r in removed])
        return
    if in_project:
        out().print(f"removed {name} from modelzoo.toml and modelzoo.lock", markup=False)
    for r in removed:
        out().print(f"removed {r.spec} [{r.variant}]", markup=False)


def verify_cmd(
    spec: str = typer.Argument(None, help="Only this model (name or name@version)."),
    outputs: bool = typer.Option(
        False,
        "--outputs",
        help="Run the model on its golden input and compare the outputs its manifest "
        "records (top and cut points); catches wrong build kwargs or preprocessing.",
    ),
    signature: bool = typer.Option(
        False,
        "--signature",
        help="Check NAME's installed files against the publisher's OpenSSF model-signing "
        "(OMS) bundles with --public-key (needs modelzoo[signing]).",
    ),
    public_key: Path = typer.Option(
        None,
        "--public-key",
        metavar="KEY",
        help="The publisher's elliptic-curve public key (PEM), for --signature.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Re-hash installed artifacts against their recorded and published hashes.

    With --outputs, run each model (NAME, or every installed model whose manifest has
    golden outputs) and compare what it computes with the manifest's golden outputs.
    With --signature --public-key KEY, verify NAME's publisher signatures (OMS).
    """
    if signature or public_key is not None:
        _verify_signature(spec, public_key, json_out=json_out)
        return
    if outputs:
        _verify_outputs(spec, json_out=json_out)
        return
    from ..hub.cache import Cache, verify

    results = verify(spec)
    bad = [r for r in results if not r.ok]
    problem = Cache().tofu_problem()  # verify() checked everything else without it
    if json_out:
        emit_json(
            [
                {
                    "model": r.record.spec,
                    "variant": r.record.variant,
                    "status": r.status,
                    "expected": r.expected,
                    "actual": r.actual,
                    "message": r.message,
                }
                for r in results
            ]
        )
    else:
        if not results:
            out().print("Nothing installed to verify.")
        for r in results:
            out().print(f"{r.status:<9}{r.message}", markup=False)
    if bad or problem:  # verify() has logged the problem with tofu.json
        raise typer.Exit(1)


def _verify_signature(spec: str | None, public_key: Path | None, *, json_out: bool) -> None:
    """``verify NAME --signature --public-key KEY``: OMS signatures of one model."""
    from ..errors import UsageError
    from ..hub.model_signature import verify_signature

    if spec is None or public_key is None:
        raise UsageError(
            "verify --signature checks one model with its publisher's key: "
            "`modelzoo verify NAME --signature --public-key KEY.pem`."
        )
    checks = verify_signature(spec, public_key=public_key)
    if json_out:
        emit_json(
            [
                {
                    "model": c.record.spec,
                    "variant": c.record.variant,
                    "status": "ok",
                    "file": c.record.path,
                    "bundle": c.bundle,
                    "public_key": c.public_key,
                    "seconds": round(c.seconds, 4),
                }
                for c in checks
            ]
        )
        return
    for c in checks:
        out().print(
            f"{'signed':<9}{c.record.spec} ({c.record.variant}): OMS signature verified with "
            f"{c.public_key}",
            markup=False,
        )


def _verify_outputs(spec: str | None, *, json_out: bool) -> None:
    """``verify --outputs``: golden outputs of one model, or of every installed one."""
    from ..errors import ModelFileError
    from ..hub.cache import list_installed
    from ..models.golden import verify_outputs

    if spec is not None:
        specs, skip_plain = [spec], False
    else:
        specs, skip_plain = sorted({r.spec for r in list_installed()}), True
    rows, failed, skipped = [], False, []
    for one in specs:
        if skip_plain:
            from ..hub.project import resolve_in_context

            if resolve_in_context(one).manifest.golden is None:
                skipped.append(one)
                continue
        try:
            report = verify_outputs(one)
        except ModelFileError as exc:  # the weights do not even fit what the manifest builds
            failed = True
            message = f"{one}: cannot build the model its manifest describes: {exc}"
            rows.append(
                {
                    "model": one,
                    "output": None,
                    "ok": False,
                    "max_abs_diff": None,
                    "tolerance": None,
                    "where": "load",
                    "message": message,
                }
            )
            continue
        failed = failed or not report.ok
        rows += [{"model": report.spec, **c.to_dict()} for c in report.checks]
    if json_out:
        emit_json(rows)
    else:
        if not specs:
            out().print("Nothing installed to verify.")
        for row in rows:
            out().print(f"{'ok' if row['ok'] else 'MISMATCH':<9}{row['message']}", markup=False)
        for one in skipped:
            out().print(f"{'skipped':<9}{one}: no golden outputs in its manifest", markup=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the package-manager commands to ``app``."""
    app.command("search")(search_cmd)
    app.command("info")(info_cmd)
    app.command("install")(install_cmd)
    app.command("list")(list_cmd)
    app.command("remove")(remove_cmd)
    app.command("verify")(verify_cmd)
