"""Content Credentials (C2PA): the signed provenance manifest a file may carry, read and validated
with the C2PA reference implementation (`c2pa-python`, bindings to c2pa-rs).

What the analyst gets: whether a manifest is there; the validation state and every failure
code; who signed (certificate issuer and subject, algorithm, time); the claim generator; the
actions (created, edited, AI-generated: IPTC digital source types); ingredients with their
thumbnails. The verdict is never "valid" when any failure besides an untrusted signer is
reported, and a signer is never called trusted: this service ships no trust list, so a
cryptographically intact manifest from an unknown signer reads "intact, signer not verified".
Remote manifests and OCSP are not fetched (the service reaches no network).
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

from service.layers.base import LayerResult, NotApplicable, Photo

NAME = "c2pa"
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "HEIF": "image/heif"}
# IPTC digital source types that mean a generative model made or changed the pixels.
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                   "compositeSynthetic")
UNTRUSTED = "signingCredential.untrusted"
MAX_THUMBNAIL_BYTES = 256 * 1024
STORE_SIGNATURE = b"jumdc2pa"


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise NotApplicable("c2pa-python is not installed (pip install 'span-forensics[layers]')") from None
    return c2pa


def _context(c2pa):
    settings = c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    return c2pa.Context(settings)


def read_manifest_store(data: bytes, image_format: str) -> tuple[dict | None, Any]:
    """(the manifest store as JSON, the open reader) or (None, None) when the file carries none."""
    c2pa = _c2pa()
    mime = MIME.get(image_format)
    if mime is None:
        raise NotApplicable(f"{image_format} files cannot carry Content Credentials that this library reads")
    # The C2PA manifest store's JUMBF description box ("jumd", then the store's type UUID, which
    # begins with the bytes "c2pa"): whether the file carries a store, whatever the library makes of it.
    carries_store = STORE_SIGNATURE in data
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _context(c2pa))
    except c2pa.C2paError as error:
        if not carries_store:  # the file itself did not parse (a truncated JPEG), and holds no store
            raise NotApplicable(f"the file could not be parsed for Content Credentials ({error})") from None
        # A store is there but cannot be read: that is a result (it does not validate), not an absence.
        return {"unreadable": f"{type(error).__name__}: {error}"}, None
    if reader is None:
        if carries_store:
            return {"unreadable": "the file carries a C2PA manifest store, but no manifest in it could be read"}, None
        return None, None
    return json.loads(reader.json()), reader


def analyse(photo: Photo) -> LayerResult:
    store, reader = read_manifest_store(photo.data, photo.format)
    if store is None:
        return LayerResult(name=NAME, applicable=True, summary={
            "present": False, "verdict": "none",
            "message": "no Content Credentials (C2PA manifest) in this file; most photos carry none, "
                       "and stripping them leaves no trace, so absence proves nothing",
        })
    if "unreadable" in store:
        return LayerResult(name=NAME, applicable=True, summary={
            "present": True, "verdict": "invalid",
            "message": f"a C2PA manifest is present but could not be read: {store['unreadable']}",
            "failures": [{"code": "manifest.unreadable", "explanation": store["unreadable"]}],
        })
    try:
        return LayerResult(name=NAME, applicable=True, summary=_describe(store, reader))
    finally:
        reader.close()


def _describe(store: dict, reader: Any) -> dict:
    active_label = store.get("active_manifest")
    manifests = store.get("manifests", {})
    active = manifests.get(active_label, {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = list(results.get("failure") or [])
    # Older reports put failures in validation_status only; keep every code from both.
    seen = {entry.get("code") for entry in failures}
    failures += [entry for entry in store.get("validation_status") or [] if entry.get("code") not in seen]
    state = store.get("validation_state") or ("Invalid" if failures else "Valid")
    serious = [entry for entry in failures if entry.get("code") != UNTRUSTED]
    if state == "Invalid" or serious:
        verdict = "invalid"
        message = "the Content Credentials do NOT validate: " + "; ".join(
            f"{entry.get('code')} ({entry.get('explanation', '')})" for entry in serious or failures)
    elif state == "Trusted":
        verdict = "trusted"
        message = "the manifest validates and its signer chains to a trusted root"
    else:
        verdict = "intact_untrusted_signer"
        message = ("the manifest validates (signature and hashes intact), but its signer is not verified: "
                   "this service has no trust list, so anyone could have made this certificate")
    signature = active.get("signature_info") or {}
    actions = []
    for assertion in active.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                agent = action.get("softwareAgent")
                actions.append({
                    "action": action.get("action"),
                    "software": agent.get("name") if isinstance(agent, dict) else agent,
                    "digital_source_type": action.get("digitalSourceType"),
                    "when": action.get("when"),
                })
    generated = [a for a in actions if any(kind in str(a["digital_source_type"] or "") for kind in AI_SOURCE_TYPES)]
    ingredients = []
    for ingredient in active.get("ingredients") or []:
        ingredients.append({
            "title": ingredient.get("title"),
            "relationship": ingredient.get("relationship"),
            "format": ingredient.get("format"),
            "has_manifest": bool(ingredient.get("active_manifest") or ingredient.get("manifest_data")),
            "thumbnail_base64": _resource(reader, ingredient.get("thumbnail")),
        })
    generator = active.get("claim_generator") or ", ".join(
        " ".join(str(part) for part in (info.get("name"), info.get("version")) if part)
        for info in active.get("claim_generator_info") or [])
    return {
        "present": True,
        "verdict": verdict,
        "message": message,
        "validation_state": state,
        "failures": [{"code": e.get("code"), "explanation": e.get("explanation")} for e in failures],
        "signer": {"issuer": signature.get("issuer"), "common_name": signature.get("common_name"),
                   "algorithm": signature.get("alg"), "time": signature.get("time"),
                   "trusted": verdict == "trusted"},
        "claim_generator": generator or None,
        "title": active.get("title"),
        "actions": actions,
        "ai_generated": bool(generated),
        "ingredients": ingredients,
        "thumbnail_base64": _resource(reader, active.get("thumbnail")),
        "n_manifests": len(manifests),
        "embedded": _safe(reader.is_embedded),
    }


def _resource(reader: Any, reference: dict | None) -> str | None:
    """A thumbnail the manifest carries, as standard base64 (JPEG or PNG), or None."""
    if not reference or not reference.get("identifier"):
        return None
    buffer = io.BytesIO()
    try:
        reader.resource_to_stream(reference["identifier"], buffer)
    except Exception:  # noqa: BLE001 - a missing resource leaves the thumbnail out, not the answer
        return None
    data = buffer.getvalue()
    return base64.b64encode(data).decode("ascii") if 0 < len(data) <= MAX_THUMBNAIL_BYTES else None


def _safe(call):
    try:
        return bool(call())
    except Exception:  # noqa: BLE001
        return None
