"""The `bptt` command line. This package is the only part of bptt that imports click.

Results go to stdout (with `--json`, one JSON object), progress and messages to stderr, and a
progress bar is drawn only when stderr is a terminal, so every command pipes.
"""

import sys
from typing import TextIO, cast

import click

from .. import __version__


class _Discard:
    """Where a progress bar goes when nobody is watching it."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Refused(click.ClickException):
    """Input the command cannot use (a run folder that holds a run or is in use, a spec, a scheduler):
    "Error: ..." on stderr and exit code 2, like a usage error but without the usage text."""

    exit_code = 2


def progress_stream(quiet: bool = False) -> TextIO:
    """stderr when it is a terminal and progress is wanted, else a sink: no bar in a pipe or a log."""
    # click's progress bar only writes to its file, flushes it and asks isatty(), all of which _Discard answers
    return sys.stderr if not quiet and sys.stderr.isatty() else cast(TextIO, _Discard())


@click.group(name="bptt", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptt")
def cli() -> None:
    """Backpropagation through time for recurrent networks: train, inspect and check gradients."""


from . import gradcheck, plot, sweep, train  # noqa: E402,F401  (each registers its commands on `cli`)

import signal  # noqa: E402

from .. import _exit_on_interrupt  # noqa: E402

if signal.getsignal(signal.SIGINT) is _exit_on_interrupt:  # loaded: Ctrl-C raises KeyboardInterrupt again
    signal.signal(signal.SIGINT, signal.default_int_handler)
