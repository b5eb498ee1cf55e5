"""Unit tests of service/security: keys, the token bucket, the request id, the header policies."""
from __future__ import annotations

import json

import pytest

from service.security.headers import page_policy
from service.security.keys import ApiKeys, KeyConfigError
from service.security.ratelimit import RateLimiter, retry_after_header
from service.security.request_log import request_id_from, with_request_id


# ---------------------------------------------------------------------------- keys
def test_keys_are_identified_by_label_or_digest_prefix_and_held_only_as_digests():
    keys = ApiKeys(["newsroom:s3cret-one", "plain-key-two", " "])
    assert keys.required
    assert keys.identify("s3cret-one") == "newsroom"
    plain_id = keys.identify("plain-key-two")
    assert plain_id is not None and plain_id.startswith("key-") and len(plain_id) == 12
    assert keys.ids == ["newsroom", plain_id]
    for wrong in (None, "", "s3cret", "newsroom:s3cret-one", "S3CRET-ONE"):
        assert keys.identify(wrong) is None
    held = repr(keys) + repr(vars(keys))
    assert "s3cret-one" not in held and "plain-key-two" not in held


def test_a_colon_inside_a_key_that_is_not_a_label_stays_part_of_the_key():
    keys = ApiKeys(["abc/def:ghi"])  # '/' is not allowed in a label, so this is one key
    assert keys.identify("abc/def:ghi") is not None
    assert keys.identify("ghi") is None


def test_no_keys_means_open_and_duplicate_ids_are_refused():
    assert not ApiKeys([]).required and ApiKeys([]).identify("anything") is None
    with pytest.raises(KeyConfigError, match="'team'"):
        ApiKeys(["team:one", "team:two"])


def test_keys_file_lines_comments_and_settings_list_are_combined(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# the newsroom's key\nnewsroom:from-file\n\n  other-from-file  \n")
    keys = ApiKeys.from_settings("env:from-env", path)
    assert keys.identify("from-env") == "env"
    assert keys.identify("from-file") == "newsroom"
    assert keys.identify("other-from-file") is not None
    assert len(keys.ids) == 3
    with pytest.raises(KeyConfigError, match="cannot read"):
        ApiKeys.from_settings("", tmp_path / "missing")


# ---------------------------------------------------------------------------- token bucket
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


# ---------------------------------------------------------------------------- request id
def _scope(*headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "headers": list(headers)}


def test_a_plain_client_request_id_is_kept_and_anything_else_replaced():
    assert request_id_from(_scope((b"x-request-id", b"abc-123.4:5_6"))) == "abc-123.4:5_6"
    made = request_id_from(_scope())
    assert len(made) == 32 and made != request_id_from(_scope())
    for hostile in (b"a b", b"x" * 129, b"<script>", b"line\r\nbreak", b""):
        assert request_id_from(_scope((b"x-request-id", hostile))) != hostile.decode("latin-1")


def test_error_bodies_get_the_request_id_and_other_bodies_are_untouched():
    tagged = json.loads(with_request_id(b'{"error": {"code": "x", "message": "y"}}', "rid"))
    assert tagged == {"error": {"code": "x", "message": "y", "request_id": "rid"}}
    for body in (b'{"score": 0.5}', b"not json", b'[{"error": null}]'):
        assert with_request_id(body, "rid") == body


# ---------------------------------------------------------------------------- headers
def test_the_page_policy_allows_only_its_own_script_and_style():
    policy = dict(part.split(" ", 1) for part in page_policy("'none'").split("; "))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page_policy("'none'")
    assert "frame-ancestors 'self' https://intranet.example" in page_policy("'self' https://intranet.example")
