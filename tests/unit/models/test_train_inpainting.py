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


def test_a_new_run_continues_from_a_shipped_generator(tmp_path):
    from models.export_inpainting import export

    torch.manual_seed(5)
    shipped = ti.DeepFillGenerator(ti.DeepFillConfig(cnum=8))
    torch.save({**shipped.checkpoint(), "step": 2, "train_config": {"size": 64}}, tmp_path / "final.pt")
    manifest = export(tmp_path / "final.pt", tmp_path / "shipped")
    cfg = ti.InpaintConfig(name="cont", cnum=8, size=64, batch_size=2, steps=3, gan_start=1, log_every=1,
                           val_samples=2, runs_dir=str(tmp_path), init_onnx=str(manifest))
    final = ti.train(cfg)
    records = [json.loads(line) for line in (tmp_path / "cont" / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "started" and records[0]["step"] == 2
    assert [r["step"] for r in records if "l1" in r] == [3]  # one step: from the shipped step 2 to 3
    # the first validation scores the shipped weights, not a fresh initialisation
    first_val = next(r for r in records if "val_l1" in r)
    with torch.no_grad():
        expected = ti.evaluate(shipped, *ti.validation_set(2, 64))
    assert first_val["step"] == 2 and first_val["val_l1"] == pytest.approx(expected["val_l1"], abs=1e-3)
    assert final is not None
    with pytest.raises(ValueError, match="cnum"):
        ti.train(ti.InpaintConfig(name="wrong", cnum=16, size=64, batch_size=2, steps=3, val_samples=2,
                                  runs_dir=str(tmp_path), init_onnx=str(manifest)))


def test_device_auto_trains_where_it_runs(tmp_path):
    cfg = ti.InpaintConfig(name="auto", cnum=8, size=64, batch_size=2, steps=1, gan_start=0, log_every=1,
                           val_samples=2, runs_dir=str(tmp_path), device="auto")
    final = ti.train(cfg)
    gen = ti.DeepFillGenerator.from_checkpoint(str(final))  # saved on the CPU whatever the device
    assert all(p.device.type == "cpu" for p in gen.parameters())
    records = [json.loads(line) for line in (tmp_path / "auto" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "l1" in r] == [1]
