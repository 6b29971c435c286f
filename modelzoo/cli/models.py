"""Model commands: ``layers``, ``train``, ``predict`` (these import TensorFlow when run)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION, TRUST_REMOTE_CODE_OPTION
from ._output import emit_json, out, table

__all__ = ["register"]


def _architecture(name: str, trust_remote_code: bool):
    """A model to list layers of: a file, or a registry model's architecture.

    Keras Applications are built with ``weights=None``: listing VGG16's layers must not
    download 528 MB of weights.
    """
    from ..hub.registry import resolve
    from ..models.loading import build_application, load

    if Path(name).suffix in (".keras", ".h5") and Path(name).exists():
        return load(name, trust_remote_code=trust_remote_code, trainable=True), None
    manifest = resolve(name).manifest
    if manifest.build.kind == "keras-application":
        include_top = "full" in manifest.artifacts
        return build_application(manifest, include_top=include_top), manifest
    return load(name, trust_remote_code=trust_remote_code, trainable=True), manifest


def _print_tree(model, name: str, cuts: list, keep: set[str], *, json_out: bool) -> None:
    """The layer map: nesting, output shapes, cut points and where the resolution drops."""
    from ..viz.maps import format_layer_map, layer_map, layer_map_tree

    # Resolution drops are found on the whole model; --filter only hides rows.
    rows = [r for r in layer_map(model, cut_points=cuts) if r.path in keep]
    if json_out:
        emit_json({"model": name, "cut_points": cuts, "tree": layer_map_tree(rows)})
        return
    params = f"{model.count_params():,}"
    title = f"{name}: {model.name}, {params} params, input {model.input_shape[1:]}"
    typer.echo(format_layer_map(rows, title=title))


def layers_cmd(
    name: str = typer.Argument(..., help="Registry model (name[@version]) or a .keras/.h5 file."),
    filter: str = typer.Option(None, "--filter", "-f", help="Glob on layer names, e.g. '*relu'."),
    cut_points: bool = typer.Option(False, "--cut-points", help="Show the manifest's cut points."),
    tree: bool = typer.Option(
        False, "--tree", help="Indented tree: shapes, resolution drops, cut points."
    ),
    json_out: bool = JSON_OPTION,
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
) -> None:
    """List a model's layers (index, name, type, output shape, params) to choose a cut."""
    from ..models.slicing import layers

    model, manifest = _architecture(name, trust_remote_code)
    infos = layers(model, filter=filter)
    cuts = list(manifest.cut_points) if manifest is not None else []
    if tree:
        _print_tree(model, name, cuts, {i.name for i in infos}, json_out=json_out)
        return
    if json_out:
        emit_json({"model": name, "cut_points": cuts, "layers": infos})
        return
    if cut_points:
        if cuts:
            table(
                ["cut point", "output shape", "weights", "note"],
                [(c.layer, c.shape, c.variant or "full", c.note or "") for c in cuts],
                title="Cut points (from the manifest)",
            )
        else:
            out().print("No cut points listed in the manifest.")
        if not filter:
            return
    table(
        ["#", "name", "type", "output shape", "params", "trainable"],
        [(i.index, i.name, i.type, i.output_shape, f"{i.params:,}", i.trainable) for i in infos],
    )


def train_cmd(
    name: str = typer.Argument(..., help="Pretrained base (registry name[@version])."),
    cut: str = typer.Option(
        None,
        "--cut",
        help="Layer to cut at (see `modelzoo layers`); default: the manifest's first cut point.",
    ),
    data: Path = typer.Option(
        ..., "--data", help="Folder with one sub-folder of images per class."
    ),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training images."),
    batch_size: int = typer.Option(32, "--batch-size", help="Examples per replica."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction held out for validation."),
    hidden: list[int] = typer.Option(
        [100], "--hidden", metavar="UNITS", help="Hidden Dense sizes (repeatable)."
    ),
    out_path: Path = typer.Option(Path("model.keras"), "--out", help="Where to save (.keras)."),
    strategy: str = typer.Option(
        "auto",
        "--strategy",
        help="auto | cpu | gpu[:N] | mirrored[:DEVICES] | multi-worker (TF_CONFIG) | "
        "tpu[:NAME_OR_GRPC_ADDRESS]; see `modelzoo doctor` for what auto picks here.",
    ),
    register_timeout: float = typer.Option(
        None,
        "--register-timeout",
        help="Seconds every worker in TF_CONFIG gets to join (multi-worker; default "
        "MODELZOO_REGISTER_TIMEOUT or 120).",
    ),
    tpu_timeout: float = typer.Option(
        None,
        "--tpu-timeout",
        help="Seconds a remote TPU (grpc://HOST:PORT) gets to answer (default "
        "MODELZOO_TPU_TIMEOUT or 10).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seeds the head's initial weights, the split and the shuffle order."
    ),
    plot: Path = typer.Option(None, "--plot", help="Write loss/accuracy curves to this PNG."),
    tensorboard: Path = typer.Option(None, "--tensorboard", help="Write TensorBoard logs here."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a new head on a pretrained base, from a folder of images.

    Under --strategy multi-worker run the same command on every machine (each with its
    own TF_CONFIG); only the chief writes --out, --plot and the TensorBoard logs.
    """
    from ..models.training import train_from_folder

    def report(line: str) -> None:
        out().print(line, markup=False)

    result = train_from_folder(
        name,
        data,
        cut=cut,
        out=out_path,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        val_split=val_split,
        hidden=tuple(hidden),
        strategy=strategy,
        register_timeout=register_timeout,
        tpu_timeout=tpu_timeout,
        seed=seed,
        plot=plot,
        tensorboard=tensorboard,
        verbose=0 if json_out else 2,
        report=None if json_out else report,
    )
    if json_out:
        emit_json(result.to_dict())
        return
    final = {k_: v[-1] for k_, v in result.history.items()}
    out().print("final: " + ", ".join(f"{k_} {v:.4f}" for k_, v in final.items()))
    if not result.chief:
        out().print(f"saved by the chief to {result.model}; this worker kept no copy", markup=False)
        return
    sidecar = result.model.with_name(result.model.stem + ".labels.json")
    out().print(f"saved {result.model} (labels in {sidecar})")
    if result.plot is not None:
        out().print(f"curves: {result.plot}")
    if result.tensorboard is not None:
        out().print(f"view the logs with: tensorboard --logdir {result.tensorboard}")


def predict_cmd(
    model: str = typer.Argument(..., help="A trained .keras file, or a registry model name."),
    images: list[Path] = typer.Argument(..., help="Image files."),
    top: int = typer.Option(3, "--top", help="How many classes to show per image."),
    json_out: bool = JSON_OPTION,
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
) -> None:
    """Classify image files with a trained model (labels included)."""
    from ..errors import UsageError
    from ..models.inference import Predictor

    # Before the model loads (TensorFlow takes seconds to import): a typo fails at once.
    for image in images:
        if not image.is_file():
            raise UsageError(f"No such image file: {image}. Pass existing image files.")
    predictor = Predictor(model, trust_remote_code=trust_remote_code)
    results = predictor.predict_files(images, top=top)
    if json_out:
        emit_json(
            [{"image": r.image, "top": [{"label": n, "p": p} for n, p in r.top]} for r in results]
        )
        return
    for r in results:
        best = ", ".join(f"{n} {p:.1%}" for n, p in r.top)
        out().print(f"{r.image}: {best}")


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    app.command("layers")(layers_cmd)
    app.command("train")(train_cmd)
    app.command("predict")(predict_cmd)
