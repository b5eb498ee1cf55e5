"""service/routes/health.py: liveness always; readiness only when loaded, warm and not draining."""
from __future__ import annotations

from standins import StandInEngine

from service.routes import health


def test_live_answers_without_a_model(client_for):
    client, _ = client_for(health.router)
    assert client.get("/health/live").json() == {"status": "alive"}


def test_ready_says_why_not_until_warm_then_200_then_503_while_draining(client_for, committed_manifest):
    client, service = client_for(health.router, retry_after_s=7)
    answer = client.get("/health/ready")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "7"
    assert answer.json() == {"error": {"code": "not_ready", "message": "loading the model"}}
    service.engine = StandInEngine(committed_manifest, warmed=False)
    assert client.get("/health/ready").json()["error"]["message"] == "warming up"
    service.engine.warmed = True
    assert client.get("/health/ready").json() == {"status": "ready", "provider": "CPUExecutionProvider"}
    service.engine.provider_as_configured = False
    assert "not one of the configured" in client.get("/health/ready").json()["error"]["message"]
    service.engine.provider_as_configured = True
    service.begin_drain()
    assert client.get("/health/ready").json()["error"]["message"].startswith("draining")
