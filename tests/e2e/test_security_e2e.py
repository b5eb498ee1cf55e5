"""Who may call the service, against real `span serve` processes: API keys in both headers,
per-key rate limits, the request id, security headers, and logs that hold no key and no image."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import httpx
import pytest

from spancore.testing import EXIF_SAMPLES, ROOT, TEST_SERVER_ENV, running_server

PHOTO = EXIF_SAMPLES / "jpg" / "Canon_40D.jpg"  # 100x68, EXIF camera "Canon EOS 40D", software "GIMP 2.4.5"
ALPHA, BETA, BURST_A, BURST_B = "alpha-Zq81-secret", "beta-Wx42-secret", "burst-a-Kp3-secret", "burst-b-Lm7-secret"
KEYS = [f"alpha:{ALPHA}", BETA, f"burst-a:{BURST_A}", f"burst-b:{BURST_B}"]
RATE_PER_MINUTE, BURST = 6, 4  # one token every 10 s: a burst of 5 in a row always trips it
TIMEOUT = httpx.Timeout(120.0)

pytestmark = pytest.mark.skipif(not PHOTO.is_file(), reason=f"shared data not found at {EXIF_SAMPLES}")


@pytest.fixture(scope="module")
def keyed():
    env = {**TEST_SERVER_ENV, "SPAN_API_KEYS": ",".join(KEYS), "SPAN_RATE_LIMIT_PER_MINUTE": str(RATE_PER_MINUTE),
           "SPAN_RATE_LIMIT_BURST": str(BURST)}
    with running_server(env) as server:
        yield server


@pytest.fixture(scope="module")
def api(keyed):
    with httpx.Client(base_url=keyed.url, timeout=TIMEOUT) as client:
        yield client


def _localize(api: httpx.Client, headers: dict) -> httpx.Response:
    return api.post("/v1/localize", files={"image": ("photo.jpg", PHOTO.read_bytes(), "image/jpeg")},
                    params={"format": "json"}, headers=headers)


def _assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]  # a user can quote it
    return error


def test_no_key_and_a_wrong_key_are_401_with_www_authenticate(api):
    response = _localize(api, {})
    _assert_error(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    for headers in ({"Authorization": "Bearer not-a-key"}, {"X-API-Key": "not-a-key"},
                    {"Authorization": f"Bearer {ALPHA}x"}, {"Authorization": f"Basic {ALPHA}"}):
        response = _localize(api, headers)
        code = "missing_api_key" if headers.get("Authorization", "").startswith("Basic") else "invalid_api_key"
        _assert_error(response, 401, code)
        assert response.headers["www-authenticate"] == "Bearer"
    _assert_error(api.get("/v1/model"), 401, "missing_api_key")
    _assert_error(api.post("/v1/scan", files=[("images", ("a.jpg", PHOTO.read_bytes()))]), 401, "missing_api_key")


def test_a_right_key_in_either_header_is_served(api):
    by_bearer = _localize(api, {"Authorization": f"Bearer {ALPHA}"})
    assert by_bearer.status_code == 200, by_bearer.text
    assert by_bearer.json()["width"] == 100 and by_bearer.json()["metadata"]["camera"] == "Canon EOS 40D"
    by_header = api.get("/v1/model", headers={"X-API-Key": BETA})
    assert by_header.status_code == 200 and by_header.json()["name"]


def test_an_unauthenticated_upload_is_refused_readably_before_it_is_read(api):
    body = os.urandom(5 * 1024 * 1024)  # under the upload limit: the 401 is about the key, not the size
    response = api.post("/v1/localize", content=body, headers={"Content-Type": "application/octet-stream"})
    _assert_error(response, 401, "missing_api_key")


def test_span_scan_sends_its_key_to_the_server(keyed, tmp_path):
    from typer.testing import CliRunner

    from spancli.main import app

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "photo.jpg").write_bytes(PHOTO.read_bytes())
    runner = CliRunner()
    refused = runner.invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "a"), "--server", keyed.url],
                            env={"SPAN_API_KEY": ""}, catch_exceptions=False)
    assert refused.exit_code == 1 and "needs an API key" in refused.output
    served = runner.invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "b"), "--server", keyed.url],
                           env={"SPAN_API_KEY": BETA}, catch_exceptions=False)
    assert served.exit_code == 0, served.output
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["items"][0]["score"] is not None


def test_health_metrics_and_the_page_stay_open(api):
    for path in ("/health/live", "/health/ready", "/metrics", "/", "/app.js", "/openapi.json"):
        assert api.get(path).status_code == 200, path
    schemes = api.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}  # /docs offers "Authorize"


def test_one_key_over_its_burst_gets_429_while_another_key_is_served(api):
    statuses = [api.get("/v1/model", headers={"X-API-Key": BURST_A}).status_code for _ in range(BURST + 1)]
    assert statuses[:BURST] == [200] * BURST and statuses[BURST] == 429, statuses
    refused = api.get("/v1/model", headers={"Authorization": f"Bearer {BURST_A}"})
    error = _assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60 // RATE_PER_MINUTE, refused.headers
    assert "minute" in error["message"]
    assert api.get("/v1/model", headers={"X-API-Key": BURST_B}).status_code == 200  # untouched
    assert api.get("/health/ready").status_code == 200  # open routes are not counted
    metrics = api.get("/metrics").text
    assert 'span_rate_limited_total{key_id="burst-a"} 2.0' in metrics
    assert 'key_id="burst-b"' not in metrics


def test_the_request_id_round_trips_and_a_hostile_one_is_replaced(api):
    answer = api.get("/health/live", headers={"X-Request-ID": "case-1234.a_b:c"})
    assert answer.headers["x-request-id"] == "case-1234.a_b:c"
    error = _assert_error(api.get("/v1/model", headers={"X-Request-ID": "case-5678"}), 401, "missing_api_key")
    assert error["request_id"] == "case-5678"
    replaced = api.get("/health/live", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert replaced.headers["x-request-id"] != "<script>alert(1)</script>"
    assert len(replaced.headers["x-request-id"]) == 32
    made = api.get("/nowhere")  # FastAPI's own 404 carries one too
    _assert_error(made, 404, "not_found")


def test_security_headers_on_the_page_and_the_api(api):
    for path in ("/", "/v1/model", "/health/live"):
        headers = api.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        policy = headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy
    assert "access-control-allow-origin" not in api.get("/v1/model", headers={"Origin": "https://evil.example"}).headers
    assert "cdn.jsdelivr.net" in api.get("/docs").headers["content-security-policy"]  # Swagger UI's own policy


def test_request_logs_are_json_lines_without_keys_or_image_contents(api, keyed):
    _localize(api, {"Authorization": f"Bearer {ALPHA}", "X-Request-ID": "log-check-1"})
    log = keyed.log()
    for secret in (ALPHA, BETA, BURST_A, BURST_B):
        assert secret not in log
    photo = PHOTO.read_bytes()
    for text in ("Canon EOS 40D", "GIMP 2.4.5", base64.b64encode(photo[2000:2048]).decode(), photo[2000:2048].hex()):
        assert text not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["request_id"] == "log-check-1"]
    assert len(mine) == 1
    assert mine[0]["route"] == "/v1/localize" and mine[0]["status"] == 200 and mine[0]["key_id"] == "alpha"
    assert mine[0]["image"] == "100x68" and mine[0]["bytes_in"] > len(photo) and mine[0]["bytes_out"] > 0
    assert mine[0]["latency_ms"] > 0
    assert {line["status"] for line in lines} >= {200, 401, 404, 429}
    assert "API keys required on /v1/*: 4 key(s), ids alpha, key-" in log


def test_keys_from_a_file_metrics_behind_a_key_frame_ancestors_and_cors(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# mounted as a secret\nprometheus:scrape-Qe5-secret\n")
    env = {**TEST_SERVER_ENV, "SPAN_API_KEYS_FILE": str(keys_file), "SPAN_METRICS_REQUIRE_KEY": "true",
           "SPAN_FRAME_ANCESTORS": "'self' https://intranet.example", "SPAN_CORS_ORIGINS": '["https://newsroom.example"]'}
    with running_server(env, wait_for="/health/live") as server, httpx.Client(base_url=server.url) as client:
        _assert_error(client.get("/metrics"), 401, "missing_api_key")
        assert client.get("/metrics", headers={"Authorization": "Bearer scrape-Qe5-secret"}).status_code == 200
        assert "frame-ancestors 'self' https://intranet.example" in client.get("/").headers["content-security-policy"]
        preflight = client.options("/v1/localize", headers={
            "Origin": "https://newsroom.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://newsroom.example"
        allowed = client.get("/health/live", headers={"Origin": "https://newsroom.example"})
        exposed = {name.strip().lower() for name in allowed.headers["access-control-expose-headers"].split(",")}
        assert {"x-score", "x-image-threshold", "x-relative-cut", "x-clones-found"} <= exposed  # the answer's headers
        other = client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        assert "scrape-Qe5-secret" not in server.log()


def test_an_unreadable_keys_file_stops_span_serve_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "spancli", "serve", "--port", "1"], cwd=ROOT,
                            env={**os.environ, "SPAN_API_KEYS_FILE": str(tmp_path / "missing")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("span serve: cannot read the API keys file")


def test_the_open_session_server_says_so_once(live_server_process):
    assert live_server_process.log().count("no API keys configured") == 1
