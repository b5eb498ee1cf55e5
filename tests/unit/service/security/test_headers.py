"""service/security/headers.py: the page's Content-Security-Policy."""
from __future__ import annotations

from service.security.headers import page_policy


def test_the_page_policy_allows_only_its_own_script_and_style():
    policy = dict(part.split(" ", 1) for part in page_policy("'none'").split("; "))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page_policy("'none'")
    assert "frame-ancestors 'self' https://intranet.example" in page_policy("'self' https://intranet.example")
