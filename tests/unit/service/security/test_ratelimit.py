"""service/security/ratelimit.py: per-client token buckets on a fake clock."""
from __future__ import annotations

import pytest

from service.security.ratelimit import RateLimiter, retry_after_header


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_rate_with_the_wait_until_the_next_token():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)  # one token a second
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    clock.now += 60  # refills to the burst, not beyond
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0


def test_rate_zero_turns_the_limiter_off_and_retry_after_rounds_up():
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.acquire("a") == 0.0 for _ in range(1000))
    assert retry_after_header(0.01) == "1" and retry_after_header(1.2) == "2" and retry_after_header(3.0) == "3"


def test_idle_full_buckets_are_forgotten_so_many_addresses_cannot_grow_memory(monkeypatch):
    import service.security.ratelimit as ratelimit

    monkeypatch.setattr(ratelimit, "_MAX_TRACKED", 10)
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    for i in range(10):
        limiter.acquire(f"10.0.0.{i}")
    clock.now += 5  # every bucket has refilled
    limiter.acquire("busy")
    limiter.acquire("new")
    assert set(limiter._buckets) <= {"busy", "new"}
