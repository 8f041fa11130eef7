"""The ``facebench`` command: a click group whose subcommands live one module each.

Command modules register themselves on the groups defined here (``data``, ``eval``,
``stats``) or on ``main``; ``_COMMAND_MODULES`` lists them. Each module imports its heavy
dependencies (torch, matplotlib) inside the command body so ``facebench --help`` and the
evaluators stay fast.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from facebench import __version__
from facebench.errors import FacebenchError, describe_os_error, worker_error_message


class OneLineError(click.ClickException):
    """What every user error becomes: ``error: ...`` on one stderr line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # type: ignore[override]
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line(text: str, limit: int = 2000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


def _usage_message(exc: click.UsageError) -> str:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _one_line(exc.format_message()) + hint


class FacebenchGroup(click.Group):
    """A click group that turns user errors into a one-line message and exit code 2.

    User errors are :class:`FacebenchError`, OS errors (a path that is a folder, missing,
    unwritable: the message names the path) and click usage errors. Tracebacks are left
    for programming errors.
    """

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise OneLineError(_usage_message(exc)) from None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except OneLineError:
            raise
        except click.UsageError as exc:
            raise OneLineError(_usage_message(exc)) from None
        except FacebenchError as exc:
            raise OneLineError(_one_line(worker_error_message(exc) or str(exc))) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click quiets a closed pipe itself
            raise OneLineError(_one_line(describe_os_error(exc))) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            message = worker_error_message(exc)  # a data-loading worker's error, re-raised
            if message is None:
                raise
            raise OneLineError(_one_line(message)) from None


@click.group(cls=FacebenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facebench")
def main() -> None:
    """facebench: face detection evaluation, training and analysis.

    \b
    Evaluate:  facebench eval wider PRED --gt GT_DIR
               facebench eval fddb DETS --folds DIR --image-sizes CSV
    Data:      facebench data synth OUT --images 200
    """


@main.group(name="data", cls=FacebenchGroup)
def data_group() -> None:
    """Data sets: the synthetic default data and format tools."""


@main.group(name="eval", cls=FacebenchGroup)
def eval_group() -> None:
    """Evaluate detections with the official WIDER FACE and FDDB protocols."""


@main.group(name="export", cls=FacebenchGroup)
def export_group() -> None:
    """Export trained models to other runtimes."""


@main.group(name="stats", cls=FacebenchGroup)
def stats_group() -> None:
    """Statistics about training data under the detector designs."""


# Modules that define commands; each attaches itself to one of the groups above.
_COMMAND_MODULES: list[str] = [
    "cli.data_synth",
    "cli.train",
    "cli.detect",
    "cli.calibrate",
    "cli.eval_wider",
    "cli.eval_fddb",
    "cli.stats_anchors",
    "cli.export_onnx",
    "cli.bench",
    "cli.quickstart",
    "cli.experiment",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(_name)


def _drop_empty_groups() -> None:
    # A group appears only once a command in it works (no stubs in --help).
    for name in [n for n, cmd in main.commands.items() if isinstance(cmd, click.Group)]:
        if not main.commands[name].commands:  # type: ignore[attr-defined]
            del main.commands[name]


_drop_empty_groups()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
