"""The answer folds the clones spancore.clones finds into the model's map and score (SPAN_CLONES)."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.analysis import analyze_bytes
from service.settings import REPO_ROOT, Settings
from spancore.clones import CLONES_VERSION
from spancore.weights import load_manifest

sys.path.insert(0, str(Path(__file__).parents[1] / "spancore"))
from test_clones import _photo, _with_copy  # noqa: E402  (the same synthetic photo and copy)


class FlatEngine:
    """The model's side of an answer: a flat map at 0.2 (its image score is 0.2)."""

    threshold = 0.5
    relative_cut = 0.0
    image_threshold = 0.5
    manifest = load_manifest(REPO_ROOT / "weights")  # only its model_info() is read

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        return np.full(rgb.shape[:2], 0.2, np.float32)


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def test_a_clone_is_in_the_answer_the_map_and_the_score():
    forged, source, target = _with_copy(_photo())
    analysis = analyze_bytes(_png(forged), FlatEngine(), Settings(warmup=False))
    answer = analysis.as_json(include_heatmap=False)
    assert answer["clones"]["found"] and answer["clones"]["clones"][0]["shift"] == [150, 110]
    confidence = answer["clones"]["clones"][0]["correlation"]
    assert analysis.score == pytest.approx(1 - 0.8 * (1 - confidence), abs=1e-6)
    assert analysis.score >= analysis.image_threshold  # a clone alone makes the photo suspect
    assert analysis.heatmap[target].mean() > 0.9 and analysis.heatmap[source].mean() > 0.9
    assert np.allclose(np.unique(analysis.heatmap), sorted({0.2, confidence}), atol=1e-4)  # the model's, or the clone's
    assert 0.05 < analysis.tampered_fraction < 0.2  # both copies, at the flat model's 0.5 threshold
    assert "clones" in answer["timings_ms"]


def test_an_untouched_photo_keeps_the_model_answer():
    analysis = analyze_bytes(_png(_photo()), FlatEngine(), Settings(warmup=False))
    assert analysis.clones == {"found": False, "version": CLONES_VERSION, "scale": 1, "clones": []}
    assert analysis.score == pytest.approx(0.2) and np.allclose(analysis.heatmap, 0.2)


def test_span_clones_off_answers_the_model_alone():
    forged, _, _ = _with_copy(_photo())
    analysis = analyze_bytes(_png(forged), FlatEngine(), Settings(warmup=False, clones=False))
    assert analysis.clones is None and analysis.as_json(include_heatmap=False)["clones"] is None
    assert analysis.score == pytest.approx(0.2) and np.allclose(analysis.heatmap, 0.2)
    assert "clones" not in analysis.timings_ms
