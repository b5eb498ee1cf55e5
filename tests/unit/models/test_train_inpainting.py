"""The inpainting training script: deterministic data from the right splits, holes of all three
families, and a run that pauses on its time budget and resumes to the end."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models import train_inpainting as ti  # noqa: E402


def test_training_photos_are_bsds_train_sun_hays_urban100_only():
    train = ti.training_photos("train")
    folders = {p.path.parent.name for p in train}
    assert folders == {"train", "sun-hays80", "urban100"}
    assert all("bsds500/test" not in p.path.as_posix() for p in train + ti.training_photos("val"))
    assert {p.path.parent.name for p in ti.training_photos("val")} == {"val"}


def test_samples_are_a_function_of_seed_and_index():
    photos = ti.training_photos("val")
    a, ma = ti.sample(3, 7, photos, 64)
    b, mb = ti.sample(3, 7, photos, 64)
    c, _ = ti.sample(3, 8, photos, 64)
    assert np.array_equal(a, b) and np.array_equal(ma, mb) and not np.array_equal(a, c)
    assert a.shape == (64, 64, 3) and ma.shape == (64, 64) and set(np.unique(ma)) <= {0, 1}


def test_holes_cover_strokes_rectangles_and_objects():
    photos = ti.training_photos("val")
    rectangles = objects = 0
    for i in range(40):
        rng = ti.synthesis.sample_rng(0, i)
        _, seg = ti.scene_crop(rng, photos[i % len(photos)], 96)
        m = ti.training_hole(rng, seg, 96)
        assert m.shape == (96, 96) and 0 < m.mean() < 0.9
        ys, xs = np.nonzero(m)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        rectangles += int(box == m.sum())
        objects += int(box != m.sum())
    assert rectangles >= 4 and objects >= 4


def test_a_paused_run_resumes_to_the_end(tmp_path):
    cfg = ti.InpaintConfig(name="tiny", cnum=8, size=64, batch_size=2, steps=3, gan_start=1, log_every=1,
                           val_samples=2, runs_dir=str(tmp_path))
    assert ti.train(cfg, max_minutes=0) is None  # out of time at once: checkpoint, no final
    state = torch.load(tmp_path / "tiny" / "ckpt.pt", weights_only=False)
    assert state["step"] == 0
    with pytest.raises(FileExistsError):
        ti.train(cfg)  # a second start would overwrite the run: it must say --resume
    final = ti.train(cfg, resume=True)
    assert final is not None and final.exists()
    records = [json.loads(line) for line in (tmp_path / "tiny" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "l1" in r] == [1, 2, 3]
    assert any(r.get("event") == "resumed" for r in records)
    assert any(r["d_loss"] != 0 for r in records if "l1" in r)  # the discriminator trained
    assert (tmp_path / "tiny" / "loss.png").stat().st_size > 1000
    gen = ti.DeepFillGenerator.from_checkpoint(str(final))
    assert gen.config.cnum == 8
