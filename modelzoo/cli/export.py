"""``modelzoo export``: a trained or registry model as a TensorFlow.js layers model."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION, TRUST_REMOTE_CODE_OPTION
from ._output import emit_json, human_size, out

__all__ = ["register"]


def export_cmd(
    model: str = typer.Argument(..., help="A trained .keras file, or a registry model name."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write model.json and shards."),
    fmt: str = typer.Option("tfjs", "--format", help="Export format (tfjs)."),
    float16: bool = typer.Option(False, "--float16", help="Store weights as float16 (half size)."),
    with_demo: bool = typer.Option(False, "--with-demo", help="Also write a demo index.html."),
    tfjs_url: str = typer.Option(None, "--tfjs-url", help="Where the demo page loads TF.js."),
    shard_mb: float = typer.Option(4.0, "--shard-mb", help="Maximum shard size in MB."),
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder that holds no earlier export."
    ),
    check_outputs: bool = typer.Option(
        None,
        "--check-outputs/--no-check-outputs",
        help="Compare the export, run by TF.js in Node.js, with the golden outputs of the "
        "model's manifest before writing it (default: when the manifest has them and Node.js "
        "with @tensorflow/tfjs is installed).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Export a model for the browser (load it with tf.loadLayersModel('model.json'))."""
    from ..errors import UsageError
    from ..inference import Predictor
    from ..tfjs import check_export_target, export_tfjs

    if fmt != "tfjs":
        raise UsageError(f"Unknown export format. Received: --format {fmt}. Valid: tfjs.")
    check_export_target(out_dir, force=force)  # before the (slow) model load
    predictor = Predictor(model, trust_remote_code=trust_remote_code)
    check, skipped = _golden_check(predictor, check_outputs, float16=float16)
    result = export_tfjs(
        predictor.model,
        out_dir,
        shard_size=int(shard_mb * 1024 * 1024),
        dtype="float16" if float16 else "float32",
        labels=predictor.labels,
        preprocessing=predictor.preprocessing,
        with_demo=with_demo,
        tfjs_url=tfjs_url,
        force=force,
        check=check,
    )
    if json_out:
        emit_json(result)
        return
    console = out()
    if check is not None:
        console.print("golden outputs: the export matches them in TF.js (Node.js)", markup=False)
    elif skipped:
        console.print(f"golden outputs not checked: {skipped}", markup=False)
    console.print(
        f"wrote {result.model_json} + {len(result.shards)} shard(s), "
        f"{human_size(result.total_bytes)} of {result.dtype} weights",
        markup=False,
    )
    if result.index_html:
        console.print(
            f"open it: python -m http.server --directory {out_dir} 8000, "
            "then http://127.0.0.1:8000/ in a browser",
            markup=False,
        )


def _golden_check(predictor, wanted: bool | None, *, float16: bool):
    """``(check, reason_skipped)``: the golden-output check to run on the export, if any."""
    from functools import partial

    from ..errors import UsageError
    from ..loading import manifest_of
    from ..tfjs_runtime import (
        FLOAT16_TOLERANCE_SCALE,
        INSTALL_HINT,
        check_golden_tfjs,
        find_node_tfjs,
    )

    if wanted is False:
        return None, ""
    manifest = manifest_of(predictor.model)
    if manifest is None or manifest.golden is None:
        if wanted:
            raise UsageError(
                "--check-outputs needs a registry model whose manifest has golden outputs; "
                "this model has none."
            )
        return None, ""
    runtime = find_node_tfjs()
    if runtime is None:
        if wanted:
            raise UsageError(f"--check-outputs runs the export in Node.js: {INSTALL_HINT}.")
        return None, f"Node.js with @tensorflow/tfjs not found ({INSTALL_HINT})"
    scale = FLOAT16_TOLERANCE_SCALE if float16 else 1.0
    check = partial(check_golden_tfjs, manifest=manifest, baked=True, scale=scale, runtime=runtime)
    return check, ""


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export_cmd)
