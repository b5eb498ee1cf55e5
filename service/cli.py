"""`span`: one command line for every job. Torch-side commands import `models` lazily,
so `span serve`, `span scan` and `span evaluate` work in a runtime-only install."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="SPAN image manipulation localization: serve, scan, evaluate, export, train, bench.",
    no_args_is_help=True,
    add_completion=False,
)

# Subcommands are added below, one function each, by the module that owns the job.


@app.command()
def export(
    checkpoint: Path = typer.Option(None, help="Training checkpoint (Span.checkpoint() dict). "
                                    "Without one: an UNTRAINED random initialisation."),
    out: Path = typer.Option(Path(__file__).resolve().parents[1] / "weights", help="Directory to write."),
    preset: str = typer.Option("pooled", help="Layout for the untrained initialisation: reference, pooled, slim."),
    seed: int = typer.Option(0, help="Seed of the untrained initialisation."),
) -> None:
    """Export ONNX + torch weights + manifest into weights/, after checking ORT parity with torch."""
    import shlex
    import sys

    from models.export import export_weights  # torch side: imported only here

    command = "span export " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    manifest = export_weights(out, checkpoint=checkpoint, preset=preset, seed=seed, command=command.strip())
    typer.echo(f"wrote {manifest}")


if __name__ == "__main__":
    app()
