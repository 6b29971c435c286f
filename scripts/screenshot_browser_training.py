"""Screenshot the browser-training page (for the README), using real headless Chromium.

Exports the bundled digits base cut at ``conv_pw_13_relu`` with
``modelzoo.export.browser.export_browser_training``, serves it with ``modelzoo.export.serve``, adds
drawn digits 5-9 as examples through the page's ``window.modelzoo`` API, trains the head
in the page, draws a held-out digit on the pad and saves a PNG::

    python scripts/screenshot_browser_training.py --out docs/img/browser-training.png

Needs Chromium (``.ci/browser-deps`` installs it). The PNG is reduced to 64 colours.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _browser import DevToolsPage, chromium_path  # noqa: E402

from modelzoo.export.browser import export_browser_training
from modelzoo.export.serve import StaticServer
from modelzoo.models.datasets import split_digits

_DRIVE = """
(async () => {
  const api = window.modelzoo;
  await api.ready;
  const data = %s;
  const draw = (v, canvas) => {
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(8, 8);
    v.forEach((g, i) => { img.data.set([g, g, g, 255], 4 * i); });
    const small = document.createElement("canvas");
    small.width = small.height = 8;
    small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    return canvas;
  };
  const frame = document.createElement("canvas");
  frame.width = frame.height = 32;
  for (const [label, v] of data.train) await api.addExample(label, draw(v, frame));
  await api.train({ epochs: 20 });
  draw(data.show, document.getElementById("pad"));
  return api.predict();
})()
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("browser-training.png"))
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--shots", type=int, default=12)
    args = parser.parse_args(argv)

    chromium = chromium_path()
    if chromium is None:
        print("Chromium not found: run .ci/browser-deps or set CHROME_BIN", file=sys.stderr)
        return 1
    split = split_digits(range(5, 10))
    few = split.few_shot(args.shots, seed=0)
    grey = lambda x: np.round(np.asarray(x, float) * 255 / 16).astype(int)  # noqa: E731
    data = {
        "train": [
            [int(y), grey(x).ravel().tolist()]
            for x, y in zip(few.x_train, few.y_train, strict=True)
        ],
        "show": grey(split.x_test[len(split.x_test) // 2]).ravel().tolist(),
    }
    with tempfile.TemporaryDirectory(prefix="modelzoo-train-page-") as tmp:
        page_dir = Path(tmp) / "page"
        export_browser_training(
            "mobilenet_v1_0.25_32_digits",
            page_dir,
            cut="conv_pw_13_relu",
            classes=["five", "six", "seven", "eight", "nine"],
        )
        with StaticServer(page_dir, port=0) as server, DevToolsPage(chromium, Path(tmp)) as page:
            page.call(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": args.width,
                    "height": args.height,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            page.navigate(f"{server.url}index.html?backend=cpu")
            shown = page.evaluate(_DRIVE % json.dumps(data))
            raw = Path(tmp) / "raw.png"
            page.screenshot(raw, width=args.width, height=args.height)
        from PIL import Image

        image = Image.open(raw).convert("RGB").quantize(colors=64)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.out, optimize=True)
    print(f"held-out digit predicted as {shown['label']!r}; screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
