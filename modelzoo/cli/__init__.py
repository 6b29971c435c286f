"""The ``modelzoo`` command line (placeholder until the CLI lands)."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``modelzoo`` console script."""
    raise SystemExit("modelzoo CLI: not built yet")
