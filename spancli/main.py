"""`span`: one command line for every job. Torch-side commands import `models` lazily,
so `span serve`, `span scan` and `span evaluate` work in a runtime-only install; in one,
`span export` and `span train` say in one line that the train extra is missing (exit 2)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import typer

from service.scan_status import exit_status_help  # a plain table: the help text needs it at import


def ray_address_optional(argv: list[str]) -> list[str]:
    """`span scan ... --ray` alone means `--ray local` (a local Ray instance). Typer cannot make an
    option's value optional, so the command line gets the word before it is parsed."""
    argv = list(argv)
    for index, token in enumerate(argv):
        if token == "--ray" and (index + 1 == len(argv) or argv[index + 1].startswith("-")):
            argv.insert(index + 1, "local")
    return argv


class _Span(typer.Typer):
    def __call__(self, *args, **kwargs):
        if not args and "args" not in kwargs:
            kwargs["args"] = ray_address_optional(sys.argv[1:])
        return super().__call__(*args, **kwargs)


app = _Span(
    help="SPAN image manipulation localization: serve, scan, evaluate, export, train, bench.",
    no_args_is_help=True,
    add_completion=False,
)

# Subcommands are added below, one function each, by the module that owns the job.

EXTRA_MISSING = 2  # exit status when a command's optional extra is not installed


def require_train_extra(command: str, modules: tuple[str, ...] = ("torch", "onnx")) -> None:
    """Stop with one line (not a traceback) when the `train` extra's packages are absent."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(f"span {command}: needs the train extra ({', '.join(missing)} not installed); "
                   "run `make install-dev`", err=True)
        raise typer.Exit(EXTRA_MISSING)


@app.command()
def export(
    checkpoint: Path = typer.Option(None, help="Training checkpoint (Span.checkpoint() dict). "
                                    "Without one: an UNTRAINED random initialisation."),
    out: Path = typer.Option(Path(__file__).resolve().parents[1] / "weights", help="Directory to write."),
    preset: str = typer.Option("slim", help="Layout for the untrained initialisation: reference, pooled, slim."),
    seed: int = typer.Option(0, help="Seed of the untrained initialisation."),
    warning: str = typer.Option(None, help="A caveat every user of these weights must see (manifest 'warning', "
                                "shown by /v1/model, the web page and span scan), e.g. a weak training budget."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write span.int8.onnx, calibrated on the first "
                              "8 BSDS500 train photos of ../shared/data (skipped with a note if absent). The service "
                              "uses it only after `span evaluate --record` shows it within the accuracy gate."),
) -> None:
    """Export ONNX + torch weights + manifest into weights/, after checking ORT parity with torch."""
    import shlex
    import sys

    require_train_extra("export")
    from models.export import calibration_photos, export_weights  # torch side: imported only here

    calibration: list[Path] = []
    if int8:
        calibration = calibration_photos()
        if not calibration:
            typer.echo("no calibration photos under ../shared/data/photos/bsds500/train: int8 variant skipped", err=True)
    command = "span export " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    manifest = export_weights(out, checkpoint=checkpoint, preset=preset, seed=seed, warning=warning,
                              command=command.strip(), int8_calibration=calibration)
    typer.echo(f"wrote {manifest}")


@app.command()
def bench(
    out: Path = typer.Option(None, "--out", "-o", help="Markdown file whose generated block to rewrite, "
                             "e.g. docs/performance.md (the prose around the block is kept)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the raw figures as JSON here."),
    sizes: list[str] = typer.Option(["512x512", "1024x768", "12mp", "50mp"], "--size",
                                    help="Input sizes (repeat): 512x512, 1024x768, 12mp, 50mp or WIDTHxHEIGHT."),
    repeats: int = typer.Option(8, min=1, help="Timed runs per engine/torch row (after one warm-up)."),
    requests: int = typer.Option(8, min=1, help="HTTP requests per concurrency level (at least one per client)."),
    concurrency: list[int] = typer.Option([1, 4, 16], "--clients", help="Concurrent HTTP clients (repeat)."),
    max_seconds: float = typer.Option(60.0, help="Stop a row's timed runs after this long (at least 3 runs)."),
    model_dir: Path = typer.Option(None, help="Weights folder to measure [default: weights/]."),
    torch_rows: bool = typer.Option(True, "--torch/--no-torch", help="Measure torch eager (needs the train extra)."),
    http: bool = typer.Option(True, "--http/--no-http", help="Measure the HTTP service end to end."),
    levers: bool = typer.Option(True, "--levers/--no-levers", help="Measure the levers (bench/levers.py)."),
) -> None:
    """Speed and memory: torch eager, the ORT engine, HTTP with 1/4/16 clients; FLOPs; levers (docs/performance.md)."""
    import shlex
    import sys

    from bench.bench import main as run_bench  # torch is imported only by the torch rows' child processes

    command = "span bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    run_bench(out=out, json_out=json_out, sizes=sizes, repeats=repeats, requests=requests,
              concurrency=concurrency, max_seconds=max_seconds, model_dir=model_dir, torch_rows=torch_rows,
              http=http, levers=levers, command=command.strip())


@app.command()
def evaluate(
    benchmark: Path = typer.Argument(..., metavar="manifest", help="Benchmark manifest CSV (id,image,mask,dataset,kind,width,height,"
                                    "tampered_fraction,license; paths relative to its folder)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSON report here."),
    threshold: float = typer.Option(None, min=0.0, max=1.0, help="Decision threshold (default: SPAN_THRESHOLD, else the model's operating point, else 0.5)."),
    relative_cut: float = typer.Option(None, min=0.0, max=1.0, help="Peak-relative cut: a pixel is also marked only at this fraction of its map's peak or above (default: SPAN_RELATIVE_CUT, else the model's, else 0: none)."),
    image_threshold: float = typer.Option(None, min=0.0, max=1.0, help="Image decision threshold for image_bacc (default: SPAN_IMAGE_THRESHOLD, else the model's, else the decision threshold)."),
    limit: int = typer.Option(None, min=1, help="Evaluate only the first N rows."),
    grid: Path = typer.Option(None, help="Write a PNG grid (photo | truth | span | ELA) of the first rows here."),
    grid_rows: int = typer.Option(8, min=1, help="Rows in the grid."),
    strict: bool = typer.Option(False, help="Stop at a bad row instead of skipping and listing it."),
    progress: bool = typer.Option(True, help="Progress bar on stderr."),
    layers: str = typer.Option(None, metavar="NAMES", help="Also score forensic layers' maps as methods on the same "
                               "rows: comma-separated among ghost, noise, jpeg, copymove, or 'all' (README "
                               "'Forensic layers'; ela is always scored, as the ELA baseline)."),
    record: str = typer.Option(None, metavar="NAME", help="Also write the headline scores into the weights' "
                               "manifest.json under scores.NAME (e.g. 'dev'; scores.NAME@int8 when the int8 "
                               "model ran, see SPAN_PRECISION), for the model card and the int8 gate."),
) -> None:
    """Evaluate the shipped model beside a constant map and ELA on a benchmark manifest (docs/evaluation.md)."""
    from service.evaluation.benchmark import EvaluationError
    from service.evaluation.report import format_summary
    from service.evaluation.run import record_scores, report_scores_key, run
    from service.settings import SettingsError

    if record is not None and limit is not None:
        raise typer.BadParameter("scores of a partial run are not recorded", param_hint="--record")
    if record is not None and "@" in record:
        raise typer.BadParameter("'@' is reserved ('NAME@int8' is written for int8 runs)", param_hint="--record")
    try:
        report = run(benchmark, out=out, threshold=threshold, relative_cut=relative_cut,
                     image_threshold=image_threshold, limit=limit, grid_path=grid, grid_rows=grid_rows,
                     strict=strict, progress=progress, layers=_chosen_layers("evaluate", layers, pixel_only=True))
        recorded = record_scores(report, record) if record else None
    except (EvaluationError, SettingsError) as error:
        typer.echo(f"span evaluate: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_summary(report, out=out, grid=grid))
    if recorded:
        typer.echo(f"recorded under scores.{report_scores_key(report, record)} in {recorded}")


def _chosen_layers(command: str, text: str | None, *, pixel_only: bool = False) -> tuple[str, ...]:
    """--layers of span scan (every forensic layer) and span evaluate (the pixel layers): names or
    'all'; an unknown name is one line on stderr and exit status 2."""
    if not text:
        return ()   # without importing the layers (OpenCV) at all
    from service.layers import PIXEL_LAYERS, choose_layers
    from service.scan_layers import SCAN_LAYERS

    try:
        if pixel_only:
            return choose_layers(text, PIXEL_LAYERS, refusal="not a pixel layer:")
        return choose_layers(text, SCAN_LAYERS)
    except ValueError as error:
        typer.echo(f"span {command}: --layers: {error}", err=True)
        raise typer.Exit(2) from None


@app.command(help="Analyse files, folders and globs: a heatmap and an overlay per image, one summary. Resumable.\n\n"
             "Outputs are named by each input's path below the scan root, the same whichever subset is "
             "scanned, and the summary of an output folder gathers every scan into it.\n\n" + exit_status_help())
def scan(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) and globs, e.g. 'case-12/**/*.jpg'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the heatmaps, overlays, summary.csv and summary.json."),
    server: str = typer.Option(None, help="Use a running `span serve` at this URL (POST /v1/scan) instead of the local model."),
    api_key: str = typer.Option(None, envvar="SPAN_API_KEY", show_default=False,
                                help="With --server: the server's API key (sent as Authorization: Bearer)."),
    batch_size: int = typer.Option(8, min=1, help="With --server: images per request (halved when the server says too large)."),
    overlay_format: str = typer.Option("jpg", help="Overlay file format: jpg (small) or png (lossless)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Analyse again even images an earlier run finished."),
    root: str = typer.Option(None, help="Name outputs by the inputs' paths below this folder [default: the one this "
                             "--out already uses, else the arguments' common folder]."),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]",
                            help="Run on a Ray cluster (needs the 'ray' extra; make install-dev installs it): --ray alone (or --ray local) "
                            "starts a local Ray instance; --ray auto or --ray ray://head:10001 joins one. PATHS may then also be URIs "
                            "(s3://bucket/case/) and --out must be a folder every node can reach."),
    actors: int = typer.Option(None, min=1, help="With --ray: ONNX Runtime actors [default: one per GPU, else "
                               "the cluster's CPUs / --threads-per-actor]."),
    threads_per_actor: int = typer.Option(None, min=1, help="With --ray: ORT threads (and CPUs reserved) per actor "
                                          "[default: 2, 1 on one-core nodes]."),
    gpus_per_actor: float = typer.Option(None, min=0.0, help="With --ray: GPUs per actor [default: 1 when the "
                                         "cluster has GPUs, else 0]."),
    layers: str = typer.Option(None, metavar="NAMES", help="Also compute forensic layers, comma-separated among "
                               "ela, ghost, noise, jpeg, copymove, metadata, c2pa, or 'all' (the model's heatmap is "
                               "always written). Each pixel layer's map goes beside the heatmap as <name>.<layer>.png; "
                               "metadata and c2pa have no map and give figures only. Every layer's figures (or why it "
                               "does not apply to the file) go into the record and summary.json, headline columns into "
                               "summary.csv. A photo done earlier without these layers is analysed again. Works with "
                               "--server (layers computed here) and --ray (in the actors)."),
) -> None:
    chosen = _chosen_layers("scan", layers)
    if overlay_format not in ("jpg", "png"):
        raise typer.BadParameter("choose jpg or png", param_hint="--overlay-format")
    if ray is not None:
        if server:
            raise typer.BadParameter("choose --ray or --server", param_hint="--ray")
        from service.scan_ray import RayOptions, ray_scan

        options = RayOptions(address=ray, actors=actors,
                             threads_per_actor=threads_per_actor, gpus_per_actor=gpus_per_actor)
        raise typer.Exit(ray_scan(paths, out, options, overlay_format=overlay_format, overwrite=overwrite, root=root,
                                  layers=chosen))
    from service.scan import scan as run_scan

    raise typer.Exit(run_scan(paths, out, server=server, api_key=api_key, batch_size=batch_size,
                              overlay_format=overlay_format, overwrite=overwrite, root=root, layers=chosen))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
) -> None:
    """Serve the REST API (settings from SPAN_* variables; see README "Configuration"). SIGTERM drains gracefully."""
    from service.server import serve as run_server
    from service.security.keys import KeyConfigError
    from service.settings import SettingsError

    try:
        run_server(host=host, port=port, log_level=log_level)
    except (KeyConfigError, SettingsError) as exc:
        typer.echo(f"span serve: {exc}", err=True)
        raise typer.Exit(2) from None


# Exit status of `span train` when --max-minutes stopped it before the end (BSD EX_TEMPFAIL):
# scripts loop `span train --resume --max-minutes 9` while it returns this.
TRAIN_UNFINISHED = 75


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False,
                                help="Training config JSON, e.g. models/configs/cpu-small.json."),
    resume: bool = typer.Option(False, "--resume", help="Continue runs/<name>/ckpt.pt where it stopped."),
    max_minutes: float = typer.Option(None, min=0.0, help="Save a checkpoint and stop after this many minutes "
                                      f"(exit status {TRAIN_UNFINISHED}); for time-limited calls such as the GPU device tool."),
    finish: bool = typer.Option(False, "--finish", help="Do not train: write final.pt of a run that --max-minutes "
                                "stopped, from its best validated weights (what `models.calibrate` and `span export` take)."),
    seed: int = typer.Option(None, "--seed", help="Another seed of the same config, run in runs/<name>-seed<N>/ "
                             "(give it again with --resume and --finish)."),
) -> None:
    """Train SPAN: stage 1 pretrains Featex, stage 2 learns localisation (docs/training.md). Needs the train extra."""
    require_train_extra("train", ("torch",))
    from models.train import TrainConfig, finish_stopped, train as run_training  # torch side: imported only here

    if finish and (resume or max_minutes is not None):
        typer.echo("span train: --finish trains nothing; it takes neither --resume nor --max-minutes", err=True)
        raise typer.Exit(2)
    try:
        settings = TrainConfig.load(config).with_seed(seed)
        if finish:
            final = finish_stopped(settings)
        else:
            final = run_training(settings, resume=resume, max_minutes=max_minutes)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        typer.echo(f"span train: {error}", err=True)
        raise typer.Exit(2) from None
    if final is None:
        typer.echo("span train: stopped before the end; continue with --resume", err=True)
        raise typer.Exit(TRAIN_UNFINISHED)
    typer.echo(f"wrote {final}")



@app.command()
def forge(
    image: Path = typer.Argument(..., help="A photo, or with --random a folder of photos."),
    mask: str = typer.Option(None, "--mask", help="The hole: a mask image of the photo's size (white = remove) or "
                             "a shape: rect:x,y,w,h | ellipse:cx,cy,rx,ry | random."),
    out: Path = typer.Option(..., "--out", help="Folder to create (must not exist, or be empty)."),
    random: int = typer.Option(None, "--random", help="Draw N random holes per photo of the folder IMAGE and write "
                               "a benchmark (manifest.csv, images/, masks/) that `span evaluate` reads."),
    seed: int = typer.Option(0, help="Seed of random holes."),
    license_note: str = typer.Option("as the source photos", "--license", help="The manifest's license column."),
) -> None:
    """Make removal forgeries with the shipped inpainting generator (weights/inpaint): the inpainted image,
    its exact truth mask and a JSON of what was done, written all at once (nothing half-written on error)."""
    from service.forge import ForgeError, forge_folder, forge_image

    try:
        if random is not None:
            if mask is not None:
                raise ForgeError("use either --mask (one photo) or --random N (a folder), not both")
            summary = forge_folder(image, random, out, seed=seed, license_note=license_note)
            typer.echo(f"wrote {summary['rows']} forgeries and {out / 'manifest.csv'}")
        else:
            if mask is None:
                raise ForgeError("give --mask MASK_OR_SHAPE (or --random N over a folder)")
            record = forge_image(image, mask, out, seed=seed)
            typer.echo(f"wrote {out / 'forged.png'} ({record['hole_pixels']} pixels replaced), "
                       f"{out / 'mask.png'}, {out / 'forge.json'}")
    except ForgeError as error:
        typer.echo(f"span forge: {error}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
