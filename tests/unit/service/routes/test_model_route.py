"""service/routes/model.py: the manifest's description plus where and how the model runs."""
from __future__ import annotations

from standins import StandInEngine

from service.routes import model


def test_model_is_503_while_loading(client_for):
    client, _ = client_for(model.router, retry_after_s=3)
    answer = client.get("/v1/model")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "not_ready"
    assert answer.headers["retry-after"] == "3" and answer.headers["connection"] == "close"


def test_model_describes_the_manifest_and_the_settings(client_for, committed_manifest):
    client, _ = client_for(model.router, StandInEngine(committed_manifest), threshold=0.3,
                           relative_cut=0.0, large_image_policy="tile")
    answer = client.get("/v1/model").json()
    assert answer["relative_cut"] == 0.0 and answer["operating_relative_cut"] == committed_manifest.relative_cut
    assert answer["sha256"] == committed_manifest.sha256 and answer["trained"] == committed_manifest.trained
    assert answer["threshold"] == 0.3 and answer["large_image_policy"] == "tile"
    assert answer["provider"] == "CPUExecutionProvider" and answer["int8_gate"] == committed_manifest.int8_gate()[1]
