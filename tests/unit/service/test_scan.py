"""`span scan`: real photos from ../shared/data, the shipped ONNX model, a real server for --server.

Inference dominates the time, so the photos are tiny and the first scan runs once per module;
tests that change things work on copies of its folders.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spancore.clones import CLONES_VERSION
from spancore.scoring import decision_mask, image_score
from spancli.main import app
from service.decode import decode_image
from spancore.weights import sha256_file
from service.scan import Outputs
from service.scan_inputs import collect_inputs
from service.settings import get_settings
from spancore.testing import EXIF_SAMPLES, ROOT

EXIF = EXIF_SAMPLES / "jpg"
PHOTOS = {  # where it goes in the scanned folder <- which real photo
    "Canon_40D.jpg": EXIF / "Canon_40D.jpg",
    "Nikon_D70.jpg": EXIF / "Nikon_D70.jpg",
    "nested/deeper/Canon_40D.jpg": EXIF / "Fujifilm_FinePix_E500.jpg",  # same name, other folder, portrait
}
GOOD = sorted(PHOTOS)
runner = CliRunner()
pytestmark = pytest.mark.skipif(not EXIF.is_dir(), reason=f"shared data not found at {EXIF} (set SPAN_SHARED_DATA)")


def make_folder(root: Path) -> Path:
    folder = root / "photos"
    for name, source in PHOTOS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    # A JPEG cut short: the header parses, the pixels do not.
    (folder / "broken.jpg").write_bytes((EXIF / "gps" / "DSCN0010.jpg").read_bytes()[:3000])
    (folder / "notes.txt").write_text("not a photo: folders are searched for image suffixes only")
    (folder / ".hidden.jpg").write_bytes(b"macOS resource fork, not a photo")
    return folder


def scan(*args: str):
    return runner.invoke(app, ["scan", *map(str, args)], catch_exceptions=False)


def summary(out: Path) -> dict[str, dict]:
    """summary.json items by path relative to the scanned folder; also checks the CSV says the same."""
    items = json.loads((out / "summary.json").read_text())["items"]
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [i["path"] for i in items]
    for row, item in zip(rows, items):
        assert row["status"] == item["status"]
        assert (row["score"] == "") == (item["score"] is None)
        if item["score"] is not None:
            assert float(row["score"]) == pytest.approx(item["score"])
    return {_inside_photos(i["path"]): i for i in items}


def _inside_photos(path: str) -> str:
    """The part of a summary path below the scanned photos/ folder."""
    parts = Path(path).parts
    return "/".join(parts[len(parts) - parts[::-1].index("photos"):])


@pytest.fixture(scope="module")
def first_scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    folder = make_folder(root)
    out = root / "out"
    result = scan(folder, "--out", out)
    return root, folder, out, result


def test_first_scan_writes_a_heatmap_overlay_and_summary_row_per_photo(first_scan):
    root, folder, out, result = first_scan
    assert result.exit_code == 1, result.output  # broken.jpg failed, so the scan says so
    assert "broken.jpg" in result.output

    items = summary(out)
    assert sorted(items) == sorted([*GOOD, "broken.jpg"])  # no notes.txt, no .hidden.jpg
    broken = items["broken.jpg"]
    assert broken["status"] == "failed" and broken["error_code"] == "corrupt_image"
    assert broken["error_message"] and broken["score"] is None

    for name in GOOD:
        item = items[name]
        assert item["status"] == "ok"
        assert item["name"] == name  # outputs are named by the path below the scanned folder
        assert item["heatmap"] == f"{name}.heatmap.png" and item["overlay"] == f"{name}.overlay.jpg"
        photo = decode_image((folder / name).read_bytes(), max_pixels=10**8)
        heatmap = np.asarray(Image.open(out / item["heatmap"]))
        overlay = Image.open(out / item["overlay"])
        assert heatmap.dtype == np.uint8 and heatmap.shape == photo.rgb.shape[:2]
        assert overlay.format == "JPEG" and overlay.size == (photo.metadata.width, photo.metadata.height)
        assert (item["width"], item["height"]) == (photo.metadata.width, photo.metadata.height)
        # The summary's numbers are those of the map that was written (8-bit rounding aside).
        assert item["score"] == pytest.approx(image_score(heatmap / 255.0), abs=1 / 255)
        threshold, cut = record_decision(out / f"{name}.result.json")
        assert item["tampered_fraction"] == pytest.approx(float(np.mean(decision_mask(heatmap / 255.0, threshold, cut))),
                                                          abs=0.02)
        record = json.loads((out / f"{name}.result.json").read_text())
        assert record["model"]["sha256"] == _running_model_sha256()
        assert record["score"] == item["score"]
        # the clone search ran (none here: else the score would be more than the map's own)
        assert record["clones"] == {"found": False, "version": CLONES_VERSION, "scale": record["clones"]["scale"],
                                    "clones": []}

    # Two photos named Canon_40D.jpg in different folders: two different heatmaps.
    a = np.asarray(Image.open(out / "Canon_40D.jpg.heatmap.png"))
    b = np.asarray(Image.open(out / "nested/deeper/Canon_40D.jpg.heatmap.png"))
    assert a.shape != b.shape
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts == {"ok": 3, "skipped": 0, "failed": 1}


def test_results_get_the_mode_a_plain_file_gets(first_scan, tmp_path):
    """Written atomically (temporary file + rename) but not left 0600 as mkstemp makes them."""
    _, _, out, _ = first_scan
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    expected = probe.stat().st_mode & 0o777
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and {p.stat().st_mode & 0o777 for p in written} == {expected}


def test_second_run_skips_finished_photos_and_still_lists_them(first_scan, tmp_path):
    _, folder, out, first = first_scan
    folder, out = _copy(folder, tmp_path / "photos"), _copy(out, tmp_path / "out")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    first_items = summary(out)

    again = scan(folder, "--out", out, "--root", folder)  # the copies moved the photos: say where they are
    assert again.exit_code == 1  # broken.jpg is tried again and fails again
    items = summary(out)
    assert {n: items[n]["status"] for n in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert {n: items[n]["score"] for n in GOOD} == {n: first_items[n]["score"] for n in GOOD}
    assert items["broken.jpg"]["status"] == "failed"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before  # nothing rewritten

    (folder / "broken.jpg").unlink()
    clean = scan(folder, "--out", out)  # the root is now recorded in the copied summary
    assert clean.exit_code == 0, clean.output
    assert json.loads((out / "summary.json").read_text())["counts"] == {"ok": 0, "skipped": 3, "failed": 0}


def test_interrupted_or_changed_work_is_redone(first_scan, tmp_path):
    _, folder, out, _ = first_scan
    folder, out = _copy(folder, tmp_path / "photos"), _copy(out, tmp_path / "out")
    (folder / "broken.jpg").unlink()
    # Killed after the heatmap and overlay, before the record: not finished.
    (out / "Nikon_D70.jpg.result.json").unlink()
    # A photo replaced by another under the same name: its old heatmap is not its heatmap.
    shutil.copy(EXIF / "Canon_40D.jpg", folder / "nested/deeper/Canon_40D.jpg")

    result = scan(folder, "--out", out, "--root", folder)
    assert result.exit_code == 0, result.output
    items = summary(out)
    assert {n: items[n]["status"] for n in GOOD} == {
        "Canon_40D.jpg": "skipped", "Nikon_D70.jpg": "ok", "nested/deeper/Canon_40D.jpg": "ok"}
    replaced = np.asarray(Image.open(out / "nested/deeper/Canon_40D.jpg.heatmap.png"))
    assert replaced.shape == (68, 100)  # now the Canon photo's size, not the Fujifilm's
    assert (out / "Nikon_D70.jpg.result.json").is_file()


def test_sigterm_stops_after_the_current_photo_and_writes_the_summary(tmp_path):
    folder, out = make_folder(tmp_path), tmp_path / "out"
    # Enough photos that the scan cannot finish between its first result and the signal.
    extra = folder / "many"
    extra.mkdir()
    for i in range(60):
        shutil.copy(PHOTOS["Canon_40D.jpg"], extra / f"copy-{i:02d}.jpg")
    total = len(GOOD) + 60
    process = subprocess.Popen([sys.executable, "-m", "spancli", "scan", str(folder), "--out", str(out)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.rglob("*.result.json")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the scan exited before its first result was written"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert "run the same command again to resume" in output
    written = json.loads((out / "summary.json").read_text())
    assert written["interrupted"] is True
    done = [i for i in written["items"] if i["status"] == "ok"]
    assert 1 <= len(done) < total
    for item in done:
        assert (out / item["heatmap"]).is_file() and (out / item["overlay"]).is_file()
    assert not list(out.rglob("*.part"))   # no half-written file left behind


def _running_model_sha256() -> str:
    """The digest of the ONNX file the engine runs (span.onnx, or span.int8.onnx once its gate passed)."""
    from service.engine import running_manifest

    return running_manifest(get_settings()).sha256


def test_outputs_of_another_model_are_stale(first_scan):
    _, folder, out, _ = first_scan
    outputs = Outputs(out, "jpg")
    item = next(i for i in collect_inputs([str(folder)], out)[0] if i.key == "Nikon_D70.jpg")
    digest = sha256_file(item.path)
    model = _running_model_sha256()
    assert outputs.finished(item, digest, model).status == "skipped"
    assert outputs.finished(item, digest, "0" * 64) is None   # another model made them
    assert outputs.finished(item, "0" * 64, model) is None    # the photo changed since


def test_inputs_from_files_folders_and_globs(tmp_path):
    folder = make_folder(tmp_path)
    shutil.copy(EXIF / "Nikon_D70.jpg", folder / "Nikon_D70.PNG")  # same stem, other suffix
    odd = folder / "evidence.dat"
    odd.write_bytes(b"x")  # named explicitly: tried whatever its suffix
    out = folder / "results"  # an output folder inside the scanned one
    (out / "old").mkdir(parents=True)
    shutil.copy(EXIF / "Canon_40D.jpg", out / "old" / "x.overlay.jpg")

    inputs, root = collect_inputs([str(folder)], out)
    assert root == str(folder.absolute())
    assert [i.key for i in inputs] == sorted(["Canon_40D.jpg", "Nikon_D70.jpg", "Nikon_D70.PNG", "broken.jpg",
                                              "nested/deeper/Canon_40D.jpg"])  # nothing from results/, .hidden, notes.txt

    globbed, _ = collect_inputs([f"{folder}/**/Canon_*.jpg", str(odd), str(tmp_path / "missing.jpg"),
                                 f"{folder}/*.nothing"], out)
    found = {i.local.resolve(): i for i in globbed if i.error is None}
    assert set(found) == {(folder / "Canon_40D.jpg").resolve(), (folder / "nested/deeper/Canon_40D.jpg").resolve(),
                          odd.resolve()}
    assert len({i.key for i in found.values()}) == 3
    errors = [i for i in globbed if i.error]
    assert [Path(i.path).name for i in errors] == ["missing.jpg", "*.nothing"]


def test_nothing_to_scan_is_a_usage_error(tmp_path):
    result = scan(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "no image files found" in result.output
    assert scan(tmp_path, "--out", tmp_path / "out", "--overlay-format", "gif").exit_code == 2


def test_server_mode_matches_the_local_engine(first_scan, live_server, tmp_path):
    _, folder, local_out, _ = first_scan
    out = tmp_path / "out"
    top = ["Canon_40D.jpg", "Nikon_D70.jpg"]
    result = scan(f"{folder}/*.jpg", "--out", out, "--server", live_server, "--batch-size", "2", "--layers", "metadata")
    assert result.exit_code == 1, result.output
    items, local = summary(out), summary(local_out)
    assert sorted(items) == sorted([*top, "broken.jpg"])
    assert items["broken.jpg"]["status"] == "failed"
    assert items["broken.jpg"]["error_code"] == "corrupt_image"  # the server's own code and message
    for name in top:
        assert items[name]["status"] == "ok"
        assert items[name]["score"] == pytest.approx(local[name]["score"], abs=2e-3)
        assert (out / items[name]["heatmap"]).is_file() and (out / items[name]["overlay"]).is_file()
    # --layers with --server: the layers are computed here, from the file and the same decoder.
    assert items["Canon_40D.jpg"]["layers"]["metadata"]["summary"]["camera"] == items["Canon_40D.jpg"]["metadata_camera"]
    assert "Canon EOS 40D" in items["Canon_40D.jpg"]["metadata_camera"]
    assert json.loads((out / "summary.json").read_text())["backend"] == f"server {live_server}"

    # Same model on both sides (same ONNX sha256): the local scan's outputs count as done.
    resumed = _copy(local_out, tmp_path / "resumed")
    again = scan(folder, "--out", resumed, "--server", live_server)
    assert {n: summary(resumed)[n]["status"] for n in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert again.exit_code == 1


def test_unreachable_server_fails_clearly(tmp_path):
    folder = make_folder(tmp_path)
    result = scan(folder, "--out", tmp_path / "out", "--server", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in result.output


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_subset_gets_the_names_the_folder_got_and_merges_into_its_summary(first_scan, tmp_path):
    _, folder, first_out, _ = first_scan
    out = _copy(first_out, tmp_path / "out")
    before = summary(out)

    # One file, named on its own, into the folder's output: same name, so it is already done.
    one = scan(folder / "nested" / "deeper" / "Canon_40D.jpg", "--out", out)
    assert one.exit_code == 0, one.output   # broken.jpg failed earlier, but was not part of this run
    after = summary(out)
    assert sorted(after) == sorted(before)   # no row lost
    assert after["nested/deeper/Canon_40D.jpg"]["status"] == "skipped"
    assert after["nested/deeper/Canon_40D.jpg"]["name"] == "nested/deeper/Canon_40D.jpg"
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg", "broken.jpg"):   # untouched rows kept as they were
        assert after[name] == before[name]
    written = json.loads((out / "summary.json").read_text())
    assert written["this_run"] == {"ok": 0, "skipped": 1, "failed": 0}
    assert written["counts"] == {"ok": 2, "skipped": 1, "failed": 1}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.heatmap.png")) == sorted(
        f"{n}.heatmap.png" for n in GOOD)   # nothing analysed again under another name

    # A subfolder, forced to analyse again: its row is replaced, the others stay.
    sub = scan(folder / "nested", "--out", out, "--overwrite")
    assert sub.exit_code == 0, sub.output
    again = summary(out)
    assert sorted(again) == sorted(before) and again["nested/deeper/Canon_40D.jpg"]["status"] == "ok"
    assert again["nested/deeper/Canon_40D.jpg"]["score"] == before["nested/deeper/Canon_40D.jpg"]["score"]

    # A photo outside the folder this output is named by: a usage error, nothing written.
    outside = scan(EXIF / "Canon_40D.jpg", "--out", out)
    assert outside.exit_code == 2 and "outside the scan root" in outside.output
    assert summary(out) == again


def test_names_do_not_depend_on_the_neighbours(tmp_path):
    folder = tmp_path / "case"
    (folder / "gps").mkdir(parents=True)
    shutil.copy(EXIF / "Canon_40D.jpg", folder / "gps" / "DSCN0010.jpg")
    shutil.copy(EXIF / "Nikon_D70.jpg", folder / "gps" / "DSCN0010.png")   # same stem, beside it
    whole, root = collect_inputs([str(folder)])
    assert [i.key for i in whole] == ["gps/DSCN0010.jpg", "gps/DSCN0010.png"]
    alone, _ = collect_inputs([str(folder / "gps" / "DSCN0010.jpg")], root=root)
    assert [i.key for i in alone] == ["gps/DSCN0010.jpg"]


def test_exit_statuses_have_one_source():
    from service.scan_status import MEANINGS, ScanExit, exit_status_markdown

    assert [int(c) for c in ScanExit] == [0, 1, 2, 130]
    shown = " ".join(runner.invoke(app, ["scan", "--help"], terminal_width=400).output.split())
    for code in ScanExit:
        assert f"{int(code)} {MEANINGS[code]}" in shown
    assert exit_status_markdown() in (ROOT / "README.md").read_text()


def record_decision(record_path: Path) -> tuple[float, float]:
    """The decision threshold and peak-relative cut a scan record names (the model's operating
    point unless SPAN_THRESHOLD / SPAN_RELATIVE_CUT)."""
    record = json.loads(record_path.read_text())
    return float(record["threshold"]), float(record["relative_cut"])


# ----------------------------------------------------------------------------- span scan --layers


def _csv_rows(out: Path) -> tuple[list[str], dict[str, dict]]:
    with open(out / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), {row["name"]: row for row in reader}


def test_layers_are_written_beside_the_heatmaps_and_summarised(first_scan, tmp_path):
    """--layers on a folder whose heatmaps are done: the records lack the layers, so the photos are
    analysed again; each pixel layer's map lands beside the heatmap, the figures go into the records,
    summary.json and summary.csv; a layer that does not apply (a PNG is not a JPEG) says why."""
    from service.scan import SUMMARY_FIELDS

    _, folder, out, _ = first_scan
    folder, out = _copy(folder, tmp_path / "photos"), _copy(out, tmp_path / "out")
    Image.open(EXIF / "Nikon_D70.jpg").save(folder / "converted.png")   # a real photo, stored losslessly
    result = scan(folder, "--out", out, "--root", folder, "--layers", "ela,jpeg,metadata,c2pa")
    assert result.exit_code == 1, result.output   # broken.jpg still fails; no layer fails a scan
    items = summary(out)
    photos = [*GOOD, "converted.png"]
    assert {n: items[n]["status"] for n in photos} == dict.fromkeys(photos, "ok")

    header, rows = _csv_rows(out)
    assert header == [*SUMMARY_FIELDS, "ela_bright_fraction", "jpeg_quality", "jpeg_standard_tables",
                      "jpeg_grid_misaligned_fraction", "metadata_camera", "metadata_findings", "c2pa_verdict"]
    for name in photos:
        record = json.loads((out / f"{name}.result.json").read_text())
        layers = record["layers"]
        assert sorted(layers) == ["c2pa", "ela", "jpeg", "metadata"] and items[name]["layers"] == layers
        heatmap = Image.open(out / f"{name}.heatmap.png")
        ela = Image.open(out / f"{name}.ela.png")
        assert layers["ela"]["map"] == f"{Path(name).name}.ela.png"
        assert ela.mode == "L" and ela.size == heatmap.size == (items[name]["width"], items[name]["height"])
        assert not list(out.glob(f"{name}.metadata.png")) and not list(out.glob(f"{name}.c2pa.png"))   # no map
        # The CSV's headline columns are the records' figures.
        assert float(rows[name]["ela_bright_fraction"]) == layers["ela"]["summary"]["bright_fraction"]
        assert items[name]["ela_bright_fraction"] == layers["ela"]["summary"]["bright_fraction"]
        assert rows[name]["c2pa_verdict"] == items[name]["c2pa_verdict"] == "none"

    canon = json.loads((out / "Canon_40D.jpg.result.json").read_text())["layers"]
    assert (out / "Canon_40D.jpg.jpeg.png").is_file() and canon["jpeg"]["map"] == "Canon_40D.jpg.jpeg.png"
    assert int(rows["Canon_40D.jpg"]["jpeg_quality"]) == canon["jpeg"]["summary"]["implied_quality"] > 0
    assert rows["Canon_40D.jpg"]["metadata_camera"] == canon["metadata"]["summary"]["camera"]
    assert "Canon EOS 40D" in rows["Canon_40D.jpg"]["metadata_camera"]

    png = items["converted.png"]["layers"]["jpeg"]
    assert png["applicable"] is False and "JPEG" in png["reason"]   # not applicable, with its reason
    assert rows["converted.png"]["jpeg_quality"] == "" and not (out / "converted.png.jpeg.png").exists()
    assert rows["broken.jpg"]["ela_bright_fraction"] == ""

    # Resumable: records that have the layers asked for (a subset here) are skipped, figures read back.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = scan(folder, "--out", out, "--layers", "ela,jpeg")
    assert {n: summary(out)[n]["status"] for n in photos} == dict.fromkeys(photos, "skipped"), again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    assert _csv_rows(out)[1]["Canon_40D.jpg"] == rows["Canon_40D.jpg"] | {"status": "skipped"}

    # A layer's map gone since: that photo alone is done again.
    (out / "Canon_40D.jpg.ela.png").unlink()
    scan(folder, "--out", out, "--layers", "ela")
    statuses = {n: summary(out)[n]["status"] for n in photos}
    assert statuses == {**dict.fromkeys(photos, "skipped"), "Canon_40D.jpg": "ok"}
    assert Image.open(out / "Canon_40D.jpg.ela.png").size == (100, 68)
    # Redone with ela alone: its record no longer has a jpeg layer, so neither does the folder;
    # the photos that were skipped keep theirs.
    assert not (out / "Canon_40D.jpg.jpeg.png").exists() and (out / "Nikon_D70.jpg.jpeg.png").is_file()


def test_unknown_scan_layers_are_one_line_and_exit_2(tmp_path):
    from service.layers import ANALYSERS
    from service.scan_layers import COLUMNS, SCAN_LAYERS

    folder = make_folder(tmp_path)
    for asked in ("ela,nope", "span", "all,ela"):
        result = scan(folder, "--out", tmp_path / "out", "--layers", asked)
        assert result.exit_code == 2
        assert result.output.count("\n") == 1 and result.output.startswith("span scan: --layers: unknown layer(s)")
        assert "choose from ela, ghost, noise, jpeg, copymove, metadata, c2pa or 'all'" in result.output
    assert not (tmp_path / "out").exists()   # refused before anything was scanned
    assert set(COLUMNS) == set(SCAN_LAYERS) == set(ANALYSERS)   # every layer it accepts has summary columns
