"""``modelzoo demo``: transfer learning on the bundled offline model, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import JSON_OPTION
from ._output import emit_json, out, table

__all__ = ["register"]


def demo_cmd(
    seeds: int = typer.Option(3, "--seeds", help="Repeat with this many seeds (0..N-1)."),
    shots: int = typer.Option(10, "--shots", help="Training examples per new class."),
    epochs: int = typer.Option(
        60, "--epochs", help="Training epochs for both models (fewer: faster, less accurate)."
    ),
    out_dir: Path = typer.Option(Path("modelzoo-demo"), "--out", help="Where to save results."),
    cut: str = typer.Option("conv_pw_13_relu", "--cut", help="Layer to cut the base at."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Learn digits 5-9 from a few examples with a base pretrained on 0-4 (offline)."""
    from ..demo import run_demo

    console = out()
    say = (lambda msg: None) if json_out else (lambda msg: console.print(f"- {msg}"))
    result = run_demo(
        seeds=tuple(range(seeds)),
        shots=shots,
        epochs=epochs,
        out_dir=out_dir,
        cut=cut,
        on_event=say,
    )
    train_web = Path(out_dir) / "train-web"
    # Next step: the same base, cut at the same layer, trained on in the browser.
    browser_training = (
        f"modelzoo export {result.model.split('@')[0]} --cut {result.cut} --format tfjs "
        f"--browser-training --classes up,down,left,right --out {train_web}"
    )
    # Next step: the trained model for a phone (dynamic: int8 weights, no images needed).
    litert = None
    if result.saved_model:
        lite = Path(result.saved_model).with_suffix(".tflite")
        litert = (
            f"modelzoo export {result.saved_model} --format litert --quantize dynamic --out {lite}"
        )
    if json_out:
        data = {
            "model": result.model,
            "cut": result.cut,
            "shots": result.shots,
            "test_examples": result.test_examples,
            "seeds": result.seeds,
            "transfer_mean": result.transfer_mean,
            "scratch_mean": result.scratch_mean,
            "saved_model": result.saved_model,
            "web": result.extras.get("web"),
            "predictions": [
                {"true": t, "predicted": p, "confidence": c} for t, p, c in result.predictions
            ],
            "browser_training": browser_training,
            "litert": litert,
        }
        emit_json(data)
        return
    console.print()
    table(
        ["seed", "transfer learning", "from scratch"],
        [
            *[
                (s.seed, f"{s.transfer_accuracy:.1%}", f"{s.scratch_accuracy:.1%}")
                for s in result.seeds
            ],
            ("mean", f"{result.transfer_mean:.1%}", f"{result.scratch_mean:.1%}"),
        ],
        title=(
            f"Held-out accuracy on {result.test_examples} images of digits 5-9, "
            f"{result.shots} training examples per class"
        ),
    )
    if result.predictions:
        console.print(
            "predictions: " + ", ".join(f"{t} -> {p} ({c:.0%})" for t, p, c in result.predictions)
        )
    if result.saved_model:
        console.print(f"try it: modelzoo predict {result.saved_model} IMAGE.png")
    if litert:
        console.print(f"on a phone (LiteRT): {litert}", markup=False)
    if result.extras.get("web"):
        web = result.extras["web"]
        console.print(f"in the browser: modelzoo serve {web}, then open the URL it prints")
    console.print(
        f"train a head inside the browser: {browser_training} && modelzoo serve {train_web}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo_cmd)
