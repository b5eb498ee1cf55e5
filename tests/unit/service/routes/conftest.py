"""One router at a time through FastAPI's TestClient: a small app with the real error handlers
and a `Service` whose engine is a stand-in (no model, no server process)."""
from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from service.admission import Service
from service.errors import add_error_handlers
from service.settings import REPO_ROOT, Settings
from spancore.weights import WeightsManifest, load_manifest
from standins import StandInEngine


@pytest.fixture(scope="session")
def committed_manifest() -> WeightsManifest:
    return load_manifest(REPO_ROOT / "weights")


@pytest.fixture
def client_for():
    """client_for(router, engine=None, **settings) -> (TestClient, Service)."""
    def build(router: APIRouter, engine: StandInEngine | None = None, **settings) -> tuple[TestClient, Service]:
        service = Service(Settings(warmup=False, **settings), engine)
        if engine is not None:
            engine.settings = service.settings
        app = FastAPI()
        app.state.service = service
        add_error_handlers(app, service.settings)
        app.include_router(router)
        return TestClient(app), service

    return build
