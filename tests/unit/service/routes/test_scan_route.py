"""service/routes/scan.py: what is refused before any image is analysed."""
from __future__ import annotations

from standins import StandInEngine

from service.routes import scan


def test_scan_needs_multipart_with_images_fields(client_for, committed_manifest):
    client, _ = client_for(scan.router, StandInEngine(committed_manifest))
    answer = client.post("/v1/scan", content=b"raw bytes")
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "not_multipart"
    answer = client.post("/v1/scan", files={"image": ("x.jpg", b"...")})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "missing_images"


def test_too_many_images_is_413(client_for, committed_manifest):
    client, _ = client_for(scan.router, StandInEngine(committed_manifest), max_batch_items=2)
    files = [("images", (f"{i}.jpg", b"...")) for i in range(3)]
    answer = client.post("/v1/scan", files=files)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_many_images"
