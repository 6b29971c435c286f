"""The ``modelzoo`` command line.

Commands are thin: parse, call the library, format the result (a table, or ``--json``).
Every :class:`~modelzoo.errors.ModelZooError` becomes one line on stderr and exit code 1;
``MODELZOO_DEBUG=1`` shows the traceback instead. TensorFlow's start-up logging is hidden
unless ``-v``/``--verbose`` or ``MODELZOO_DEBUG=1``. Package-manager commands never import
TensorFlow.

Where each command lives:

=====================  ==============================================================
module                 commands
=====================  ==============================================================
``packages``           ``search``, ``info``, ``install``, ``list``, ``remove``, ``verify``
``project``            ``add``, ``outdated``, ``pack``, ``unpack``, ``publish``
``registry``           ``registry list|add|remove|index|verify|init|sign|rotate-keys``
``cache``              ``cache path|size|prune|clear``
``models``             ``layers``, ``train``, ``predict``
``export``             ``export`` (TF.js and LiteRT), ``serve``
``viz``                ``activations``, ``filters``
``doctor``, ``demo``   ``doctor``, ``demo``
=====================  ==============================================================

Shared options (``--json``, ``--trust-remote-code``) are declared once in ``_options``; tables
and JSON output in ``_output``.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from .. import config
from ..errors import ModelZooError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Maps modelzoo's errors to one readable line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ModelZooError as exc:
            if config.debug():
                raise
            from rich.markup import escape

            from ._output import err

            err().print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            from ._output import err

            err().print("interrupted", markup=False)
            ctx.exit(130)


class _RepeatedArgument(TyperArgument):
    """A repeatable argument: its help row shows ``NAME...``, not ``<list[str]>``."""

    def display_type_rich(self, ctx):
        return None


class _Command(TyperCommand):
    """Usage lines in the usual notation: ``NAME`` required, ``[NAME]`` optional.

    (typer's own marks required arguments as ``{name}``, which reads like a template.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument and param.nargs != 1:
                param.__class__ = _RepeatedArgument

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = param.metavar or (param.name or "").upper()
            piece = name if param.required else f"[{name}]"
            pieces.append(piece if param.nargs == 1 else f"{piece}...")
        return pieces


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
    for info in (
        *app.registered_commands,
        *cache.app.registered_commands,
        *registry.app.registered_commands,
    ):
        if info.cls is TyperCommand:
            info.cls = _Command


_register()


def _print_version(value: bool) -> None:
    if value:
        from ..config import VERSION

        typer.echo(f"modelzoo {VERSION}")
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
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show TensorFlow's own start-up logging (hidden by default; MODELZOO_DEBUG=1 "
        "shows it too).",
    ),
) -> None:
    """npm install for pretrained neural networks: install, inspect, slice and train."""
    from ..backend import quiet_logs

    # Before any command can import TensorFlow: its C++ logging starts at import.
    quiet_logs(not (verbose or config.debug()))


def main() -> None:
    """Entry point of the ``modelzoo`` console script."""
    app()
