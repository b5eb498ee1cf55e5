"""Per-client token buckets, held in this process.

Each client (an API key id, or a client address when keys are off) has a bucket of `burst`
tokens refilled at `per_minute / 60` tokens a second; a request takes one token. An empty
bucket means 429 with Retry-After: the seconds until the next token. Across replicas each
process counts alone, so a shared limit belongs to the ingress or proxy in front.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

# Buckets of idle clients are forgotten once this many exist (a full bucket carries no state).
_MAX_TRACKED = 10_000


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, client: str) -> float:
        """Take one token for `client`: 0.0 when the request may go on, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, then = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_TRACKED:
                self._forget_full(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop clients whose buckets have refilled: forgetting them changes nothing."""
        for client, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[client]


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, rounded up so a client that obeys it finds a token."""
    return str(max(1, math.ceil(wait_s)))
