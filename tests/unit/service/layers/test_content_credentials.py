"""Content Credentials (C2PA) read and validated by the c2pa-python library, on JPEGs signed here with
the library's own Builder and a certificate chain made in the test (a test CA and an end-entity
signer, EC P-256, ES256), and on the same files tampered with after signing."""
from __future__ import annotations

import base64
import datetime
import io

import numpy as np
import pytest
from PIL import Image

from service.layers import Photo, run_layer

c2pa = pytest.importorskip("c2pa", reason="c2pa-python is in the layers extra")
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "span-forensics tests")])


def _usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signer,
                         crl_sign=not signer, encipher_only=False, decipher_only=False)


@pytest.fixture(scope="module")
def signer_pem() -> tuple[bytes, bytes]:
    """(certificate chain PEM: signer then CA, private key PEM). C2PA refuses self-signed signers."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=7))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("span test CA")).issuer_name(_name("span test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_usage(signer=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(_name("span test signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(signer=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return chain, private


def _jpeg(seed: int = 0) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 96 * 128).reshape(96, 128)
    rgb = np.clip(np.stack([base, base[::-1], np.full_like(base, 120)], -1) + rng.normal(0, 6, (96, 128, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), rgb.astype(np.uint8)


def sign(data: bytes, signer_pem, actions: list[dict], ingredient: bytes | None = None) -> bytes:
    chain, private = signer_pem
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None))
    manifest = {"claim_generator_info": [{"name": "span-forensics tests", "version": "1.0"}], "title": "photo.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}]}
    with c2pa.Builder(manifest) as builder:
        if ingredient is not None:
            builder.add_ingredient({"title": "original.jpg", "relationship": "parentOf", "label": "original"}, "image/jpeg",
                                   io.BytesIO(ingredient))
        out = io.BytesIO()
        builder.sign(signer, "image/jpeg", io.BytesIO(data), out)
    return out.getvalue()


def analyse(data: bytes) -> dict:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    result = run_layer("c2pa", Photo(data=data, rgb=rgb, format="JPEG"))
    assert result.applicable, result.reason
    return result.summary


CAPTURED = {"action": "c2pa.created", "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}
OPENED = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["original"]}}  # the parent ingredient's label
EDITED = [CAPTURED, {"action": "c2pa.edited", "softwareAgent": {"name": "GIMP 2.10"}}, {"action": "c2pa.color_adjustments"}]


def test_a_signed_file_validates_and_names_its_signer_generator_and_actions(signer_pem):
    original, _ = _jpeg(1)
    data, _ = _jpeg(2)
    summary = analyse(sign(data, signer_pem, [OPENED, *EDITED[1:]], ingredient=original))
    assert summary["present"] and summary["validation_state"] == "Valid"
    # Intact, but the signer is a certificate made in this test: never reported as trusted.
    assert summary["verdict"] == "intact_untrusted_signer" and not summary["signer"]["trusted"]
    assert [f["code"] for f in summary["failures"]] == ["signingCredential.untrusted"]
    assert summary["signer"]["common_name"] == "span test signer" and summary["signer"]["issuer"] == "span-forensics tests"
    assert "span-forensics tests 1.0" in summary["claim_generator"]
    actions = {a["action"]: a for a in summary["actions"]}
    assert {"c2pa.opened", "c2pa.edited", "c2pa.color_adjustments"} <= set(actions)
    assert actions["c2pa.edited"]["software"] == "GIMP 2.10" and not summary["ai_generated"]
    assert summary["ingredients"][0]["title"] == "original.jpg"
    assert summary["ingredients"][0]["relationship"] == "parentOf"
    for thumbnail in (summary["ingredients"][0]["thumbnail_base64"], summary["thumbnail_base64"]):
        assert Image.open(io.BytesIO(base64.b64decode(thumbnail))).size[0] > 0  # the Builder made both


def test_ai_generated_actions_are_flagged(signer_pem):
    data, _ = _jpeg(3)
    summary = analyse(sign(data, signer_pem, [{"action": "c2pa.created", "digitalSourceType": AI_SOURCE}]))
    assert summary["ai_generated"] and summary["verdict"] == "intact_untrusted_signer"


def test_pixels_changed_after_signing_do_not_validate(signer_pem):
    data, _ = _jpeg(4)
    signed = bytearray(sign(data, signer_pem, EDITED))
    signed[-300] ^= 0x5A  # a byte of the entropy-coded image data, after the manifest
    summary = analyse(bytes(signed))
    assert summary["present"] and summary["verdict"] == "invalid" and summary["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in {f["code"] for f in summary["failures"]}
    assert "do NOT validate" in summary["message"] and not summary["signer"]["trusted"]


def test_a_signed_file_recompressed_keeps_no_valid_credentials(signer_pem):
    data, _ = _jpeg(5)
    signed = sign(data, signer_pem, EDITED)
    # Re-encoding the pixels while carrying the manifest bytes over (as a careless tool might):
    # the manifest's hash of the image no longer matches.
    image = Image.open(io.BytesIO(signed))
    app11 = [segment for marker, segment in image.applist if marker == "APP11"]
    assert app11, "the signed JPEG carries its manifest in APP11 segments"
    reencoded = io.BytesIO()
    image.convert("RGB").save(reencoded, format="JPEG", quality=80)
    raw = reencoded.getvalue()
    segments = b"".join(b"\xff\xeb" + (len(s) + 2).to_bytes(2, "big") + s for s in app11)
    summary = analyse(raw[:2] + segments + raw[2:])
    assert summary["verdict"] == "invalid"


def test_a_file_without_credentials_says_so():
    data, _ = _jpeg(6)
    summary = analyse(data)
    assert summary == {**summary, "present": False, "verdict": "none"}
    assert "no Content Credentials" in summary["message"]


def test_a_broken_file_is_not_called_a_broken_manifest(signer_pem):
    data, rgb = _jpeg(8)
    truncated = run_layer("c2pa", Photo(data=data[:600], rgb=rgb, format="JPEG"))
    assert not truncated.applicable and "could not be parsed" in truncated.reason
    signed = sign(data, signer_pem, EDITED)
    start = signed.index(b"jumdc2pa") + 40  # inside the store, after its description box
    garbled = bytearray(signed)
    garbled[start:start + 400] = bytes(400)  # the manifest store's boxes overwritten
    summary = run_layer("c2pa", Photo(data=bytes(garbled), rgb=rgb, format="JPEG")).summary
    assert summary["present"] and summary["verdict"] == "invalid"
