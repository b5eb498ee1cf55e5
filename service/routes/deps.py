"""Dependencies the routes inject: the app's `Service` (settings, engine, admission state)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.admission import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
