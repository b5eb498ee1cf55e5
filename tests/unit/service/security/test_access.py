"""service/security/access.py and wiring.py through the assembled app (FastAPI's TestClient, no
model: past the key and the rate check, /v1/model answers 503 `not_ready`, which tells a request
let through from one refused)."""
from __future__ import annotations

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

KEYS = "alpha:alpha-secret,beta:beta-secret"


def client(**settings) -> TestClient:
    return TestClient(create_app(Settings(warmup=False, **settings)))


def test_the_keyed_routes_need_a_key_and_the_open_ones_do_not():
    api = client(api_keys=KEYS)
    for method, path in (("GET", "/v1/model"), ("POST", "/v1/localize"), ("POST", "/v1/analyze"),
                         ("POST", "/v1/scan")):
        refused = api.request(method, path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
        assert refused.json()["error"]["code"] == "missing_api_key"
    assert api.get("/v1/model", headers={"Authorization": "Bearer alpha-secret"}).json()["error"]["code"] == "not_ready"
    assert api.get("/v1/model", headers={"X-API-Key": "beta-secret"}).json()["error"]["code"] == "not_ready"
    assert api.get("/v1/model", headers={"X-API-Key": "gamma"}).json()["error"]["code"] == "invalid_api_key"
    assert api.get("/health/live").status_code == 200
    assert api.get("/metrics").status_code == 200
    assert client(api_keys=KEYS, metrics_require_key=True).get("/metrics").status_code == 401


def test_without_keys_everything_is_open():
    assert client().get("/v1/model").json()["error"]["code"] == "not_ready"


def test_the_rate_limit_is_per_key_and_counted_by_key_id():
    api = client(api_keys=KEYS, rate_limit_per_minute=1, rate_limit_burst=2)
    alpha, beta = {"X-API-Key": "alpha-secret"}, {"X-API-Key": "beta-secret"}
    assert [api.get("/v1/model", headers=alpha).status_code for _ in range(3)] == [503, 503, 429]
    refused = api.get("/v1/model", headers=alpha)
    assert refused.json()["error"]["code"] == "rate_limited" and 1 <= int(refused.headers["retry-after"]) <= 60
    assert api.get("/v1/model", headers=beta).status_code == 503
    assert api.get("/health/live").status_code == 200  # open routes take no token
    assert 'span_rate_limited_total{key_id="alpha"}' in api.get("/metrics").text


def test_the_openapi_document_names_the_keys_and_the_new_answers():
    document = client(api_keys=KEYS).get("/openapi.json").json()
    assert {s["type"] for s in document["components"]["securitySchemes"].values()} == {"http", "apiKey"}
    localize = document["paths"]["/v1/localize"]["post"]
    assert {"401", "429"} <= set(localize["responses"]) and localize["security"]
    assert "security" not in document["paths"]["/health/live"]["get"]
    assert "request_id" in document["components"]["schemas"]["ErrorDetail"]["properties"]


def test_every_answer_has_a_request_id_and_the_security_headers():
    api = client(api_keys=KEYS)
    refused = api.get("/v1/model", headers={"X-Request-ID": "case-42"})
    assert refused.headers["x-request-id"] == "case-42" and refused.json()["error"]["request_id"] == "case-42"
    missing = api.get("/nowhere")
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
    for answer in (refused, missing, api.get("/health/live")):
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
