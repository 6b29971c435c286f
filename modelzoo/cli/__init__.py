"""The ``modelzoo`` command line.

Commands are thin: parse, call the library, format the result (a table, or ``--json``).
Every :class:`~modelzoo.errors.ModelZooError` becomes one line on stderr and exit code 1;
``MODELZOO_DEBUG=1`` shows the traceback instead. Package-manager commands never import
TensorFlow.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from .. import constants
from ..errors import ModelZooError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Maps modelzoo's errors to one readable line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ModelZooError as exc:
            if constants.debug():
                raise
            from rich.markup import escape

            from ._output import err

            err().print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            from ._output import err

            err().print("interrupted", markup=False)
            ctx.exit(130)


app = typer.Typer(
    cls=_Group,
    name="modelzoo",
    help="npm install for pretrained neural networks: install, inspect, slice and train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from . import cache, demo, doctor, export, models, packages, project, registry, viz

    for module in (packages, project, models, viz, export, demo, doctor):
        module.register(app)
    app.add_typer(cache.app, name="cache")
    app.add_typer(registry.app, name="registry")


_register()


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"modelzoo {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """npm install for pretrained neural networks: install, inspect, slice and train."""


def main() -> None:
    """Entry point of the ``modelzoo`` console script."""
    app()
