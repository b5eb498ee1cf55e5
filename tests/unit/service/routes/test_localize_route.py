"""service/routes/localize.py: admission before the body is read, and format negotiation.
The real decode-and-infer path is covered against a real server in tests/e2e/test_api_e2e.py."""
from __future__ import annotations

import pytest
from standins import StandInEngine

from service.routes import localize


@pytest.mark.parametrize("draining, engine_state, code", [
    (True, {}, "shutting_down"),
    (False, None, "not_ready"),
    (False, {"warmed": False}, "not_ready"),
    (False, {"has_capacity": False}, "overloaded"),
])
def test_refused_at_once_with_retry_after(client_for, committed_manifest, draining, engine_state, code):
    engine = None if engine_state is None else StandInEngine(committed_manifest, **engine_state)
    client, service = client_for(localize.router, engine, retry_after_s=4)
    if draining:
        service.begin_drain()
    answer = client.post("/v1/localize", content=b"never read")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == code
    assert answer.headers["retry-after"] == "4" and answer.headers["connection"] == "close"


def test_a_multipart_request_without_an_image_field_is_422(client_for, committed_manifest):
    client, _ = client_for(localize.router, StandInEngine(committed_manifest))
    answer = client.post("/v1/localize", files={"photo": ("x.jpg", b"...")})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "missing_image"


def test_an_unknown_format_is_422(client_for, committed_manifest):
    client, _ = client_for(localize.router, StandInEngine(committed_manifest))
    answer = client.post("/v1/localize?format=gif", content=b"...")
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
