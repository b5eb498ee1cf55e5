"""The web page (service/static/) at `/`, mounted after the API so it never shadows it."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


class PageMount(Mount):
    """The web page at `/`, without shadowing the API: a wrong method on an API path stays a 405."""

    API_PREFIXES = ("/v1/", "/health/", "/metrics", "/docs", "/redoc", "/openapi.json")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and scope["path"].startswith(self.API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


def mount_page(app: FastAPI) -> None:
    if (STATIC_DIR / "index.html").is_file():
        app.router.routes.append(PageMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="static"))
