"""Training: both stages run and learn on CPU, a resumed run continues (and ends) exactly
where an unbroken one does, and Featex stays frozen in stage 2."""
from __future__ import annotations

import json

import numpy as np

import pytest

torch = pytest.importorskip("torch")

from models import synthesis  # noqa: E402
from models.span import Span  # noqa: E402
from models.train import (  # noqa: E402
    ManipulationClassifier,
    TrainConfig,
    he_init,
    localisation_loss,
    train,
)

# A network small enough for a few CPU steps in seconds, on the real synthesised data.
TINY_SPAN = {
    "preset": "slim",
    "featex_blocks": [[8], [8], [16], [16], [16]],
    "featex_pool": [True, True, False, False, False],
    "featex_dim": 16, "grid": [24, 24], "attention_dim": 8, "dilations": [1, 3], "head_widths": [8, 4],
}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin-wait each other
    and tiny steps run 10-100x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(tmp_path, name="tiny", **overrides) -> TrainConfig:
    data = {
        "name": name, "runs_dir": str(tmp_path), "num_workers": 0, "amp": "off", "threads": 1,
        "checkpoint_minutes": 100,
        "span": TINY_SPAN,
        "stage1": {"steps": 3, "batch_size": 2, "patch": 48, "log_every": 1, "warmup_steps": 1, "val_samples": 6},
        "stage2": {"steps": 3, "batch_size": 2, "patch": 48, "log_every": 1, "warmup_steps": 1,
                   "val_every": 3, "val_samples": 3},
        **overrides,
    }
    return TrainConfig.from_dict(data)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_config_rejects_unknown_settings(tmp_path):
    with pytest.raises(ValueError, match="stage2"):
        tiny_config(tmp_path, stage2={"stpes": 3})
    with pytest.raises(ValueError):
        tiny_config(tmp_path, lr=1.0)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[3] / "models" / "configs").glob("*.json"))
    assert {c.stem for c in configs} >= {"cpu-small", "gpu-full", "cues-cpu"}
    for path in configs:
        if path.stem.startswith("inpaint-"):  # the inpainting generator's own trainer reads these
            from models.train_inpainting import InpaintConfig

            InpaintConfig.load(path)
            continue
        config = TrainConfig.load(path)
        assert config.name == path.stem
        config.span_config()  # a valid architecture


def _overfit(model, params, batch_loss, steps=25, lr=3e-3):
    optimizer = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_both_stages_overfit_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    span = Span(tiny_config(tmp_path).span_config())

    patches = synthesis.ManipulationTypeDataset("val", size=48, seed=1)
    images = torch.stack([patches[i][0] for i in range(4)])
    labels = torch.tensor([patches[i][1] for i in range(4)])
    classifier = ManipulationClassifier(span.featex, len(synthesis.STAGE1_CLASSES))
    losses = _overfit(classifier, classifier.parameters(),
                      lambda: torch.nn.functional.cross_entropy(classifier(images), labels))
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses

    forgeries = synthesis.ForgeryDataset("val", size=48, seed=2, kind_weights={"splice": 1.0})
    images = torch.stack([forgeries[i][0] for i in range(2)])
    masks = torch.stack([forgeries[i][1] for i in range(2)])
    span.freeze_featex()
    losses = _overfit(span, span.trainable_parameters(),
                      lambda: localisation_loss(span.grid_logits(images), masks, 0.5)[0])
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses


def test_featex_is_frozen_in_stage2_and_the_rest_learns(tmp_path):
    config = tiny_config(tmp_path)
    final = train(config)
    run_dir = tmp_path / "tiny"
    assert final == run_dir / "final.pt"
    torch.manual_seed(config.seed)
    fresh = Span(config.span_config())
    he_init(fresh.featex)  # exactly what train() starts from
    initial = fresh.state_dict()
    stage1 = torch.load(run_dir / "featex.pt", weights_only=True)["state_dict"]
    shipped = torch.load(final, weights_only=False)
    weights = shipped["state_dict"]
    assert shipped["trained"] is True and shipped["config"] == config.span_config().to_dict()
    for key, value in stage1.items():
        assert torch.equal(weights[f"featex.{key}"], value), f"featex.{key} moved in stage 2"
    assert any(not torch.equal(stage1[k], initial[f"featex.{k}"]) for k in stage1), "stage 1 trained nothing"
    rest = [k for k in weights if not k.startswith("featex.") and weights[k].is_floating_point()]
    assert any(not torch.equal(weights[k], initial[k]) for k in rest), "stage 2 trained nothing"
    assert Span.from_checkpoint(final).config == config.span_config()  # what `span export` reads

    log = read_log(run_dir)
    validations = [r for r in log if r.get("event") == "validation" and r["stage"] == 2]
    assert validations and 0.0 <= validations[-1]["val_pixel_auc_pooled"] <= 1.0
    (stage1,) = [r for r in log if r.get("event") == "validation" and r["stage"] == 1]
    assert 0.0 <= stage1["val_accuracy"] <= 1.0 and stage1["val_accuracy_by_class"]
    assert (run_dir / "stage1-classifier.pt").exists()
    assert all(r["loss"] == r["loss"] for r in log if "loss" in r)  # finite, never NaN
    assert (run_dir / "loss.png").stat().st_size > 0


def test_init_checkpoint_continues_stage2_from_an_earlier_run(tmp_path):
    first = train(tiny_config(tmp_path, name="first"))
    earlier = torch.load(first, weights_only=False)["state_dict"]
    config = tiny_config(tmp_path, name="continued", seed=1, init_checkpoint=str(first), stage1={"steps": 1000})
    final = train(config)
    log = read_log(tmp_path / "continued")
    assert not any(r.get("stage") == 1 for r in log)  # no stage 1 at all
    (started,) = [r for r in log if r.get("event") == "initialised"]
    assert started["path"] == str(first)
    validations = [r for r in log if r.get("event") == "validation"]
    assert validations[0]["step"] == 0 and validations[0]["best"]  # the starting weights are the bar to beat
    weights = torch.load(final, weights_only=False)["state_dict"]
    assert all(torch.equal(weights[k], v) for k, v in earlier.items() if k.startswith("featex."))
    moved = any(not torch.equal(weights[k], earlier[k]) for k in weights if not k.startswith("featex."))
    kept_start = torch.load(final, weights_only=False)["step"] == 0
    assert moved or kept_start  # either training beat the start, or the start was kept as best
    other = tiny_config(tmp_path, name="other", init_checkpoint=str(first), span={**TINY_SPAN, "attention_dim": 4})
    with pytest.raises(ValueError, match="different architecture"):
        train(other)


def test_large_crop_steps_interleave_with_patch_steps_and_leave_the_patch_stream_as_it_was():
    from models.train import StepBatches

    patches = synthesis.ForgeryDataset("val", size=48, seed=3, kind_weights={"splice": 1.0, "pristine": 1.0})
    crops = synthesis.ForgeryDataset("val", size=96, seed=4, kind_weights={"camera-splice": 1.0},
                                     cameras="held-out")
    batches = StepBatches(patches, 2, 6, crops, large_batch_size=1, every=3)
    shapes = [tuple(batches[i][0].shape) for i in range(6)]
    assert shapes == [(2, 3, 48, 48), (2, 3, 48, 48), (1, 3, 96, 96)] * 2  # steps 3 and 6 are large
    # a patch step draws the samples a plain per-sample loader draws at that step
    assert torch.equal(batches[4][0], torch.stack([patches[8][0], patches[9][0]]))
    assert batches[2][-1].tolist() == [synthesis.KINDS.index("camera-splice")]
    plain = StepBatches(patches, 2, 6, crops, every=0)  # every=0: no large steps
    assert all(plain[i][0].shape[-1] == 48 for i in range(6))


def test_camera_kinds_draw_from_the_split_they_are_given(monkeypatch):
    drawn = []
    real = synthesis.random_crop

    def recording_crop(rng, photo, size, **kw):
        drawn.append(photo.path.name)
        return real(rng, photo, size, **kw)

    monkeypatch.setattr(synthesis, "random_crop", recording_crop)
    held_out = {p.path.name for p in synthesis.list_cameras("held-out")}
    ds = synthesis.ForgeryDataset("val", size=64, seed=1, kind_weights={"camera-splice": 1.0}, cameras="held-out")
    for i in range(4):
        ds.forgery(i)
    assert drawn and set(drawn) <= held_out
    drawn.clear()
    synthesis.ForgeryDataset("val", size=64, seed=1, kind_weights={"camera-splice": 1.0}).forgery(0)
    assert drawn and not set(drawn) & held_out  # the default stays the training cameras


def test_large_crop_runs_validate_on_both_sets_and_keep_the_best_mean(tmp_path):
    large = {"patch": 96, "batch_size": 1, "every": 2, "val_samples": 2, "kind_weights": {"camera-splice": 1.0}}
    with pytest.raises(ValueError, match="stage2.large"):
        tiny_config(tmp_path, name="typo", stage2={"steps": 2, "large": {**large, "evry": 2}})
    config = tiny_config(tmp_path, name="large")
    config.stage2.steps, config.stage2.val_every, config.stage2.large = 4, 2, large
    config.stage2.kind_weights = {"splice": 1.0}  # every validation sample has a region to score
    assert train(config) is not None
    log = read_log(tmp_path / "large")
    steps = {r["step"]: r for r in log if r.get("stage") == 2 and "loss" in r}
    assert sorted(steps) == [1, 2, 3, 4]
    validations = [r for r in log if r.get("event") == "validation" and r.get("stage") == 2]
    assert [v["step"] for v in validations] == [2, 4]
    for v in validations:
        both = [v["val_pixel_auc"], v["large_val_pixel_auc"]]
        assert v["val_score"] == pytest.approx(np.mean(both))
    best = max(validations, key=lambda v: v["val_score"])
    assert best["best"]
    final = torch.load(tmp_path / "large" / "final.pt", weights_only=False)
    assert final["step"] == best["step"]


def test_resume_continues_from_the_saved_step(tmp_path):
    unbroken = train(tiny_config(tmp_path, name="unbroken"))

    config = tiny_config(tmp_path, name="broken")
    assert train(config, max_minutes=0) is None  # stops right after its first step
    ckpt = torch.load(tmp_path / "broken" / "ckpt.pt", weights_only=False)
    assert (ckpt["stage"], ckpt["step"]) == (1, 1)
    with pytest.raises(FileExistsError):
        train(config)  # never silently restarts over an existing run
    assert train(config, resume=True, max_minutes=0) is None
    final = train(config, resume=True)

    log = read_log(tmp_path / "broken")
    starts = [r["resume_from"] for r in log if r.get("event") == "start"]
    assert starts == [None, {"stage": 1, "step": 1}, {"stage": 1, "step": 2}]
    stage1_steps = [r["step"] for r in log if r.get("stage") == 1 and "loss" in r]
    assert stage1_steps == [1, 2, 3]  # no step done twice, none skipped
    a = torch.load(unbroken, weights_only=False)["state_dict"]
    b = torch.load(final, weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:  # same data, same optimiser state: the same weights
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_time_budget_ends_a_stage_early(tmp_path):
    config = tiny_config(tmp_path, stage1={"steps": 1000, "minutes": 1e-6, "batch_size": 2, "patch": 48,
                                           "val_samples": 0})
    config.stage2.steps = 1
    assert train(config) is not None
    stage1 = [r for r in read_log(tmp_path / "tiny") if r.get("stage") == 1 and "loss" in r]
    assert [r["step"] for r in stage1] == [1]  # the budget, not the 1000 steps, ended it
    assert (tmp_path / "tiny" / "featex.pt").exists()  # and stage 2 went on from there


def test_span_train_command_stops_and_resumes(tmp_path):
    from typer.testing import CliRunner

    from spancli.main import TRAIN_UNFINISHED, app

    config = tiny_config(tmp_path, name="cli").to_dict()
    path = tmp_path / "cli.json"
    path.write_text(json.dumps(config))
    runner = CliRunner()
    stopped = runner.invoke(app, ["train", "--config", str(path), "--max-minutes", "0"])
    assert stopped.exit_code == TRAIN_UNFINISHED, stopped.output
    again = runner.invoke(app, ["train", "--config", str(path)])
    assert again.exit_code == 2 and "--resume" in again.output
    done = runner.invoke(app, ["train", "--config", str(path), "--resume"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cli" / "final.pt").exists()
    # another seed of the same config: its own folder, its own seed, the config file untouched
    seeded = runner.invoke(app, ["train", "--config", str(path), "--seed", "7", "--max-minutes", "0"])
    assert seeded.exit_code == TRAIN_UNFINISHED, seeded.output
    assert json.loads((tmp_path / "cli-seed7" / "config.json").read_text())["seed"] == 7
    assert json.loads(path.read_text())["seed"] == config["seed"]
    assert runner.invoke(app, ["train", "--config", str(path), "--seed", "7", "--resume"]).exit_code == 0
    assert (tmp_path / "cli-seed7" / "final.pt").exists()


def test_span_train_finish_turns_a_stopped_run_into_final_weights(tmp_path):
    """A run stopped by --max-minutes has best.pt but no final.pt; --finish writes it with the
    training record calibration and export need, and refuses what it cannot finish."""
    from typer.testing import CliRunner

    from spancli.main import app

    first = train(tiny_config(tmp_path, name="first"))
    config = tiny_config(tmp_path, name="stopped", init_checkpoint=str(first))
    path = tmp_path / "stopped.json"
    path.write_text(json.dumps(config.to_dict()))
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(path), "--max-minutes", "0"]).exit_code != 0
    assert (tmp_path / "stopped" / "best.pt").exists() and not (tmp_path / "stopped" / "final.pt").exists()

    done = runner.invoke(app, ["train", "--config", str(path), "--finish"])
    assert done.exit_code == 0, done.output
    final = torch.load(tmp_path / "stopped" / "final.pt", weights_only=False)
    best = torch.load(tmp_path / "stopped" / "best.pt", weights_only=False)
    assert final["training"]["run"] == "stopped" and final["training"]["step"] == best["step"] == 0
    assert final["training"]["config"]["init_checkpoint"] == str(first) and final["trained"]
    for key, value in best["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key

    both = runner.invoke(app, ["train", "--config", str(path), "--finish", "--resume"])
    assert both.exit_code == 2 and "--finish" in both.output
    nothing = tmp_path / "nothing.json"
    nothing.write_text(json.dumps(tiny_config(tmp_path, name="nothing").to_dict()))
    missing = runner.invoke(app, ["train", "--config", str(nothing), "--finish"])
    assert missing.exit_code == 2 and "best.pt does not exist" in missing.output
    assert not (tmp_path / "nothing").exists()  # a refused finish leaves nothing behind


def test_calibration_centres_and_scales_featex(tmp_path):
    from models.train import calibrate_featex

    torch.manual_seed(0)
    span = Span(tiny_config(tmp_path).span_config())
    patches = synthesis.ManipulationTypeDataset("val", size=48, seed=3)
    images = torch.stack([patches[i][0] for i in range(6)])
    calibrate_featex(span.featex, images)
    with torch.no_grad():
        h = span.featex.blocks(span.featex.forensic(images))
        out = span.featex.transform(h)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(out.shape[1]), atol=1e-3)


def test_validation_scores_the_shipped_map_the_right_way_round(tmp_path):
    """An oracle whose grid logits are the (downsampled) truth scores ~1, its negation ~0."""
    from models.losses import grid_target
    from models.train import Run, evaluate_localisation

    run = Run(tiny_config(tmp_path), resume=False)
    forgeries = synthesis.ForgeryDataset("val", size=64, seed=4, kind_weights={"splice": 1.0, "pristine": 1.0})
    items = [forgeries[i] for i in range(8)]
    assert {k for _, _, k in items} == {synthesis.KINDS.index("splice"), synthesis.KINDS.index("pristine")}
    images, masks = torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])
    span = Span(tiny_config(tmp_path).span_config())
    for sign, low, high in ((1.0, 0.9, 1.0), (-1.0, 0.0, 0.1)):
        def oracle(x, cues=None, _sign=sign):
            index = [int(torch.nonzero((images == x[k]).all(dim=(1, 2, 3)))[0]) for k in range(len(x))]
            return _sign * 20 * (grid_target(masks[index], span.config.grid) - 0.5)

        span.featex = torch.nn.Identity()  # the oracle reads the images themselves
        span.logits_from_features = oracle
        metrics = evaluate_localisation(span, images, masks, run, batch_size=4)
        assert low <= metrics["val_pixel_auc"] <= high, metrics
        if sign > 0:  # the top 1% of a forged image's map is its forged region, of a pristine one nothing
            assert metrics["val_image_auc"] >= 0.9, metrics


def test_config_refuses_an_unknown_dice_mode(tmp_path):
    with pytest.raises(ValueError, match="stage2.dice"):
        tiny_config(tmp_path, stage2={"dice": "pixel"})


def test_per_image_dice_weighs_each_forged_sample_alone_and_leaves_pristine_ones_to_the_bce():
    """A 4-pixel splice beside a half-image one: the batch Dice is dominated by the big mask,
    the per-image Dice is the mean of the two samples' own Dice (the pristine one adds none)."""
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16)
    masks = torch.zeros(3, 1, 16, 16)
    masks[0, 0, :, :8] = 1  # half the image
    masks[1, 0, :2, :2] = 1  # 4 pixels; sample 2 is pristine

    def alone(i, dice):  # one sample's loss, where batch and per-image Dice coincide
        return localisation_loss(logits[i:i + 1], masks[i:i + 1], 1.0, dice=dice)[1]["dice"]

    _, per_image = localisation_loss(logits, masks, 1.0, dice="image")
    _, batch = localisation_loss(logits, masks, 1.0, dice="batch")
    assert per_image["dice"] == pytest.approx((alone(0, "batch") + alone(1, "batch")) / 2, rel=1e-5)
    assert alone(0, "image") == pytest.approx(alone(0, "batch"), rel=1e-6)
    assert batch["dice"] != pytest.approx(per_image["dice"], rel=1e-2)
    assert per_image["bce"] == batch["bce"]
    # no forged sample: both modes are the batch Dice, which pushes the pristine maps down
    assert alone(2, "image") == pytest.approx(alone(2, "batch"))
    with pytest.raises(ValueError, match="dice"):
        localisation_loss(logits, masks, 1.0, dice="pixel")


def test_operating_point_per_image_follows_each_photos_f1_not_the_pooled_pixels():
    """Photo 0: a big region at 0.9 and 20 false alarms at 0.5; photo 1: a 4-pixel region at 0.4;
    backgrounds 0.2. Pooled F1 ignores the small photo (best above 0.5); the mean of the photos'
    own F1, what span evaluate reports, needs it (best just above the background)."""
    from models.losses import operating_point

    truth = np.zeros((2, 20, 20), bool)
    truth[0, :, :10] = True  # 200 pixels
    truth[1, :2, :2] = True  # 4 pixels
    heat = np.full((2, 20, 20), 0.2, np.float32)
    heat[0][truth[0]] = 0.9
    heat[0, :2, 10:20] = 0.5  # 20 false alarms
    heat[1][truth[1]] = 0.4
    assert operating_point(heat, truth) == (0.51, pytest.approx(400 / 404))
    assert operating_point(heat, truth, per_image=True) == (0.21, pytest.approx((400 / 420 + 1) / 2))


def test_the_f1_surface_is_decision_mask_brute_force_and_finds_the_cut_that_drops_a_weak_false_alarm():
    """A strong 4-pixel edit at 0.9 and a broad weak alarm at 0.3: any threshold that keeps the
    edit keeps the alarm unless it is above 0.3, or the cut is above 1/3 of the peak."""
    from models.losses import RELATIVE_CUTS, THRESHOLDS, best_on_surface, per_image_f1_curve, per_image_f1_surface
    from spancore.scoring import Confusion, decision_mask

    truth = np.zeros((2, 10, 10), bool)
    truth[0, :2, :2] = True
    heat = np.full((2, 10, 10), 0.05, np.float32)
    heat[0, 5:, :] = 0.3
    heat[0][truth[0]] = 0.9
    heat[1] = np.linspace(0, 0.5, 100, dtype=np.float32).reshape(10, 10)  # pristine: left out of the mean
    surface = per_image_f1_surface(heat, truth)
    assert surface.shape == (len(RELATIVE_CUTS), len(THRESHOLDS))
    assert np.array_equal(surface[0], per_image_f1_curve(heat, truth))
    rng = np.random.default_rng(1)
    noisy = (rng.random((3, 12, 12)) ** 2).astype(np.float32)
    noisy[:, :3, :3] = np.float32(0.12)  # ties exactly at a threshold count as marked, as in the service
    marks = rng.random((3, 12, 12)) < 0.2
    brute = per_image_f1_surface(noisy, marks)
    for r, cut in enumerate(RELATIVE_CUTS[::4]):
        for c, threshold in enumerate(THRESHOLDS[::7]):
            expected = np.mean([Confusion.of(decision_mask(noisy[i], float(threshold), float(cut)), marks[i]).f1() or 0.0
                                for i in range(3)])
            assert brute[4 * r, 7 * c] == pytest.approx(expected)
    threshold, cut, f1 = best_on_surface(surface)
    assert f1 == 1.0 and (cut, threshold) == (0.0, 0.31)     # ties: no cut, the lowest threshold above 0.3
    threshold, cut, f1 = best_on_surface(surface[:, :20])    # thresholds up to 0.24 only: the cut is needed
    assert f1 == 1.0 and cut == 0.35 and threshold == 0.05   # the smallest cut above 0.3 / 0.9


def test_calibrate_writes_the_threshold_that_export_reads(tmp_path):
    from models.calibrate import calibrate
    from models.train import Run, finish

    config = tiny_config(tmp_path)
    span = Span(config.span_config())
    final = finish(Run(config, resume=False), span)
    data = calibrate(final, tiny_config(tmp_path), samples=6, batch_size=3)
    record = data["training"]["calibration"]
    assert record["samples"] == 6 and 0.05 <= record["threshold"] <= 0.95
    assert data["training"]["validation"]["val_threshold"] == record["threshold"]
    assert Span.from_checkpoint(data).state_dict().keys() == span.state_dict().keys()


def test_calibrate_on_both_scales_picks_the_operating_point_on_the_mean_of_the_two_sets(tmp_path, monkeypatch):
    from models import calibrate as cal
    from models.losses import RELATIVE_CUTS, THRESHOLDS, per_image_f1_surface
    from models.train import Run, finish
    from spancore.scoring import image_scores

    config = tiny_config(tmp_path)
    final = finish(Run(config, resume=False), Span(config.span_config()))
    maps = {}
    real_small, real_large = cal.calibration_maps, cal.large_calibration_maps

    def keep(name, real):
        def wrapped(*args, **kwargs):
            maps[name] = real(*args, **kwargs)
            return maps[name]
        return wrapped

    monkeypatch.setattr(cal, "calibration_maps", keep("small", real_small))
    monkeypatch.setattr(cal, "large_calibration_maps", keep("large", real_large))
    large = {"patch": 64, "kind_weights": {"camera-splice": 1.0}}
    data = cal.calibrate(final, tiny_config(tmp_path, stage2={"steps": 1, "large": large}), samples=6,
                         batch_size=3, large_samples=3)
    record = data["training"]["calibration"]
    assert record["large"]["samples"] == 3 and record["large"]["split"] == "held-out cameras"
    assert record["large"]["size"] == 64 and record["large"]["seed"] == cal.LARGE_CALIBRATION_SEED
    both = (per_image_f1_surface(*maps["small"][:2]) + per_image_f1_surface(*maps["large"][:2])) / 2
    row, column = np.unravel_index(int(np.argmax(both)), both.shape)
    assert (record["threshold"], record["relative_cut"]) == (float(THRESHOLDS[column]), float(RELATIVE_CUTS[row]))
    assert record["mean_f1_of_both"] == round(float(both.max()), 4)
    assert record["mean_f1_of_both_threshold_alone"] == round(float(both[0].max()), 4) <= record["mean_f1_of_both"]
    validation = data["training"]["validation"]
    assert (validation["val_threshold"], validation["val_relative_cut"], validation["val_image_threshold"]) == (
        record["threshold"], record["relative_cut"], record["image_threshold"])
    # the image decision: the best mean balanced accuracy of the two sets' image scores
    accuracy = [cal.image_accuracy_curve(image_scores(h), t.reshape(len(t), -1).any(1))
                for h, t, _ in (maps["small"], maps["large"])]
    assert record["image_threshold"] == float(THRESHOLDS[int(np.argmax(np.mean(accuracy, axis=0)))])

