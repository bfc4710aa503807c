"""The `bptt` command line. This package is the only part of bptt that imports click."""

import click

from .. import __version__


@click.group(name="bptt", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptt")
def cli():
    """Backpropagation through time for recurrent networks: train, inspect and check gradients."""


from . import gradcheck, plot, sweep, train  # noqa: E402,F401  (each registers its commands on `cli`)
