"""service/routes/page.py and telemetry.py, through the assembled app's routing (no model loaded)."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.routes import telemetry
from service.routes.page import mount_page


def test_the_page_is_served_at_root_without_shadowing_api_paths():
    app = FastAPI()
    app.include_router(telemetry.router)
    mount_page(app)
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/v1/localize").status_code == 404  # not the page's index.html
    answer = client.get("/metrics")
    assert answer.status_code == 200 and "span_ready" in answer.text
