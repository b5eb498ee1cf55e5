"""`span`: one command line for every job. Torch-side commands import `models` lazily,
so `span serve`, `span scan` and `span evaluate` work in a runtime-only install."""
from __future__ import annotations

import typer

app = typer.Typer(
    help="SPAN image manipulation localization: serve, scan, evaluate, export, train, bench.",
    no_args_is_help=True,
    add_completion=False,
)

# Subcommands are added below, one function each, by the module that owns the job.


if __name__ == "__main__":
    app()
