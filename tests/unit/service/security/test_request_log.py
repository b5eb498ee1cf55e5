"""service/security/request_log.py: the request id and the error bodies that carry it."""
from __future__ import annotations

import json

from service.security.request_log import request_id_from, with_request_id


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
