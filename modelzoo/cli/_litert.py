"""``modelzoo export --format litert``: the printing half (the work is modelzoo.export.litert)."""

from __future__ import annotations

from pathlib import Path

from ._output import emit_json, err, human_size, out

__all__ = ["export_litert_cmd"]


def export_litert_cmd(
    model: str,
    out_file: Path,
    *,
    quantize: str,
    data: Path | None,
    check_data: Path | None,
    cut: str | None,
    max_diff: float | None,
    min_agreement: float | None,
    force: bool,
    trust_remote_code: bool,
    json_out: bool,
) -> None:
    """Run :func:`modelzoo.export.litert.export_litert` and report what it wrote and measured."""
    from ..export.litert import export_litert

    result = export_litert(
        model,
        out_file,
        quantize=quantize,
        data=data,
        check_data=check_data,
        cut=cut,
        max_diff=max_diff,
        min_agreement=min_agreement,
        force=force,
        trust_remote_code=trust_remote_code,
    )
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
