"""`span scan SOURCE --ray [ADDRESS]`: the local scan's work, spread over a Ray cluster with Ray Data.

The driver (this process) lists the inputs and names them exactly as the local scan does
(service.scan_inputs.collect_inputs; URIs through pyarrow's filesystems), then hands Ray Data a table
of (path, location, name). Ray Data reads each file's bytes in tasks and streams them to a pool
of actors, each holding one ONNX Runtime session (`Analyser`): it decodes with the service's
decoder, runs the engine and writes the same heatmap, overlay, layer maps (--layers) and
`.result.json` record as the local scan, to an output folder every worker can reach (a shared
filesystem). Rows come back to the driver, which writes the merged summary with the local scan's
own writer.

Failures: a file that cannot be read or decoded is a failed row, never a failed job. An actor
whose process dies is restarted and its batch retried (max_restarts / max_task_retries = -1);
outputs are written atomically and the record last, so a retried image is simply written again,
and the driver keeps one row per name. Resuming is the local rule, applied in the actors: an
image whose record names the same bytes (sha256) and model (sha256) is skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.scan import Outputs, _failed, _now, _stop_on_sigterm, finish, record_result
from service.scan_backends import LocalBackend
from service.scan_inputs import (
    ScanInput, ScanUsageError, _is_hidden, _is_uri, collect_inputs, is_image_name, manifest_entries, recorded_root,
)
from service.scan_status import ScanExit
from service.settings import Settings

BLOCK_ROWS = 16       # most files per block (one read task, then one actor task) on big scans
ANALYSE_BATCH = 1     # images per actor call: the engine runs one image at a time


@dataclass(frozen=True)
class RayOptions:
    address: str = "local"              # "local": start a new Ray instance here (never join a stale one); else as ray.init takes it
    actors: int | None = None           # None: from the cluster's CPUs (or GPUs)
    threads_per_actor: int | None = None
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0


# ----------------------------------------------------------------------------- inputs


def collect_sources(sources: list[str], out_dir: Path, root: str | None) -> tuple[list[ScanInput], str]:
    """Local files, folders, globs and manifests as the local scan names them; URIs listed with
    pyarrow (`s3://bucket/case/`, `gs://...`), named by their path below the common prefix."""
    uris = [s for s in sources if _is_uri(s)]
    manifests = [s for s in sources if not _is_uri(s) and s.lower().endswith(".csv") and os.path.isfile(s)]
    for manifest in manifests:   # a manifest of URIs joins the URI arguments
        listed = manifest_entries(Path(manifest))
        if listed and all(_is_uri(e) for e in listed):
            sources = [s for s in sources if s != manifest]
            uris += listed
    if not uris:
        return collect_inputs(sources, out_dir, root)
    if len(uris) != len(sources):
        raise ScanUsageError("give either local paths or URIs, not both")
    return _collect_uris(uris, out_dir, root)


def _collect_uris(uris: list[str], out_dir: Path, root: str | None) -> tuple[list[ScanInput], str]:
    import pyarrow.fs as pafs

    found: dict[str, str] = {}   # uri -> base uri
    unmatched = []
    for uri in uris:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        scheme = uri[: uri.index("://") + 3]
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            base = path.rstrip("/")
            for entry in filesystem.get_file_info(pafs.FileSelector(base, recursive=True)):
                inside = Path(entry.path[len(base) + 1:])
                if entry.type == pafs.FileType.File and is_image_name(entry.path) and not _is_hidden(inside, Path()):
                    found.setdefault(scheme + entry.path, scheme + base)
        elif info.type == pafs.FileType.File:
            found.setdefault(scheme + path, scheme + path.rsplit("/", 1)[0])
        else:
            unmatched.append(uri)
    scan_root = root or recorded_root(out_dir) or _common_prefix(list(found.values()))
    inputs = sorted((ScanInput(u, _name_below(u, scan_root)) for u in found), key=lambda i: i.key)
    return inputs + [ScanInput(u, "", error=f"no image file matches {u!r}") for u in unmatched], scan_root


def _common_prefix(bases: list[str]) -> str:
    if not bases:
        return ""
    parts = [b.rstrip("/").split("/") for b in bases]
    common = []
    for column in zip(*parts):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    return "/".join(common)


def _name_below(uri: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise ScanUsageError(f"{uri} lies outside the scan root {root}; scan it into another --out, or give --root")
    return uri[len(prefix):]


def _location(item: ScanInput) -> str:
    """Where a worker reads the input: an absolute path (workers have their own working folder) or the URI."""
    return item.path if _is_uri(item.path) else os.path.abspath(item.path)


# ----------------------------------------------------------------------------- Ray Data stages


def read_files(batch: dict[str, Any]) -> dict[str, list]:
    """Ray Data task: each file's bytes, or why they could not be read (a row, not a failed task)."""
    contents, errors = [], []
    for location in batch["location"]:
        try:
            if _is_uri(location):
                # Only for URIs: pyarrow.fs loads the cloud SDKs, whose abseil has been seen to abort
                # a Ray worker process (mutex "UnlockSlow is confused") on this machine.
                import pyarrow.fs as pafs

                filesystem, path = pafs.FileSystem.from_uri(location)
                with filesystem.open_input_stream(path) as stream:
                    data = stream.read()
            else:
                data = Path(location).read_bytes()
            contents.append(data)
            errors.append("")
        except (OSError, ValueError) as exc:
            contents.append(b"")
            errors.append(f"cannot read {location}: {getattr(exc, 'strerror', None) or exc}")
    return {"path": list(batch["path"]), "name": list(batch["name"]), "data": contents, "read_error": errors}


class Analyser:
    """Ray Data actor: one ONNX Runtime session, the local scan's analysis and output writing."""

    def __init__(self, settings: Settings, model_sha256: str, out_dir: str, overlay_format: str, overwrite: bool,
                 started: str, layers: tuple[str, ...] = ()):
        self.settings = settings
        self.started = started
        self.backend = LocalBackend(settings)
        if self.backend.model.get("sha256") != model_sha256:   # every node must run the driver's model
            raise RuntimeError(f"this worker's model {settings.model_dir} has sha256 {self.backend.model.get('sha256')}, "
                               f"the driver's has {model_sha256}: install the same weights on every node")
        self.outputs = Outputs(Path(out_dir), overlay_format, layers)   # span scan --layers: computed here too
        self.overwrite = overwrite

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [self.one(ScanInput(str(path), str(name)), bytes(data), str(error))
                for path, name, data, error in zip(batch["path"], batch["name"], batch["data"], batch["read_error"])]
        return {"row": [json.dumps(row) for row in rows]}

    def one(self, item: ScanInput, data: bytes, read_error: str) -> dict[str, Any]:
        if read_error:
            return _failed(item, "unreadable", read_error).row()
        digest = hashlib.sha256(data).hexdigest()
        done = None if self.overwrite else self.outputs.finished(item, digest, self.backend.model.get("sha256"))
        if done is not None:
            if self._written_by_this_scan(item):   # by an actor killed after writing it: this run's work
                done.status = "ok"
            return done.row()
        [(_, result)] = self.backend.analyse([(item, data)])
        return record_result(item, result, self.outputs, digest, self.backend.model, self.settings, data).row()

    def _written_by_this_scan(self, item: ScanInput) -> bool:
        try:
            return json.loads(self.outputs.record(item).read_text()).get("created", "") >= self.started
        except (OSError, ValueError):
            return False


# ----------------------------------------------------------------------------- the driver


def plan_pool(resources: dict[str, float], nodes: list[dict[str, float]], options: RayOptions) -> tuple[int, int, float]:
    """(actors, ORT threads per actor, GPUs per actor) from the options, else from the cluster:
    one actor per GPU when there are GPUs; else actors of 2 threads (1 on one-core nodes), as
    many as the CPUs hold (docs/scaling.md has the measurements behind this)."""
    gpus = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
    smallest_node = min((n.get("CPU", 0) for n in nodes if n.get("CPU", 0) > 0), default=1)
    threads = options.threads_per_actor or max(1, int(min(2, smallest_node)))
    if options.actors:
        actors = options.actors
    elif gpus > 0:
        actors = max(1, int(resources.get("GPU", 0) // gpus))
    else:
        actors = max(1, int(resources.get("CPU", 1) // threads))
    return actors, threads, gpus


def _unreachable(address: str, timeout_s: float = 10.0) -> str | None:
    """Why a HOST:PORT or ray://HOST:PORT address cannot be reached, or None. ray.init itself
    keeps retrying an unreachable head for minutes."""
    import socket

    if address in ("local", "auto"):
        return None
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return None   # some other form Ray understands: let ray.init judge it
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def ray_scan(sources: list[str], out_dir: Path, options: RayOptions, *, overlay_format: str = "jpg",
             overwrite: bool = False, root: str | None = None, settings: Settings | None = None,
             progress: bool | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
             layers: tuple[str, ...] = ()) -> int:
    """The whole `span scan --ray`: same outputs, summary and exit statuses as `service.scan.scan`.
    `on_row` sees each summary row as it arrives (bench/ray_scan.py times them)."""
    from tqdm import tqdm

    from service.engine import running_manifest
    from spancore.weights import ManifestError
    from service.settings import get_settings

    try:
        import ray
    except ImportError:
        print("span scan: --ray needs Ray: pip install 'span-forensics[ray]'", file=sys.stderr)
        return ScanExit.USAGE
    settings = settings or get_settings()
    out_dir = Path(out_dir)
    try:
        inputs, scan_root = collect_sources(list(sources), out_dir, root)
    except ScanUsageError as exc:
        print(f"span scan: {exc}", file=sys.stderr)
        return ScanExit.USAGE
    todo = [item for item in inputs if item.error is None]
    if not todo:
        print("span scan: no image files found in " + ", ".join(map(repr, sources)), file=sys.stderr)
        return ScanExit.USAGE
    out_dir.mkdir(parents=True, exist_ok=True)
    started = _now()

    unreachable = _unreachable(options.address)
    if unreachable:
        print(f"span scan: cannot reach the Ray cluster at {options.address}: {unreachable}", file=sys.stderr)
        return ScanExit.FAILED
    try:
        ray.init(address=options.address, logging_level="WARNING", log_to_driver=True, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"span scan: cannot reach the Ray cluster at {options.address}: {exc}", file=sys.stderr)
        return ScanExit.FAILED
    previous_handler = _stop_on_sigterm()   # after ray.init, which installs its own: SIGTERM = Ctrl-C
    rows: dict[str, dict[str, Any]] = {}
    unnamed = [_failed(item, "not_found", item.error).row() for item in inputs if item.error]
    interrupted = lost = False
    model: dict[str, Any] | None = None
    where = "local instance" if options.address == "local" else options.address
    description = f"Ray ({where})"
    try:
        actors, threads, gpus = plan_pool(ray.cluster_resources(), [n["Resources"] for n in ray.nodes() if n["Alive"]],
                                          options)
        # CPU actors never probe for CUDA; GPU actors keep the configured providers.
        actor_settings = settings.model_copy(update={"intra_op_threads": threads, **(
            {} if gpus > 0 else {"providers": ["CPUExecutionProvider"]})})
        try:
            manifest = running_manifest(actor_settings)
        except ManifestError as exc:
            print(f"span scan: cannot use the local model: {exc}", file=sys.stderr)
            return ScanExit.FAILED
        model = manifest.model_info()
        if manifest.warning:
            print(f"span scan: WARNING: {manifest.warning}", file=sys.stderr)
        description = f"Ray ({where}, {actors} actor(s) x {threads} thread(s)" + (
            f", {gpus:g} GPU each)" if gpus else ")")
        print(f"span scan: {len(todo)} image(s) on {description}", file=sys.stderr)

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False   # one progress bar, ours, as in the local scan
        # Blocks are the unit of work an actor takes: small enough that every actor gets some and a
        # killed one loses little, few enough that Ray's per-block overhead stays small.
        blocks = min(len(todo), max(actors * 8, math.ceil(len(todo) / BLOCK_ROWS)))
        dataset = ray.data.from_items([{"path": i.path, "location": _location(i), "name": i.key} for i in todo],
                                      override_num_blocks=blocks)
        dataset = dataset.map_batches(read_files, batch_size=None, num_cpus=0)   # I/O: no core of its own
        # Ray Data's actor pools restart a dead actor and retry its batch (max_restarts and
        # max_task_retries default to -1 there); tests/e2e/test_scan_ray.py kills one to check.
        dataset = dataset.map_batches(
            Analyser, batch_size=ANALYSE_BATCH, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=threads, num_gpus=gpus,
            fn_constructor_kwargs={"settings": actor_settings, "model_sha256": model["sha256"],
                                   "out_dir": str(out_dir.absolute()), "overlay_format": overlay_format,
                                   "overwrite": overwrite, "started": started, "layers": tuple(layers)},
        )
        with tqdm(total=len(todo), unit="image", file=sys.stderr, dynamic_ncols=True,
                  disable=None if progress is None else not progress) as bar:
            for record in dataset.iter_rows():
                row = json.loads(record["row"])
                if row["name"] not in rows:
                    bar.update(1)
                    if row["status"] == "failed":
                        bar.write(f"FAILED {row['path']}: {row['error_message']}", file=sys.stderr)
                rows[row["name"]] = row
                if on_row is not None:
                    on_row(row)
    except KeyboardInterrupt:
        print("span scan: interrupted; run the same command again to resume", file=sys.stderr)
        interrupted = True
    except ray.exceptions.RayError as exc:
        print(f"span scan: the Ray job failed: {exc}; run again to resume", file=sys.stderr)
        interrupted = lost = True
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        ray.shutdown()
    if not interrupted:   # a write cut short by a killed actor leaves its temporary file; the retry wrote the real one
        for leftover in out_dir.rglob(".*.part"):
            leftover.unlink(missing_ok=True)
    order = {item.key: index for index, item in enumerate(todo)}
    done = sorted(rows.values(), key=lambda r: order.get(r["name"], len(order)))
    return finish(out_dir, done + unnamed, root=scan_root, model=model, backend=description, started=started,
                  interrupted=interrupted, lost=lost, inputs=len(inputs))
