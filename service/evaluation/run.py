"""`span evaluate BENCHMARK`: score exactly what ships on a benchmark CSV, beside trivial baselines.

The model is called through the same functions as the service (decode, engine.predict,
service.analysis.served_prediction: the image score, and the clones folded in where
SPAN_CLONES is on), so the numbers are the numbers a user gets. Every metric is computed on
the same rows for three methods: the shipped model, a constant map and error-level
analysis (ELA), so each number has its floor next to it. Conventions are in
docs/evaluation.md; the short version:

- pixel metrics: per image, over rows whose mask holds both classes, then averaged;
  the map is scored as it is, and the better-of-map-or-inverse convention that papers
  use is reported beside it under the same keys suffixed `_inv`;
- image metrics: over all rows, a row is positive when its mask has a white pixel;
- an undefined number is null, with the reason under `notes`; the JSON never holds NaN.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.evaluation.baselines import (
    CONSTANT_LEVEL, ELA_BOX_RADIUS, ELA_QUALITY, Heatmap, Predict, Scored, constant_map, ela_map,
)
from service.evaluation.benchmark import (
    BenchmarkRow, EvaluationError, RowError, mask_problem, read_benchmark, read_mask,
)
from service.evaluation.layers import layer_methods
from service.evaluation.metrics import ImageResult, pixel_metrics
from service.evaluation.report import Grid, build_report, score_summary, write_report
from spancore.scoring import image_score
from spancore.weights import ManifestError, WeightsManifest, scores_key


def evaluate_rows(
    rows: Sequence[BenchmarkRow],
    *,
    load_image: Callable[[Path], np.ndarray],
    methods: Mapping[str, Predict],
    image_score: Callable[[Heatmap], float],
    threshold: float,
    relative_cut: float = 0.0,
    grid: Grid | None = None,
    strict: bool = False,
    progress: bool = True,
) -> tuple[list[ImageResult], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every method over every row. Returns (results, skipped rows, warnings).

    A bad row (missing file, undecodable image, mask of another size, a method failing
    on it) is skipped and listed with its reason, or raised as RowError when `strict`.
    """
    from tqdm import tqdm

    results: list[ImageResult] = []
    skipped: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for row in tqdm(rows, desc="evaluate", unit="image", disable=not progress, file=sys.stderr):
        try:
            if not row.image.is_file():
                raise RowError(f"image file not found: {row.image}")
            rgb = load_image(row.image)
            height, width = rgb.shape[:2]
            truth = read_mask(row.mask, (width, height)) if row.mask is not None else None
            problem = mask_problem(truth)
            result = ImageResult(row=row, label=truth is not None and bool(truth.any()), pixel_excluded=problem)
            heatmaps = {}
            for name, predict in methods.items():
                started = time.perf_counter()
                predicted = predict(rgb)
                result.seconds[name] = time.perf_counter() - started
                heatmap, own_score = predicted if isinstance(predicted, Scored) else (predicted, None)
                heatmap = np.asarray(heatmap, dtype=np.float32)
                if heatmap.shape != (height, width):
                    raise RowError(f"{name} returned a {heatmap.shape} map for a {(height, width)} image")
                if not np.isfinite(heatmap).all():
                    raise RowError(f"{name} returned a map with NaN or infinite values")
                heatmaps[name] = heatmap
                result.scores[name] = float(image_score(heatmap) if own_score is None else own_score)
                if problem is None:
                    result.pixel[name] = pixel_metrics(heatmap, truth, threshold, relative_cut)
        except Exception as error:  # noqa: BLE001 - a failure on one row skips that row, with its reason
            if strict:
                raise RowError(f"row {row.id!r} (line {row.line}): {error}") from error
            skipped.append({"id": row.id, "line": row.line, "reason": str(error) or type(error).__name__})
            continue
        expected = (row.fields.get("width"), row.fields.get("height"))
        if expected != (str(width), str(height)):
            warnings.append({"id": row.id, "line": row.line,
                             "warning": f"manifest says {expected[0]}x{expected[1]}, image decodes to {width}x{height}"})
        if problem is not None and truth is not None:
            warnings.append({"id": row.id, "line": row.line, "warning": problem})
        if grid is not None and grid.wants_more():
            label = f"{row.id}  [{row.kind}]" + (f"  span score {result.scores['span']:.3f}" if "span" in result.scores else "")
            grid.add(label, rgb, truth, heatmaps)
        results.append(result)
    return results, skipped, warnings


def run(
    benchmark: str | Path,
    *,
    out: Path | None = None,
    threshold: float | None = None,
    relative_cut: float | None = None,
    image_threshold: float | None = None,
    limit: int | None = None,
    grid_path: Path | None = None,
    grid_rows: int = 8,
    strict: bool = False,
    progress: bool = True,
    settings: Any = None,
    layers: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate the model in `settings.model_dir` and the baselines on a benchmark CSV; return the report.
    layers: forensic layers (service/layers/) scored as further methods on the same rows."""
    from service.decode import InputError, decode_image
    from service.engine import Engine, EngineError
    from service.settings import get_settings

    settings = settings or get_settings()
    benchmark = Path(benchmark)
    rows = read_benchmark(benchmark)
    selected = rows[:limit] if limit else rows

    def load_image(path: Path) -> np.ndarray:
        try:
            return decode_image(path.read_bytes(), max_pixels=settings.max_pixels, min_side=settings.min_side).rgb
        except InputError as error:
            raise RowError(f"{error.message}: {path}") from error

    extra_methods = layer_methods(layers)
    started = time.perf_counter()

    def served(rgb: np.ndarray) -> Scored:
        from service.analysis import served_prediction
        heatmap, score, _ = served_prediction(rgb, engine.predict(rgb), settings.clones)
        return Scored(heatmap, score)

    try:
        engine = Engine.from_settings(settings)
    except (ManifestError, EngineError) as error:
        raise EvaluationError(f"cannot load the model from {settings.model_dir}: {error}") from error
    # the option, else SPAN_THRESHOLD, else the model's own operating point (as the service decides)
    threshold = engine.manifest.decision_threshold(settings.threshold if threshold is None else threshold)
    relative_cut = engine.manifest.decision_relative_cut(settings.relative_cut if relative_cut is None else relative_cut)
    # the image decision's (image_bacc): the option, else the engine's (SPAN_IMAGE_THRESHOLD, the
    # model's, else the pixel threshold in use)
    image_threshold = engine.manifest.decision_image_threshold(
        settings.image_threshold if image_threshold is None else image_threshold, threshold)
    grid = Grid(rows=grid_rows) if grid_path is not None else None
    try:
        results, skipped, warnings = evaluate_rows(
            selected, load_image=load_image, image_score=image_score, threshold=threshold, relative_cut=relative_cut,
            methods={"span": served, "constant": constant_map, "ela": ela_map, **extra_methods},
            grid=grid, strict=strict, progress=progress,
        )
    finally:
        engine.close()
    if not results:
        raise RowError(f"no row of {benchmark} could be evaluated ({len(skipped)} skipped); first reason: "
                       f"{skipped[0]['reason'] if skipped else 'none'}")
    report = build_report(
        results, benchmark=benchmark, model=_model_description(engine, settings), skipped=skipped,
        warnings=warnings, image_threshold=image_threshold, n_rows=len(selected), seconds=time.perf_counter() - started,
        settings={
            "threshold": threshold, "relative_cut": relative_cut, "image_threshold": image_threshold,
            "limit": limit, "strict": strict, "manifest_rows": len(rows),
            "ela": {"jpeg_quality": ELA_QUALITY, "box_radius": ELA_BOX_RADIUS, "normalisation": "per-image maximum"},
            "constant": {"level": CONSTANT_LEVEL},
            "layers": list(extra_methods),
            "engine": json.loads(settings.model_dump_json()),
        },
    )
    if out is not None:
        write_report(report, out)
    if grid is not None:
        grid.save(grid_path)
    return report


def record_scores(report: Mapping[str, Any], key: str) -> Path:
    """Write ``score_summary(report)`` into the manifest of the weights folder the report evaluated,
    under scores[key] (scores[key@int8] for the int8 file), refusing if the weights there changed since."""
    model = report["model"]
    try:
        manifest = WeightsManifest.load(model["model_dir"], verify=False)
        return manifest.record_scores(key, score_summary(report), evaluated_sha256=model["sha256"],
                                      precision=model.get("precision", "fp32"))
    except ManifestError as error:
        raise EvaluationError(str(error)) from None


def report_scores_key(report: Mapping[str, Any], key: str) -> str:
    """The key ``record_scores`` files this report under."""
    return scores_key(key, report["model"].get("precision", "fp32"))


def _model_description(engine: Any, settings: Any) -> dict[str, Any]:
    """The model as the service describes it (manifest, sha256, trained flag), plus where it ran."""
    from spancore.clones import CLONES_VERSION
    return {**engine.manifest.describe(), "model_dir": str(settings.model_dir), "provider": engine.provider,
            "clones": {"enabled": settings.clones, "version": CLONES_VERSION}}
