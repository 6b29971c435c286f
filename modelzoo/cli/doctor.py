"""``modelzoo doctor``: versions, devices, the strategy ``auto`` would pick, cache, registries."""

from __future__ import annotations

import platform
import time

import typer

from ._options import JSON_OPTION
from ._output import emit_json, human_size, out

__all__ = ["register"]


def _registries() -> list[dict]:
    from ..hub.registry import list_registries

    rows = []
    for reg in list_registries():
        t0 = time.perf_counter()
        try:
            n = len(reg.load_index().latest)
            status = f"ok ({n} models)"
        except Exception as exc:  # report, never crash the doctor
            status = f"error: {exc}"
        rows.append(
            {
                "name": reg.name,
                "kind": reg.kind,
                "location": reg.location,
                "status": status,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    return rows


def doctor_cmd(
    json_out: bool = JSON_OPTION,
    no_tf: bool = typer.Option(False, "--no-tf", help="Skip TensorFlow (devices, strategy)."),
) -> None:
    """Check this installation: versions, devices, strategy, cache, registries, offline mode."""
    from .. import config
    from ..hub.cache import Cache

    cache = Cache()
    report: dict = {
        "modelzoo": config.VERSION,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "offline": config.offline(),
        "require_hashes": config.require_hashes(),
        "mirror": config.mirror(),
        "cache": {"path": str(cache.root), "bytes": cache.size()["total"]},
        "registries": _registries(),
    }
    if not no_tf:
        from ..distribute.strategies import describe_devices

        report["devices"] = describe_devices()
    if json_out:
        emit_json(report)
        return
    console = out()
    console.print(f"modelzoo {report['modelzoo']} on Python {report['python']}", markup=False)
    console.print(f"platform      {report['platform']}", markup=False)
    console.print(
        f"cache         {report['cache']['path']} ({human_size(report['cache']['bytes'])})",
        markup=False,
    )
    console.print(
        f"offline       {'yes' if report['offline'] else 'no'}; "
        f"hash-checking mode {'on' if report['require_hashes'] else 'off'}; "
        f"mirror {report['mirror'] or 'none'}",
        markup=False,
    )
    for r in report["registries"]:
        console.print(
            f"registry      {r['name']} ({r['kind']}) {r['location']}: {r['status']}", markup=False
        )
    devices = report.get("devices")
    if devices:
        console.print(
            f"tensorflow    {devices['tensorflow']}, tf_keras {devices['tf_keras']}", markup=False
        )
        for kind, names in devices["physical"].items():
            logical = devices["logical"].get(kind, [])
            split = f" (as {len(logical)} logical devices)" if len(logical) > len(names) else ""
            console.print(f"devices       {kind}: {', '.join(names)}{split}", markup=False)
        if devices.get("cpu_devices_env"):
            console.print(
                f"cpu split     MODELZOO_CPU_DEVICES={devices['cpu_devices_env']} "
                "(testing aid: 'mirrored' over CPU devices)",
                markup=False,
            )
        tf_config = devices.get("tf_config")
        if tf_config:
            text = tf_config["error"] or (
                f"this is {tf_config['task']} of {tf_config['workers']} workers"
            )
            console.print(f"TF_CONFIG     {text}", markup=False)
        if devices.get("tpu_name"):
            console.print(f"TPU_NAME      {devices['tpu_name']}", markup=False)
        auto = devices.get("auto", {})
        if "error" in auto:
            console.print(f"strategy      auto would fail: {auto['error']}", markup=False)
        else:
            on = ", ".join(auto.get("devices") or [])
            console.print(
                f"strategy      auto -> {auto.get('kind')}{f' on {on}' if on else ''}: "
                f"{auto.get('reason')}",
                markup=False,
            )


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor")(doctor_cmd)
