"""The inpainting generator's ONNX export: ORT agrees with torch at several sizes, and the shipped
file in weights/inpaint/ matches its manifest, is small, and fills only the hole."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.deepfill import DeepFillConfig, DeepFillGenerator  # noqa: E402
from models.export_inpainting import export  # noqa: E402
from spancore.inpaint import Inpainter, InpainterError  # noqa: E402
from spancore.weights import sha256_file  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[3] / "weights" / "inpaint"


def test_export_parity_at_sizes_other_than_the_traced_one(tmp_path):
    torch.manual_seed(0)
    gen = DeepFillGenerator(DeepFillConfig(cnum=8))
    torch.save({**gen.checkpoint(), "step": 0, "train_config": {"size": 64}}, tmp_path / "final.pt")
    manifest = json.loads(export(tmp_path / "final.pt", tmp_path / "out").read_text())
    assert manifest["onnx"]["parity_max_abs_diff"] < 1e-2
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "out" / "deepfill.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for h, w in ((40, 72), (120, 64)):  # neither traced (64×64) nor checked by export itself
        image = (rng.random((1, 3, h, w)) * 255).astype(np.float32)
        mask = np.zeros((1, 1, h, w), np.float32)
        mask[..., 8:24, 16:40] = 1
        got = session.run(["inpainted"], {"image": image, "mask": mask})[0]
        with torch.no_grad():
            ref = gen.eval().inpaint(torch.from_numpy(image), torch.from_numpy(mask)).numpy()
        assert np.abs(got - ref).max() < 1e-2
        assert np.array_equal(got[mask.repeat(3, 1) == 0], image[mask.repeat(3, 1) == 0])


def test_shipped_generator_matches_its_manifest_and_is_small():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    entry = manifest["files"]["deepfill.onnx"]
    path = SHIPPED / "deepfill.onnx"
    assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
    assert entry["bytes"] < 10 * 1024 * 1024
    assert manifest["training"]["step"] > 0  # trained, not an initialisation


def test_shipped_generator_fills_only_the_hole_at_any_size():
    engine = Inpainter(SHIPPED)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (75, 101, 3), dtype=np.uint8)  # not multiples of 8: padded inside
    mask = np.zeros((75, 101), np.uint8)
    mask[20:50, 30:70] = 1
    out = engine.fill_window(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], image[mask == 0])


def test_forge_refuses_a_tampered_generator(tmp_path):
    for name in ("manifest.json", "deepfill.onnx"):
        (tmp_path / name).write_bytes((SHIPPED / name).read_bytes())
    with open(tmp_path / "deepfill.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InpainterError, match="sha256"):
        Inpainter(tmp_path)


def test_a_generator_is_rebuilt_from_its_onnx_file_exactly(tmp_path):
    from models.export_inpainting import generator_from_onnx

    torch.manual_seed(3)
    gen = DeepFillGenerator(DeepFillConfig(cnum=8))
    torch.save({**gen.checkpoint(), "step": 7, "train_config": {"size": 64}}, tmp_path / "final.pt")
    manifest = export(tmp_path / "final.pt", tmp_path / "out")
    rebuilt = generator_from_onnx(manifest)
    assert rebuilt["step"] == 7 and rebuilt["config"]["cnum"] == 8
    assert rebuilt["state_dict"].keys() == gen.state_dict().keys()
    for name, tensor in gen.state_dict().items():
        assert torch.equal(rebuilt["state_dict"][name], tensor), name
    onnx_file = tmp_path / "out" / "deepfill.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        generator_from_onnx(manifest)


def test_the_shipped_generator_rebuilt_for_torch_fills_as_its_onnx_file_does():
    import onnxruntime as ort

    from models.export_inpainting import generator_from_onnx

    rebuilt = generator_from_onnx(SHIPPED / "manifest.json")
    gen = DeepFillGenerator.from_checkpoint(rebuilt).eval()
    rng = np.random.default_rng(2)
    image = (rng.random((1, 3, 64, 96)) * 255).astype(np.float32)
    mask = np.zeros((1, 1, 64, 96), np.float32)
    mask[..., 16:40, 24:60] = 1
    session = ort.InferenceSession(str(SHIPPED / "deepfill.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["inpainted"], {"image": image, "mask": mask})[0]
    with torch.no_grad():
        ref = gen.inpaint(torch.from_numpy(image), torch.from_numpy(mask)).numpy()
    assert np.abs(got - ref).max() < 1e-2
