"""A stand-in engine for route tests (imported as `standins`: this folder is on sys.path)."""
from __future__ import annotations

from dataclasses import dataclass, field

from spancore.weights import WeightsManifest


@dataclass
class StandInEngine:
    """What the routes read of an engine; no inference."""

    manifest: WeightsManifest
    warmed: bool = True
    has_capacity: bool = True
    provider: str = "CPUExecutionProvider"
    provider_as_configured: bool = True
    providers_in_use: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
