"""Benchmark: ``modelzoo search`` start-up of this checkout against an earlier commit.

Run from the repository root::

    .venv/bin/python benchmarks/bench_startup.py [--baseline d7552da] [--repeat 21]

The baseline commit is checked out into a temporary ``git worktree``. Each repetition
runs ``python -m modelzoo search mobilenet`` once from each tree (``PYTHONPATH`` points
at it), in alternating order, each time with a new, empty ``MODELZOO_HOME``; so noise
from other processes falls on both sides alike. The result is the ratio of the medians
(goal: <= 1.0 within noise, i.e. the restructured package does not start slower) and the
number of ``modelzoo`` modules each imports.

Results go to ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import finish, goal_lines

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "startup.json"
#: Allowed slack for "not slower": the spread of paired medians on a busy 2-core machine.
GOAL_RATIO = 1.05


def _env(tree: Path, home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELZOO_")}
    env.update(PYTHONPATH=str(tree), MODELZOO_HOME=home, MODELZOO_OFFLINE="1")
    return env


def _run(tree: Path) -> float:
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "modelzoo", "search", "mobilenet"],
            env=_env(tree, home),
            check=True,
            capture_output=True,
            cwd=tempfile.gettempdir(),
        )
        return time.perf_counter() - start


def _modules(tree: Path) -> int:
    code = (
        "import sys\nfrom modelzoo.cli import main\n"
        "sys.argv = ['modelzoo', 'search', 'mobilenet']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sum(1 for m in sys.modules if m.split('.')[0] == 'modelzoo'), file=sys.stderr)\n"
    )
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run(
            [sys.executable, "-c", code], env=_env(tree, home), capture_output=True, text=True
        )
    lines = out.stderr.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].isdigit() else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="d7552da", help="commit to compare against")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            trees = {"this checkout": ROOT, f"baseline {args.baseline}": base}
            times: dict[str, list[float]] = {name: [] for name in trees}
            for tree in trees.values():  # warm the page cache and .pyc files
                _run(tree)
            for i in range(args.repeat):
                order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
                for name, tree in order:
                    times[name].append(_run(tree))
            modules = {name: _modules(tree) for name, tree in trees.items()}
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )
    medians = {name: statistics.median(t) for name, t in times.items()}
    now, then = medians["this checkout"], medians[f"baseline {args.baseline}"]
    ratio = now / then
    goals = {f"search start-up <= {GOAL_RATIO}x the baseline's": ratio <= GOAL_RATIO}
    result = {
        "benchmark": "startup",
        "command": "python -m modelzoo search mobilenet",
        "baseline": args.baseline,
        "repeat": args.repeat,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "min_s": {k: round(min(t), 4) for k, t in times.items()},
        "modelzoo_modules_imported": modules,
        "ratio": round(ratio, 3),
        "goals": goals,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    rows = [
        f"| {name} | {medians[name] * 1e3:.0f} ms | {min(times[name]) * 1e3:.0f} ms "
        f"| {modules[name]} |"
        for name in times
    ]
    table = "\n".join(
        [
            "| tree | median | min | modelzoo modules imported |",
            "|---|---:|---:|---:|",
            *rows,
            f"\nratio this/baseline: {ratio:.3f}",
            *goal_lines(goals),
        ]
    )
    return finish(result, RESULTS, table)


if __name__ == "__main__":
    raise SystemExit(main())
