"""Command-line interface: one entry point, one sub-command per job.

The CLI only parses arguments and calls the library. Every user-facing failure is raised as
:class:`deepexposure.image.io.PhotoError` (or another ``DeepExposureError``) and reported as one line on
stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

# Before NumPy is imported (the sub-commands import it): NumPy asks the kernel to back its large arrays with
# transparent huge pages, and where the kernel compacts memory to find them on first touch (THP defrag "madvise", a
# common default) a fresh process spends more system time than it saves: a 12 MP render 5-15% slower (issue 23).
# The command line's processes (and their workers, which inherit it) opt out unless the user set it.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import click  # noqa: E402

from deepexposure import __version__  # noqa: E402
from deepexposure.errors import DeepExposureError  # noqa: E402
from deepexposure.logs import route_warnings  # noqa: E402

#: Exit code for bad input / user errors (same as Click's usage errors).
EXIT_USER_ERROR = 2


#: Sub-command name -> the module of this package that defines it (in its ``COMMANDS``). A module is imported only
#: when one of its commands runs (or for --help), so ``enhance`` does not pay for the training code's imports.
SUBCOMMANDS = {"enhance": "enhance", "render": "render", "segment": "render", "train": "train",
               "export-onnx": "export", "evaluate": "evaluate", "make-pairs": "data", "edit": "edit",
               "fit-look": "look", "serve": "serve"}


#: Sub-commands that read and write photos (the fast exit of :func:`run`, one BLAS thread).
PHOTO_COMMANDS = ("enhance", "render", "segment")


class _Group(click.Group):
    """Click group that loads sub-commands lazily (:data:`SUBCOMMANDS`) and turns every :class:`DeepExposureError`
    (and an OSError about a named file, e.g. a name too long) into one line on stderr and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name not in SUBCOMMANDS:
            return None
        module = importlib.import_module(f"deepexposure.apps.cli.{SUBCOMMANDS[cmd_name]}")
        return next(c for c in module.COMMANDS if c.name == cmd_name)

    def invoke(self, ctx: click.Context):  # noqa: D102 - behaviour described in the class docstring
        try:
            return super().invoke(ctx)
        except DeepExposureError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except MemoryError:
            click.echo("error: out of memory (try fewer --jobs or a smaller photo)", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except OSError as exc:  # a path the system refuses (name too long, permission, read-only) that no check
            if exc.filename is None or exc.strerror is None:  # caught first: one line naming it; others are bugs
                raise
            click.echo(f"error: {exc.filename}: {exc.strerror}", err=True)
            ctx.exit(EXIT_USER_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="deepexposure")
def main() -> None:
    """deepexposure: learn to expose photos, and expose them.

    \b
    Examples:
      deepexposure enhance photo.jpg -o out/
      deepexposure render photo.jpg --ev -1 --ev 1 --ev 2 -o out/
      deepexposure segment photo.jpg -o overlay.png
      deepexposure edit photo.jpg
      deepexposure fit-look my_edits/ -o mylook.json
      deepexposure serve --port 8000
    """
    route_warnings()  # warnings (ours, numpy's) as one "warning: ..." line each


def run() -> None:
    """The console entry point (``deepexposure``, ``python -m deepexposure``): :func:`main`, then, when a photo
    command (enhance, render, segment) has written its photos and printed its summary, the process ends at once
    (``os._exit`` after flushing the standard streams and the logs), without the interpreter's teardown: freeing
    every module's objects one by one costs a fresh process about 50 ms at 12 MP (issue 23), for nothing. Every
    other command, and :func:`main` called from Python (tests, ``CliRunner``), end normally.

    For the photo commands, NumPy's BLAS is also kept to one thread (``OPENBLAS_NUM_THREADS=1`` unless the user set
    it; before NumPy is imported): OpenBLAS otherwise starts a thread per core at import, which costs a fresh 12 MP
    ``render`` 0.17 s of CPU (median of 12 interleaved runs, 2.18 -> 2.01 s) for no BLAS call worth threads (their
    matrices are tiny; ``-j`` runs a process per core)."""
    if len(sys.argv) > 1 and sys.argv[1] in PHOTO_COMMANDS and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        main()
    except SystemExit as exc:
        from deepexposure.apps.cli.common import FINISHED

        if not FINISHED["photos"]:
            raise
        code = exc.code
        if code is not None and not isinstance(code, int):  # what SystemExit does with a message: print it, exit 1
            print(code, file=sys.stderr)
            code = 1
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    run()
