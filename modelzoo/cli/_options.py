"""Options shared by many commands, defined once so their names and help stay the same."""

from __future__ import annotations

import typer

__all__ = ["JSON_HELP", "JSON_OPTION", "TRUST_REMOTE_CODE_OPTION"]

JSON_HELP = "Print the result as JSON on stdout (for scripts) instead of text."

JSON_OPTION = typer.Option(False, "--json", help=JSON_HELP)

TRUST_REMOTE_CODE_OPTION = typer.Option(
    False,
    "--trust-remote-code",
    help="Load without the safety scan, running any code the model file carries (Lambda "
    "layers, custom objects). Only for files you trust.",
)
