"""A stand-in engine for route tests (imported as `standins`: this folder is on sys.path)."""
from __future__ import annotations

from dataclasses import dataclass, field

from service.settings import Settings
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
    settings: Settings | None = None  # the service's, set by client_for as the real engine holds its own

    @property
    def threshold(self) -> float:
        return self.manifest.decision_threshold(self.settings.threshold if self.settings else None)

    @property
    def image_threshold(self) -> float:
        return self.manifest.decision_image_threshold(self.settings.image_threshold if self.settings else None,
                                                      self.threshold)

    @property
    def relative_cut(self) -> float:
        return self.manifest.decision_relative_cut(self.settings.relative_cut if self.settings else None)
