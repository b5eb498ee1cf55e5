"""API keys: parsed from settings, held only as sha256 digests, compared in constant time.

A key is written `KEY` or `LABEL:KEY`. Its id (the label, else `key-` and the first 8 hex digits
of its digest) is the only thing about it that logs and metrics may show.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# A label is a short identifier; anything else before a colon is part of the key itself.
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)


class KeyConfigError(ValueError):
    """The configured keys cannot be used (unreadable file, duplicate id, ...): the service does not start."""


@dataclass(frozen=True)
class _StoredKey:
    key_id: str
    digest: bytes


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys as digests. Empty: the service is open (`required` is False)."""

    def __init__(self, entries: Iterable[str] = ()):
        stored: list[_StoredKey] = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            label, sep, key = entry.partition(":")
            if not (sep and key and _LABEL.fullmatch(label)):
                label, key = "", entry
            digest = _digest(key)
            key_id = label or f"key-{digest.hex()[:8]}"
            if any(k.key_id == key_id for k in stored):
                raise KeyConfigError(f"two API keys have the id {key_id!r}; give each a distinct label")
            stored.append(_StoredKey(key_id, digest))
        self._keys = tuple(stored)

    @classmethod
    def from_settings(cls, api_keys: str, api_keys_file: Path | None) -> ApiKeys:
        """`api_keys` comma-separated, plus one key per line of `api_keys_file` (`#` starts a comment)."""
        entries = api_keys.split(",") if api_keys else []
        if api_keys_file is not None:
            try:
                text = api_keys_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise KeyConfigError(f"cannot read the API keys file {api_keys_file}: {exc}") from None
            entries += [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        return cls(entries)

    @property
    def required(self) -> bool:
        return bool(self._keys)

    @property
    def ids(self) -> list[str]:
        return [k.key_id for k in self._keys]

    def identify(self, presented: str | None) -> str | None:
        """The id of the key presented, or None. Every stored digest is compared (constant time
        each, no early exit), so the timing says nothing about which key came close."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for stored in self._keys:
            if hmac.compare_digest(stored.digest, digest):
                found = stored.key_id
        return found

    def __repr__(self) -> str:  # never the digests either
        return f"ApiKeys(ids={self.ids})"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer KEY`, else `X-API-Key: KEY`."""
    authorization = headers.get("authorization")
    if authorization:
        match = _BEARER.fullmatch(authorization.strip())
        if match:
            return match.group(1)
    return headers.get("x-api-key", "").strip() or None
