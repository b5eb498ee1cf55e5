"""Hostile input against the real server: every case ends in a 4xx JSON error or a valid
result, never a 5xx, a hang or memory beyond RSS_BOUND.

The cases are built in tests/hostile.py (bombs, truncations, polyglots, metadata floods,
odd shapes), plus the broken and hostile files of ../shared/data/photos/exif-samples, plus
request-level attacks: thousands of multipart parts, over-limit bodies with and without
Content-Length, wrong Content-Types. The server's resident memory is sampled all along.
"""
from __future__ import annotations

import base64
import io
import select
import socket
import time

import httpx
import pytest
from PIL import Image

import hostile
from spancore.testing import EXIF_SAMPLES, TEST_SERVER_ENV

# The server process may hold at most this much resident memory at any moment of the run.
# Budget: the model and runtime (0.6-1.1 GiB on CPU) plus one within-limit decompression
# bomb (64 M pixels) decoded and analysed, about 20 bytes per pixel at peak (1.3 GiB).
RSS_BOUND = 3 * 1024**3
CASE_TIMEOUT_S = 120  # a "hang" is an answer slower than this (inference is ~1-6 s here)
UPLOAD_LIMIT = int(TEST_SERVER_ENV["SPAN_MAX_UPLOAD_BYTES"])

HEIC_SAMPLE = EXIF_SAMPLES / "heic" / "samplefilehub.heif"
CASES = hostile.catalogue(HEIC_SAMPLE.read_bytes() if HEIC_SAMPLE.is_file() else None)
SHARED_HOSTILE = sorted(
    [EXIF_SAMPLES / "jpg" / "corrupted.jpg"]
    + [p for p in (EXIF_SAMPLES / "jpg" / "invalid").glob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
    + [p for p in (EXIF_SAMPLES / "jpg" / "tests").glob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
) if EXIF_SAMPLES.is_dir() else []


@pytest.fixture(scope="module")
def server(live_server_process):
    return live_server_process


def server_errors(url: str) -> dict[str, float]:
    """5xx answers counted by the server so far, by route and status (readiness 503s while warming excluded)."""
    counts = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("span_http_requests_total{") and 'status="5' in line and "/health/ready" not in line:
            labels, value = line.rsplit(" ", 1)
            counts[labels] = float(value)
    return counts


@pytest.fixture(scope="module")
def rss(server):
    sampler = hostile.RssSampler(server.process.pid)
    sampler.errors_before = server_errors(server.url)
    yield sampler
    sampler.stop()


@pytest.fixture(scope="module")
def client(server, rss):
    with httpx.Client(base_url=server.url, timeout=CASE_TIMEOUT_S) as http:
        yield http


def assert_json_error(response: httpx.Response) -> dict:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["code"] and isinstance(error["code"], str)
    assert error["message"] and isinstance(error["message"], str)
    return error


def assert_valid_result(response: httpx.Response) -> dict:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:300]}"
    answer = response.json()
    assert 0.0 <= answer["score"] <= 1.0
    assert 0.0 <= answer["tampered_fraction"] <= 1.0
    heatmap = Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png_base64"])))
    assert heatmap.mode == "L"
    assert heatmap.size == (answer["width"], answer["height"]) == (
        answer["metadata"]["width"], answer["metadata"]["height"])
    return answer


def post_case(client: httpx.Client, case: hostile.Case) -> httpx.Response:
    if case.raw:
        headers = {"Content-Type": case.content_type} if case.content_type else {}
        return client.post("/v1/localize?format=json", content=case.body, headers=headers)
    return client.post("/v1/localize?format=json", files={"image": (case.filename, case.body, "image/jpeg")})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_generated_hostile_file(client, case):
    started = time.monotonic()
    response = post_case(client, case)
    assert response.status_code < 500, f"{case.name}: {response.status_code} {response.text[:300]}"
    if case.expect == "reject" or (case.expect == "either" and response.status_code != 200):
        error = assert_json_error(response)
        if case.expect == "reject" and case.statuses:
            assert response.status_code in case.statuses, (case.name, response.status_code, error)
    else:
        assert_valid_result(response)
    assert time.monotonic() - started < CASE_TIMEOUT_S


@pytest.mark.skipif(not SHARED_HOSTILE, reason="shared data not found (set SPAN_SHARED_DATA)")
@pytest.mark.parametrize("path", SHARED_HOSTILE, ids=[p.name for p in SHARED_HOSTILE])
def test_shared_hostile_file(client, path):
    """The broken and hostile-metadata JPEGs of exif-samples: an error or a result, never a 5xx."""
    response = client.post("/v1/localize?format=json", files={"image": (path.name, path.read_bytes())})
    if response.status_code == 200:
        assert_valid_result(response)
    else:
        assert_json_error(response)


# ---------------------------------------------------------------------------- request-level attacks
def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostileboundary") -> tuple[bytes, str]:
    out = io.BytesIO()
    for name, filename, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if filename:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def test_thousands_of_form_fields(client):
    body, content_type = _multipart([(f"field{i}", None, b"x") for i in range(5000)])
    response = client.post("/v1/localize", content=body, headers={"Content-Type": content_type})
    assert_json_error(response)


def test_thousands_of_file_parts_to_localize(client):
    body, content_type = _multipart([("image", f"{i}.jpg", b"\xff\xd8") for i in range(3000)])
    response = client.post("/v1/localize", content=body, headers={"Content-Type": content_type})
    assert_json_error(response)


def test_thousands_of_file_parts_to_scan(client):
    body, content_type = _multipart([("images", f"{i}.jpg", b"\xff\xd8") for i in range(3000)])
    response = client.post("/v1/scan", content=body, headers={"Content-Type": content_type})
    assert assert_json_error(response)["code"] == "too_many_images"
    assert response.status_code == 413


def test_scan_of_hostile_files_fails_item_by_item(client):
    """A batch mixing bombs, garbage and one good image: 200, per-item errors, the good one analysed."""
    good = hostile.encode(hostile.photo(), "PNG")
    bad = [hostile.png_declaring(30000, 30000), b"", b"<svg/>", hostile.jpeg_declaring()]
    files = [("images", (f"{i}.bin", data)) for i, data in enumerate([*bad, good])]
    response = client.post("/v1/scan?include_heatmap=false", files=files)
    assert response.status_code == 200, response.text[:300]
    items = response.json()
    assert [item["index"] for item in items] == list(range(len(bad) + 1))
    assert all(item["error"]["code"] for item in items[: len(bad)])
    assert items[-1].get("error") is None and 0 <= items[-1]["score"] <= 1


def test_huge_headers_are_refused_and_cut_off(server):
    """Headers that never end: a JSON 431 (or a reset, if the client is still writing when
    the server closes) after a bounded number of bytes, instead of buffering megabytes."""
    sent, reply, closed_at = _stream(server, b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ",
                                     b"a" * 65536, cap=64 * 2**20)
    assert closed_at is not None, f"the server was still reading headers after {sent} bytes"
    # 64 KiB of headers, one 256 KiB socket read, and what the kernel buffers hold.
    assert closed_at <= 16 * 2**20, f"connection closed only after {closed_at} bytes"
    if reply:
        assert reply.startswith(b"HTTP/1.1 431") and b'"headers_too_large"' in reply, reply[:200]


def test_thousands_of_headers_within_the_size_limit_are_fine(client):
    assert client.get("/health/live", headers={f"X-H{i}": "v" for i in range(2000)}).status_code == 200


def test_declared_content_length_over_the_limit(client):
    body = b"\x00" * (UPLOAD_LIMIT + 1)
    response = client.post("/v1/localize", content=body, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    assert assert_json_error(response)["code"] == "payload_too_large"


def test_chunked_body_over_the_limit_without_content_length(client):
    """A body streamed in chunks (no Content-Length) is cut off at the limit with a JSON 413."""
    chunk = b"\xff" * 65536
    total = UPLOAD_LIMIT + 4 * len(chunk)

    def body():
        for _ in range(total // len(chunk)):
            yield chunk

    response = client.post("/v1/localize", content=body(), headers={"Content-Type": "image/jpeg"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert assert_json_error(response)["code"] == "payload_too_large"


def test_endless_chunked_body_is_answered_and_cut_off(server):
    """A client that streams without end gets its 413 and a closed connection after a
    bounded number of bytes: the server neither buffers nor drains it forever."""
    frame_data = b"\xff" * 65536
    sent, reply, closed_at = _stream(
        server, b"POST /v1/localize HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: image/jpeg\r\n\r\n", b"%x\r\n" % len(frame_data) + frame_data + b"\r\n", cap=40 * UPLOAD_LIMIT)
    assert reply.startswith(b"HTTP/1.1 413"), (reply[:200], sent)
    assert b'"payload_too_large"' in reply
    assert closed_at is not None, f"the server was still reading after {sent} bytes"
    # The limit, the bounded drain (16 MiB) and what socket buffers hold (a few MiB).
    assert closed_at <= UPLOAD_LIMIT + 24 * 2**20, f"connection closed only after {closed_at} bytes"


def _stream(server, head: bytes, frame: bytes, cap: int) -> tuple[int, bytes, int | None]:
    """Send `head`, then `frame` again and again (at most `cap` bytes, 60 s), reading as we go.
    Returns the bytes sent, the server's reply, and the bytes sent when the server closed
    the connection (None if it never did)."""
    port = int(server.url.rsplit(":", 1)[1])
    sent, reply, closed_at = 0, b"", None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + 60
        while sent < cap and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed_at = sent
                    break
                reply += data
            if writable:
                try:
                    sock.sendall(frame)
                except OSError:  # reset by the server: it stopped reading
                    closed_at = sent
                    break
                sent += len(frame)
    return sent, reply, closed_at


# ---------------------------------------------------------------------------- afterwards
def test_server_survived_with_bounded_memory(server, client, rss):
    """Runs last in this module: the process is alive, ready, answered no 5xx, and its RSS stayed bounded."""
    assert server.process.poll() is None
    assert client.get("/health/ready").status_code == 200
    peak = rss.stop()
    assert rss.samples > 10
    assert peak < RSS_BOUND, f"server RSS peaked at {peak / 2**20:.0f} MiB (bound {RSS_BOUND / 2**20:.0f} MiB)"
    assert server_errors(server.url) == rss.errors_before, "5xx answers during the hostile run"
    print(f"\nserver RSS peak during hostile inputs: {peak / 2**20:.0f} MiB over {rss.samples} samples")
