"""What every benchmark script shares: writing its JSON result and printing its summary."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["goal_lines", "finish"]


def goal_lines(goals: dict[str, bool]) -> list[str]:
    """One ``- goal: yes/NO`` line per goal."""
    return [f"- {goal}: {'yes' if ok else 'NO'}" for goal, ok in goals.items()]


def finish(result: dict, out: Path, table: str) -> int:
    """Write ``result`` as JSON to ``out``, print ``table`` and the load averages; exit 0."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table)
    machine = result["machine"]
    print(
        f"\nload average before/after: {machine['loadavg_before']} / "
        f"{machine['loadavg_after']}; written to {out}"
    )
    return 0
