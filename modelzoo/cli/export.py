"""``modelzoo export`` (a model as TensorFlow.js, or a page that trains a head in the browser,
or a LiteRT ``.tflite`` file) and ``modelzoo serve`` (a local web server for the exported
folder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ._options import JSON_OPTION, TRUST_REMOTE_CODE_OPTION
from ._output import emit_json, err, human_size, out

__all__ = ["register"]

_DEFAULT_SHARD_MB = 4.0


def export_cmd(
    model: str = typer.Argument(..., help="A trained .keras file, or a registry model name."),
    out_dir: Path = typer.Option(
        ..., "--out", help="tfjs: folder to write model.json and shards; litert: FILE.tflite."
    ),
    fmt: str = typer.Option("tfjs", "--format", help="Export format: tfjs or litert."),
    cut: str = typer.Option(
        None, "--cut", help="Export the model sliced at this layer (see `modelzoo layers`)."
    ),
    browser_training: bool = typer.Option(
        False,
        "--browser-training",
        help="Export the (cut) model as a frozen base plus a page that trains a new head "
        "on webcam frames or drawings inside the browser.",
    ),
    classes: str = typer.Option(
        None,
        "--classes",
        help="With --browser-training: comma-separated class names (default: up,down,left,right).",
    ),
    float16: bool = typer.Option(
        False, "--float16", help="Store weights as float16 (half size); same as --quantize float16."
    ),
    quantize: list[str] = typer.Option(
        None,
        "--quantize",
        metavar="MODE",
        help="tfjs: store weights as float16, uint8 or uint16; DTYPE:PATTERN,... limits it "
        "to weights or layers matching shell patterns (e.g. 'uint8:conv*'). Repeatable; a "
        "dtype without patterns takes the weights no pattern claims. litert: none (float32), "
        "float16, dynamic (int8 weights) or int8 (integer-only, calibrated on --data).",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="litert: a folder of images like the model will see; int8 calibrates on them "
        "and the check against Keras runs on them.",
    ),
    check_data: Path = typer.Option(
        None,
        "--check-data",
        help="litert: a folder of images to check the export against Keras on, instead of "
        "--data's (e.g. held-out images).",
    ),
    max_diff: float = typer.Option(
        None,
        "--max-diff",
        help="litert: refuse an export whose max |Δ| from Keras exceeds this fraction of the "
        "largest output (defaults: none 1e-3, float16 2e-2, dynamic 0.1).",
    ),
    min_agreement: float = typer.Option(
        None,
        "--min-agreement",
        help="litert int8: refuse an export that keeps Keras' top-1 class on fewer than this "
        "fraction of the check inputs (default 0.9).",
    ),
    with_demo: bool = typer.Option(False, "--with-demo", help="Also write a demo index.html."),
    tfjs_url: str = typer.Option(
        None,
        "--tfjs-url",
        help="Load TF.js from this URL instead of the copy modelzoo writes beside the page.",
    ),
    shard_size: int = typer.Option(
        None, "--shard-size", help="Maximum bytes per weight file (default 4194304)."
    ),
    shard_mb: float = typer.Option(
        None, "--shard-mb", help="Maximum shard size in MiB (default 4); or use --shard-size."
    ),
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
    force: bool = typer.Option(
        False,
        "--force",
        help="tfjs: write into a non-empty folder that holds no earlier export; litert: "
        "write an export that fails the check against Keras.",
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
    """Export a model for the browser (TF.js: load it with tf.loadLayersModel('model.json'))
    or for phones and small devices (LiteRT: --format litert --out model.tflite)."""
    from ..errors import UsageError

    if fmt == "litert":
        if browser_training or with_demo or classes is not None or tfjs_url is not None:
            raise UsageError(
                "--browser-training, --with-demo, --classes and --tfjs-url are options of "
                "--format tfjs, not of litert."
            )
        if quantize and len(quantize) > 1:
            raise UsageError(
                f"--format litert takes one --quantize. Received: {', '.join(quantize)}."
            )
        from ..export.litert import export_litert

        result = export_litert(
            model,
            out_dir,
            quantize=quantize[0] if quantize else ("float16" if float16 else "none"),
            data=data,
            check_data=check_data,
            cut=cut,
            max_diff=max_diff,
            min_agreement=min_agreement,
            force=force,
            trust_remote_code=trust_remote_code,
        )
        _print_litert(result, json_out)
        return
    if fmt != "tfjs":
        raise UsageError(f"Unknown export format. Received: --format {fmt}. Valid: tfjs, litert.")
    for flag, value in (
        ("--data", data),
        ("--check-data", check_data),
        ("--max-diff", max_diff),
        ("--min-agreement", min_agreement),
    ):
        if value is not None:
            raise UsageError(f"{flag} is an option of --format litert, not of tfjs.")
    if classes is not None and not browser_training:
        raise UsageError("--classes names the classes of --browser-training; add that flag.")
    if browser_training and with_demo:
        raise UsageError("--browser-training writes its own page; leave out --with-demo.")
    if shard_size is not None and shard_mb is not None:
        raise UsageError("Give the shard size once: --shard-size BYTES or --shard-mb MB.")
    if shard_size is None:
        shard_size = int((_DEFAULT_SHARD_MB if shard_mb is None else shard_mb) * 1024 * 1024)
    if float16:
        if quantize:
            raise UsageError("Give --float16 or --quantize, not both.")
        quantize = ["float16"]
    quantize = quantize or None

    from ..export.tfjs import check_export_target

    check_export_target(out_dir, force=force)  # before the (slow) model load
    check = skipped = None
    if browser_training:
        from ..export.browser import DEFAULT_CLASSES, export_browser_training

        if check_outputs:
            raise UsageError(
                "--check-outputs compares a whole model with its manifest's golden outputs; "
                "a --browser-training base cannot be checked that way."
            )
        page = export_browser_training(
            model,
            out_dir,
            cut=cut,
            classes=classes if classes is not None else DEFAULT_CLASSES,
            quantize=quantize,
            shard_size=shard_size,
            tfjs_url=tfjs_url,
            trust_remote_code=trust_remote_code,
            force=force,
        )
        result = page.base
        if json_out:
            emit_json(page)
            return
    else:
        from ..export.tfjs import export_tfjs

        keras_model, labels, preprocessing = _load(model, cut, trust_remote_code)
        check, skipped = _golden_check(keras_model, check_outputs, cut=cut, quantize=quantize)
        result = export_tfjs(
            keras_model,
            out_dir,
            shard_size=shard_size,
            quantize=quantize,
            labels=labels,
            preprocessing=preprocessing,
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
    if browser_training:
        console.print(
            f"train in the browser: modelzoo serve {out_dir}, then open the URL it prints "
            "(classes: " + ", ".join(page.classes) + ")",
            markup=False,
        )
    elif result.index_html:
        console.print(
            f"open it: modelzoo serve {out_dir}, then the URL it prints in a browser",
            markup=False,
        )


def _golden_check(model, wanted: bool | None, *, cut: str | None, quantize: list[str] | None):
    """``(check, reason_skipped)``: the golden-output check to run on the export, if any."""
    from functools import partial

    from ..errors import UsageError
    from ..export.tfjs_runtime import (
        FLOAT16_TOLERANCE_SCALE,
        INSTALL_HINT,
        check_golden_tfjs,
        find_node_tfjs,
    )
    from ..models.loading import manifest_of

    if wanted is False:
        return None, ""
    if cut is not None:  # the golden outputs are the whole model's
        if wanted:
            raise UsageError(
                "--check-outputs compares a whole model with its manifest's golden outputs; "
                "leave out --cut to check it."
            )
        return None, ""
    dtypes = {q.partition(":")[0] for q in quantize or ()}
    if dtypes & {"uint8", "uint16"}:
        if wanted:
            raise UsageError(
                "--check-outputs cannot check uint8/uint16 weights: they move outputs beyond "
                "the golden tolerances. Check a float32 or float16 export."
            )
        return None, "uint8/uint16 weights move outputs beyond the golden tolerances"
    manifest = manifest_of(model)
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
    scale = FLOAT16_TOLERANCE_SCALE if "float16" in dtypes else 1.0
    check = partial(check_golden_tfjs, manifest=manifest, baked=True, scale=scale, runtime=runtime)
    return check, ""


def _load(model: str, cut: str | None, trust_remote_code: bool):
    """(keras model, labels, preprocessing mode) for a file or registry name, maybe cut."""
    from ..models.inference import Predictor

    predictor = Predictor(model, trust_remote_code=trust_remote_code, cut=cut)
    return predictor.model, predictor.labels, predictor.preprocessing


def _print_litert(result, json_out: bool) -> None:
    """Report what :func:`modelzoo.export.litert.export_litert` wrote and measured."""
    p = result.parity
    if p["forced"]:
        err().print(
            "warning: this export failed the check against Keras; it was written because "
            "of --force",
            markup=False,
        )
    if json_out:
        emit_json(result.report)
        return
    if p["metric"] == "top1_agreement":
        figure = f"top-1 agreement with Keras {p['value']:.1%} (threshold {p['threshold']:.0%})"
    else:
        figure = (
            f"max |Δ| from Keras {p['max_abs_diff']:.3g}, {p['relative_diff']:.2g} of the "
            f"largest output (threshold {p['threshold']:.2g})"
        )
    console = out()
    console.print(
        f"wrote {result.path} ({human_size(result.size)}, {result.quantization}): {figure} "
        f"on {p['inputs']}, run by {result.runtime}; details in {result.sidecar}",
        markup=False,
    )


def serve_cmd(
    folder: Path = typer.Argument(..., help="The folder to serve (an export's --out)."),
    port: int = typer.Option(8000, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Serve an exported folder on http://127.0.0.1:PORT/ until Ctrl-C (local only)."""
    from ..export.serve import StaticServer

    server = StaticServer(folder, port=port)
    if json_out:
        sys.stdout.write(json.dumps({"url": server.url, "folder": str(folder)}) + "\n")
        sys.stdout.flush()
    else:
        console = out()
        console.print(f"serving {folder} on {server.url} (Ctrl-C stops)", markup=False)
        console.file.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        if not json_out:
            out().print("stopped", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``serve`` to ``app``."""
    app.command("export")(export_cmd)
    app.command("serve")(serve_cmd)
