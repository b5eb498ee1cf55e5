"""`span scan PATH... --out DIR`: analyse files, folders and globs; write a heatmap and an overlay
per image and one summary (CSV + JSON).

How a scan resumes: every image that succeeds gets a small record, `<name>.result.json`, written
*last* and atomically (after its heatmap and overlay). A later run skips an image when that
record exists, names the same input bytes (sha256) and the same model (ONNX sha256), and both
outputs are still there; it reads the score back from the record, so the summary of a resumed
scan still lists every image with its numbers. Failed images get no record and are tried again.

Outputs are named by the input's path relative to the scan root (service/scan_inputs.py), so a
file gets the same name whichever subset of the folder is scanned. summary.csv/json cover the whole
output folder: a scan merges its rows into the existing summary by that name, never dropping the
rows of files it did not touch. Exit statuses come from one table, service/scan_status.py.

The local ONNX engine is used by default; `--server URL` sends batches to a running server's
POST /v1/scan instead (halving a batch the server finds too large). Either way the same decoder
(service.decode) reads the photo for the overlay, so EXIF orientation is handled the same.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service import scan_layers
from service.decode import InputError, decode_image
from service.layer_analysis import photo_from
from service.layers import Photo, run_layers
from service.scan_backends import Backend, Finding, LocalBackend, ScanFailure, ServerBackend
from service.scan_inputs import ScanInput, ScanUsageError, _is_uri, collect_inputs
from service.scan_status import ScanExit
from service.settings import Settings
from spancore.weights import ManifestError, sha256_file

RECORD_SUFFIX = ".result.json"
RECORD_VERSION = 1
SUMMARY_FIELDS = (
    "path", "name", "status", "score", "tampered_fraction", "width", "height",
    "heatmap", "overlay", "error_code", "error_message",
)


# ----------------------------------------------------------------------------- outputs


@dataclass
class Outcome:
    """One row of the summary."""

    item: ScanInput
    status: str                    # "ok", "skipped" (done by an earlier run) or "failed"
    score: float | None = None
    tampered_fraction: float | None = None
    width: int | None = None
    height: int | None = None
    heatmap: str | None = None     # output paths, relative to the output folder
    overlay: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    layers: dict[str, Any] | None = None   # the record's layer sections (span scan --layers)

    def row(self) -> dict[str, Any]:
        return {
            "path": self.item.path, "name": self.item.key or None, "status": self.status, "score": self.score,
            "tampered_fraction": self.tampered_fraction, "width": self.width, "height": self.height,
            "heatmap": self.heatmap, "overlay": self.overlay,
            "error_code": self.error_code, "error_message": self.error_message,
            **({"layers": self.layers} if self.layers else {}),
        }


class Outputs:
    """Where each image's files go, and the record that says they are complete."""

    def __init__(self, out_dir: Path, overlay_format: str, layers: Sequence[str] = ()):
        self.out_dir = out_dir
        self.overlay_suffix = ".overlay.jpg" if overlay_format == "jpg" else ".overlay.png"
        self.layers = tuple(layers)   # span scan --layers: computed beside each heatmap

    def layer_map(self, item: ScanInput, layer: str) -> Path:
        return self.out_dir / f"{item.key}.{layer}.png"

    def heatmap(self, item: ScanInput) -> Path:
        return self.out_dir / f"{item.key}.heatmap.png"

    def overlay(self, item: ScanInput) -> Path:
        return self.out_dir / f"{item.key}{self.overlay_suffix}"

    def record(self, item: ScanInput) -> Path:
        return self.out_dir / f"{item.key}{RECORD_SUFFIX}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def finished(self, item: ScanInput, input_sha256: str, model_sha256: str | None) -> Outcome | None:
        """The outcome of an earlier run of this very image with this very model, if complete."""
        record_path = self.record(item)
        if not (record_path.is_file() and self.heatmap(item).is_file() and self.overlay(item).is_file()):
            return None
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return None   # a damaged record: analyse again
        if record.get("input_sha256") != input_sha256 or record.get("model", {}).get("sha256") != model_sha256:
            return None   # the photo or the model changed since: the old outputs are stale
        recorded = record.get("layers") if isinstance(record.get("layers"), dict) else None
        if not scan_layers.has_all(recorded, self.layers):
            return None   # layers asked for now that the earlier run did not compute
        if any(isinstance(recorded[name], dict) and recorded[name].get("map") and not self.layer_map(item, name).is_file()
               for name in self.layers):
            return None   # a layer's map has gone since
        return Outcome(
            item, "skipped", score=record.get("score"), tampered_fraction=record.get("tampered_fraction"),
            width=record.get("width"), height=record.get("height"),
            heatmap=self.relative(self.heatmap(item)), overlay=self.relative(self.overlay(item)), layers=recorded,
        )

    def write(self, item: ScanInput, finding: Finding, rgb: np.ndarray, input_sha256: str,
              model: dict[str, Any], layers: dict[str, scan_layers.LayerResult] | None = None) -> Outcome:
        from service.render import overlay, overlay_jpeg

        heatmap_path, overlay_path = self.heatmap(item), self.overlay(item)
        heatmap_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(heatmap_path, finding.heatmap_png)
        if self.overlay_suffix.endswith(".jpg"):
            _write_atomic(overlay_path, overlay_jpeg(rgb, finding.heatmap))
        else:
            buffer = io.BytesIO()
            Image.fromarray(overlay(rgb, finding.heatmap), mode="RGB").save(buffer, "PNG")
            _write_atomic(overlay_path, buffer.getvalue())
        sections, maps_written = None, set()
        if layers:
            sections = {}
            for name, result in layers.items():
                png = scan_layers.map_png(result)
                if png is not None:
                    _write_atomic(self.layer_map(item, name), png)
                    maps_written.add(name)
                sections[name] = scan_layers.section(result, self.layer_map(item, name).name if png else None)
        for name in set(scan_layers.SCAN_LAYERS) - maps_written:  # from an earlier run: no longer this photo's
            self.layer_map(item, name).unlink(missing_ok=True)
        record = {
            "record_version": RECORD_VERSION,
            "input": item.path,
            "input_sha256": input_sha256,
            "model": model,
            "score": finding.score,
            "tampered_fraction": finding.tampered_fraction,
            "threshold": finding.threshold,
            "relative_cut": finding.relative_cut,
            "image_threshold": finding.image_threshold,
            "clones": finding.clones,
            "width": finding.width,
            "height": finding.height,
            "metadata": finding.metadata,
            "heatmap": heatmap_path.name,
            "overlay": overlay_path.name,
            "created": _now(),
            **({"layers": sections} if sections is not None else {}),
        }
        _write_atomic(self.record(item), json.dumps(record, indent=2).encode())   # last: marks completion
        return Outcome(
            item, "ok", score=finding.score, tampered_fraction=finding.tampered_fraction,
            width=finding.width, height=finding.height,
            heatmap=self.relative(heatmap_path), overlay=self.relative(overlay_path), layers=sections,
        )


def _process_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside the target and rename: an interrupted scan never leaves a
    half-written file that a later run would take for finished."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        # mkstemp makes 0600; results are shared with colleagues like any file open() makes.
        os.fchmod(handle, 0o666 & ~_UMASK)
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# CSV cells that start like a formula are run by spreadsheet programs; a file name can start so.
_FORMULA_START = ("=", "+", "@", "\t", "\r")


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(r["status"] == status for r in rows) for status in ("ok", "skipped", "failed")}


def _earlier_rows(out_dir: Path, root: str) -> dict[str, dict[str, Any]]:
    """The rows of the summary already in `out_dir`, by name, whose input still exists below the
    root (a photo deleted since has no row to keep; inputs behind URIs are kept unchecked)."""
    try:
        items = json.loads((out_dir / "summary.json").read_text()).get("items", [])
    except (OSError, ValueError, AttributeError):
        return {}
    kept = {}
    for row in items if isinstance(items, list) else []:
        name = row.get("name") if isinstance(row, dict) else None
        if name and (_is_uri(root) or os.path.exists(os.path.join(root, name))):
            kept[name] = {field: row.get(field) for field in SUMMARY_FIELDS}
            if isinstance(row.get("layers"), dict):
                kept[name]["layers"] = row["layers"]
    return kept


def write_summary(out_dir: Path, rows: Sequence[dict[str, Any]], *, root: str, model: dict[str, Any] | None,
                  backend: str, started: str, interrupted: bool = False) -> tuple[Path, Path, dict[str, int]]:
    """Merge this run's rows into the output folder's summary (by name) and write it as JSON and
    CSV. Returns both paths and this run's counts; the file's `counts` cover every row in it."""
    merged = _earlier_rows(out_dir, root)
    unnamed = []
    for row in rows:
        if row.get("name"):
            merged[row["name"]] = row
        else:
            unnamed.append(row)   # an argument that matched nothing: reported by this run only
    items = [_with_layer_columns(merged[name]) for name in sorted(merged)] + unnamed
    run_counts = _counts(rows)
    summary = {
        "started": started,
        "finished": _now(),
        "interrupted": interrupted,
        "backend": backend,
        "root": root,
        "model": model,
        "counts": _counts(items),
        "this_run": run_counts,
        "items": items,
    }
    json_path, csv_path = out_dir / "summary.json", out_dir / "summary.csv"
    _write_atomic(json_path, json.dumps(summary, indent=2).encode())
    # The layers' headline columns: those of every layer any row of the folder has.
    fields = [*SUMMARY_FIELDS, *scan_layers.summary_fields({n for row in items for n in row.get("layers") or {}})]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in items:
        writer.writerow({k: _csv_safe(row.get(k)) for k in fields})
    _write_atomic(csv_path, text.getvalue().encode())
    return csv_path, json_path, run_counts


def _with_layer_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A summary row with its layers' headline figures beside the model's (the full sections after them)."""
    if not row.get("layers"):
        return row
    fields = {k: v for k, v in row.items() if k != "layers"}
    return {**fields, **scan_layers.summary_cells(row["layers"]), "layers": row["layers"]}


# ----------------------------------------------------------------------------- the scan


def _failed(item: ScanInput, code: str, message: str) -> Outcome:
    return Outcome(item, "failed", error_code=code, error_message=message)


def run_scan(
    inputs: Sequence[ScanInput],
    out_dir: Path,
    backend: Backend,
    settings: Settings,
    *,
    overlay_format: str = "jpg",
    overwrite: bool = False,
    progress: bool | None = None,
    outcomes: dict[ScanInput, Outcome] | None = None,
    layers: Sequence[str] = (),
) -> list[Outcome]:
    """Analyse every input, write its outputs, and return the summary rows (in input order).

    `outcomes` is filled as the scan goes, so a caller still has the finished rows when the scan
    is interrupted. `progress=None` shows a progress bar only on a terminal.
    """
    from tqdm import tqdm

    outputs = Outputs(out_dir, overlay_format, layers)
    model_sha = backend.model.get("sha256")
    outcomes = {} if outcomes is None else outcomes
    todo: list[ScanInput] = []
    digests: dict[ScanInput, str] = {}
    for item in inputs:
        if item.error:
            outcomes[item] = _failed(item, "not_found", item.error)
            continue
        try:
            digests[item] = sha256_file(item.local)
        except OSError as exc:
            outcomes[item] = _failed(item, "unreadable", f"cannot read {item.path}: {exc.strerror or exc}")
            continue
        done = None if overwrite else outputs.finished(item, digests[item], model_sha)
        if done is not None:
            outcomes[item] = done
        else:
            todo.append(item)

    bar = tqdm(total=len(inputs), initial=len(outcomes), unit="image", disable=None if progress is None else not progress,
               file=sys.stderr, dynamic_ncols=True)
    skipped = sum(o.status == "skipped" for o in outcomes.values())
    if skipped:
        bar.write(f"{skipped} image(s) already done by an earlier run: skipped", file=sys.stderr)

    def report(outcome: Outcome) -> None:
        outcomes[outcome.item] = outcome
        if outcome.status == "failed":
            bar.write(f"FAILED {outcome.item.path}: {outcome.error_message}", file=sys.stderr)
        bar.update(1)
        bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()), refresh=False)

    try:
        position = 0
        while position < len(todo):
            batch = todo[position:position + getattr(backend, "batch_size", 1)]   # the server may lower it
            position += len(batch)
            contents = {}
            for item in batch:
                try:
                    contents[item] = item.local.read_bytes()
                except OSError as exc:
                    report(_failed(item, "unreadable", f"cannot read {item.path}: {exc.strerror or exc}"))
            for item, result in backend.analyse(list(contents.items())):
                report(record_result(item, result, outputs, digests[item], backend.model, settings, contents[item]))
    finally:
        bar.close()
    return [outcomes[item] for item in inputs if item in outcomes]


def record_result(item: ScanInput, result: Finding | ScanFailure, outputs: Outputs, input_sha256: str,
                  model: dict[str, Any], settings: Settings, data: bytes) -> Outcome:
    """Write one analysed image's outputs and the layers asked for (or say why it failed): its summary row."""
    if isinstance(result, ScanFailure):
        return _failed(item, result.code, result.message)
    try:
        if result.rgb is not None:   # the local engine decoded it already
            photo = Photo(data=data, rgb=result.rgb, format=result.metadata.get("format", ""),
                          orientation=result.metadata.get("orientation"))
        else:   # a server's answer: the same decoder here, for the overlay and the layers
            photo = photo_from(data, decode_image(data, max_pixels=settings.max_pixels, min_side=1))
        layers = run_layers(outputs.layers, photo) if outputs.layers else None
        return outputs.write(item, result, photo.rgb, input_sha256, model, layers)
    except InputError as exc:
        return _failed(item, exc.code, exc.message)
    except OSError as exc:
        return _failed(item, "write_failed", f"cannot write outputs: {exc}")


def _stop_on_sigterm():
    """SIGTERM (a batch system or `docker stop`) ends the scan like Ctrl-C: the summary of what is
    done is still written. Returns the previous handler, or None off the main thread."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:   # not the main thread: leave signals alone
        return None


def scan(
    paths: Sequence[str],
    out_dir: Path,
    *,
    server: str | None = None,
    api_key: str | None = None,
    batch_size: int = 8,
    overlay_format: str = "jpg",
    overwrite: bool = False,
    root: str | None = None,
    timeout_s: float = 600.0,
    settings: Settings | None = None,
    progress: bool | None = None,
    layers: Sequence[str] = (),
) -> int:
    """The whole `span scan`: returns the exit status (service.scan_status.ScanExit)."""
    from service.settings import SettingsError, get_settings

    try:
        settings = settings or get_settings()
    except SettingsError as exc:
        print(f"span scan: {exc}", file=sys.stderr)
        return ScanExit.USAGE
    out_dir = Path(out_dir)
    try:
        inputs, scan_root = collect_inputs(paths, out_dir, root)
    except ScanUsageError as exc:
        print(f"span scan: {exc}", file=sys.stderr)
        return ScanExit.USAGE
    if not any(item.error is None for item in inputs):
        print("span scan: no image files found in " + ", ".join(map(repr, paths)), file=sys.stderr)
        return ScanExit.USAGE
    out_dir.mkdir(parents=True, exist_ok=True)
    started = _now()
    try:
        backend: Backend = (ServerBackend(server, batch_size=batch_size, timeout_s=timeout_s, api_key=api_key) if server
                            else LocalBackend(settings))
    except ScanFailure as exc:
        print(f"span scan: {exc.message}", file=sys.stderr)
        return ScanExit.FAILED
    except ManifestError as exc:
        print(f"span scan: cannot use the local model: {exc}", file=sys.stderr)
        return ScanExit.FAILED
    if backend.warning:
        print(f"span scan: WARNING: {backend.warning}", file=sys.stderr)
    finished: dict[ScanInput, Outcome] = {}
    interrupted = lost_server = False
    previous_handler = _stop_on_sigterm()
    try:
        run_scan(inputs, out_dir, backend, settings, overlay_format=overlay_format,
                 overwrite=overwrite, progress=progress, outcomes=finished, layers=layers)
    except ScanFailure as exc:   # the server went away mid-scan: keep what is done, say so
        print(f"span scan: {exc.message}; run again to resume", file=sys.stderr)
        interrupted, lost_server = True, True
    except KeyboardInterrupt:
        print("span scan: interrupted; run the same command again to resume", file=sys.stderr)
        interrupted = True
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        backend.close()
    # After an interruption, only the images that were dealt with.
    rows = [finished[item].row() for item in inputs if item in finished]
    return finish(out_dir, rows, root=scan_root, model=backend.model, backend=backend.description,
                  started=started, interrupted=interrupted, lost=lost_server, inputs=len(inputs))


def finish(out_dir: Path, rows: Sequence[dict[str, Any]], *, root: str, model: dict[str, Any] | None, backend: str,
           started: str, interrupted: bool, lost: bool, inputs: int) -> int:
    """Write the merged summary, print the run's counts, and return the exit status."""
    csv_path, json_path, counts = write_summary(out_dir, rows, root=root, model=model, backend=backend,
                                                started=started, interrupted=interrupted)
    print(f"{inputs} input(s): {counts['ok']} analysed, {counts['skipped']} already done, "
          f"{counts['failed']} failed. Summary: {csv_path} and {json_path}", file=sys.stderr)
    if counts["failed"] or lost:
        return ScanExit.FAILED
    return ScanExit.INTERRUPTED if interrupted else ScanExit.OK
