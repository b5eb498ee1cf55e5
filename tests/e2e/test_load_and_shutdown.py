"""Load, overload, slow clients and SIGTERM against a real server with small limits.

One server for the module, configured so each behaviour is cheap to provoke: a queue of
2 images, 64x64 working size, 1 s Retry-After, short header/body timeouts, 3 s drain
delay. The SIGTERM test stops it, so it runs last. Load figures are printed, not asserted
(speed belongs to bench/load.py); what is asserted is behaviour: no lost request, no 5xx
other than 503-with-Retry-After, 503s faster than any inference, recovery, a clean exit.
"""
from __future__ import annotations

import asyncio
import json
import select
import signal
import socket
import threading
import time

import httpx
import pytest

import hostile
from service.admission import PixelBudget
from service.engine import Overloaded
from bench.load import run_load, sample_jpeg
from spancore.testing import running_server

QUEUE_SIZE = 2
BOMB_SIDE = 6000  # a 45 KB PNG that inflates to 36 M pixels
BOMB_PIXELS = BOMB_SIDE * BOMB_SIDE
MiB = 2**20
BODY_BUDGET = 8 * MiB  # upload bytes held at once by all requests together
HEADER_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 6.0
DRAIN_DELAY_S = 3.0
GRACE_S = 30.0
SERVER_ENV = {
    "SPAN_QUEUE_SIZE": str(QUEUE_SIZE),
    "SPAN_MAX_BATCH_SIZE": "2",
    "SPAN_MAX_WORKING_PIXELS": str(64 * 64),
    "SPAN_RETRY_AFTER_S": "1",
    "SPAN_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
    "SPAN_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "SPAN_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    "SPAN_DRAIN_DELAY_S": str(DRAIN_DELAY_S),
    "SPAN_SHUTDOWN_GRACE_S": str(GRACE_S),
    "SPAN_MAX_PIXELS": str(BOMB_PIXELS),
    "SPAN_MAX_PIXELS_IN_FLIGHT": str(BOMB_PIXELS),
    "SPAN_MAX_BODY_BYTES_IN_FLIGHT": str(BODY_BUDGET),
}
IMAGE = sample_jpeg(64, 48)


@pytest.fixture(scope="module")
def server():
    with running_server(SERVER_ENV) as process:
        yield process


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or
              line.startswith(name + "{")]
    return sum(values)


def localize(url: str, body: bytes = IMAGE, timeout: float = 120) -> httpx.Response:
    return httpx.post(url + "/v1/localize?format=json", content=body, timeout=timeout)


def test_load_within_capacity_loses_nothing(server):
    """As many clients as the queue holds: every request answered 200, none lost."""
    report = asyncio.run(run_load(server.url, IMAGE, clients=QUEUE_SIZE, requests=8, duration_s=90,
                                  path="/v1/localize?format=json"))
    print("\nload within capacity:", json.dumps(report.as_json()))
    assert report.transport_errors == {}
    assert report.other_5xx == 0
    assert report.sent == report.ok + report.rejected_503
    assert report.ok >= 1
    # A client only sends its next request after its answer, so the queue never overflows here.
    assert report.rejected_503 == 0, report.statuses


def test_overload_gives_fast_503s_with_retry_after_then_recovers(server):
    rejections_before = metric(server, "span_queue_rejections_total")
    report = asyncio.run(run_load(server.url, IMAGE, clients=6 * QUEUE_SIZE, requests=36, duration_s=90,
                                  path="/v1/localize?format=json"))
    print("\noverload:", json.dumps(report.as_json()))
    assert report.transport_errors == {}
    assert report.other_5xx == 0, report.statuses
    assert set(report.statuses) <= {"200", "503"}, report.statuses
    assert report.ok >= QUEUE_SIZE
    assert report.rejected_503 >= 1
    assert report.rejected_503_with_retry_after == report.rejected_503
    # Fast: refusing takes less than the quickest inference (and well under a second).
    assert report.latency_503_s["p99"] < max(1.0, report.latency_ok_s["p50"])
    assert metric(server, "span_queue_rejections_total") - rejections_before >= report.rejected_503
    # Recovery: once the burst is over the queue is empty and requests succeed again.
    deadline = time.monotonic() + 30
    while metric(server, "span_queue_depth") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(server, "span_queue_depth") == 0
    assert httpx.get(server.url + "/health/ready", timeout=10).status_code == 200
    for _ in range(2):
        assert localize(server.url).status_code == 200


class _SlowClients:
    """Sockets that trickle one byte at a time: slowloris headers, or bodies far slower than declared."""

    def __init__(self, port: int, headers: int, bodies: int):
        self.sockets: dict[socket.socket, dict] = {}
        for i in range(headers + bodies):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            if i < headers:
                pending = b"POST /v1/localize HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
            else:
                sock.sendall(b"POST /v1/localize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: 1000000\r\n\r\n")
                pending = b"\xff" * 1_000_000
            self.sockets[sock] = {"kind": "header" if i < headers else "body", "pending": pending,
                                  "opened": time.monotonic(), "closed": None, "reply": b""}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.25):
            for sock, state in self.sockets.items():
                if state["closed"] is not None:
                    continue
                try:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        data = sock.recv(65536)
                        state["reply"] += data
                        if not data:
                            raise ConnectionResetError
                    sock.send(state["pending"][:1])
                    state["pending"] = state["pending"][1:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    state["closed"] = time.monotonic() - state["opened"]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()

    def states(self, kind: str) -> list[dict]:
        return [s for s in self.sockets.values() if s["kind"] == kind]


def test_slow_clients_do_not_starve_others_and_are_cut_off(server):
    slow = _SlowClients(port_of(server), headers=20, bodies=20)
    try:
        started = time.monotonic()
        answers = [localize(server.url, timeout=60) for _ in range(3)]
        served_in = time.monotonic() - started
        print(f"\n3 requests beside 40 slow clients: {served_in:.1f} s")
        assert [a.status_code for a in answers] == [200, 200, 200]
        # Every slow client is cut off by the server: headers after the header timeout,
        # bodies with a JSON 408 after the body timeout.
        deadline = time.monotonic() + max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 10
        while time.monotonic() < deadline and any(s["closed"] is None for s in slow.sockets.values()):
            time.sleep(0.2)
    finally:
        slow.stop()
    headers, bodies = slow.states("header"), slow.states("body")
    assert all(s["closed"] is not None for s in headers), "slowloris headers were never cut off"
    assert max(s["closed"] for s in headers) < HEADER_TIMEOUT_S + 5
    assert all(s["closed"] is not None for s in bodies), "slow bodies were never cut off"
    assert max(s["closed"] for s in bodies) < BODY_TIMEOUT_S + 5
    for state in bodies:
        assert state["reply"].startswith(b"HTTP/1.1 408"), state["reply"][:200]
        assert b'"request_timeout"' in state["reply"]
    assert httpx.get(server.url + "/health/ready", timeout=10).status_code == 200


def test_stalled_uploads_cannot_hold_more_than_the_body_budget(server):
    """Uploads that send most of their body and stall hold memory until the body timeout.
    All together they may hold SPAN_MAX_BODY_BYTES_IN_FLIGHT; past it: 503 + Retry-After,
    from the declared Content-Length or while a chunked body streams. Closing them frees it."""
    port = port_of(server)
    stalled = []
    for _ in range(3):  # 3 x 2.5 MiB received of 3 MiB declared: 7.5 of 8 MiB held
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /v1/localize HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: %d\r\n\r\n" % (3 * MiB) + b"\xff" * (5 * MiB // 2))
        stalled.append(sock)
    try:
        time.sleep(1.0)  # let the server take in what the stalled uploads sent
        declared = localize(server.url, body=IMAGE + b"\x00" * (3 * MiB), timeout=30)
        assert declared.status_code == 503, declared.text[:200]
        assert declared.json()["error"]["code"] == "overloaded" and declared.headers["retry-after"] == "1"

        def chunks():
            for _ in range(8):
                yield b"\xff" * (MiB // 4)

        streamed = httpx.post(server.url + "/v1/localize", content=chunks(), timeout=30)
        assert streamed.status_code == 503 and streamed.json()["error"]["code"] == "overloaded"
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 10
    while localize(server.url).status_code != 200:
        assert time.monotonic() < deadline, "the budget was not released when the stalled uploads closed"
        time.sleep(0.5)
    # Clients that hang up mid-upload are counted as 499, not as server errors, and log no traceback.
    assert metric(server, 'span_http_requests_total{method="POST",route="/v1/localize",status="499"}') >= 3
    assert metric(server, 'span_http_requests_total{method="POST",route="/v1/localize",status="500"}') == 0
    assert "Traceback" not in server.log()


def test_pixel_budget_refuses_or_waits_when_full():
    budget = PixelBudget(100)

    async def scenario() -> list[str]:
        events = []
        async with budget.hold(80, wait=False, retry_after_s=1):
            with pytest.raises(Overloaded, match="pixels in flight"):
                async with budget.hold(30, wait=False, retry_after_s=1):
                    pass
            async with budget.hold(20, wait=False, retry_after_s=1):  # fits beside the 80
                events.append("fit")

            async def waiter() -> None:
                async with budget.hold(500, wait=True, retry_after_s=1):  # capped at the limit
                    events.append(f"waited, held {budget.held}")

            task = asyncio.create_task(waiter())
            await asyncio.sleep(0.05)
            assert not task.done() and budget.held == 80
            events.append("released")
        await task
        assert budget.held == 0
        return events

    assert asyncio.run(scenario()) == ["fit", "released", "waited, held 100"]


def test_concurrent_decompression_bombs_stay_within_the_pixel_budget(server):
    """Six small PNGs that each inflate to 36 M pixels, sent at once. The pixel budget
    (SPAN_MAX_PIXELS_IN_FLIGHT = SPAN_MAX_PIXELS = one bomb) lets one in and answers the others 503 with
    Retry-After before decoding them, so memory stays at one bomb's worth, not six."""
    bomb = hostile.png_deflate_bomb(BOMB_SIDE, BOMB_SIDE)
    sampler = hostile.RssSampler(server.process.pid)
    base = sampler.peak

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/localize", content=bomb) for _ in range(6)))

    answers = asyncio.run(burst())
    peak = sampler.stop()
    statuses = sorted(a.status_code for a in answers)
    print(f"\n6 concurrent {BOMB_SIDE}x{BOMB_SIDE} bombs: {statuses}, RSS {base / 2**20:.0f} -> "
          f"{peak / 2**20:.0f} MiB")
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    assert all("retry-after" in a.headers for a in answers if a.status_code == 503)
    # One bomb decoded and analysed costs 20-30 bytes per pixel at peak; two would be ~55.
    assert peak - base < 40 * BOMB_PIXELS, f"RSS grew by {(peak - base) / 2**20:.0f} MiB"


@pytest.fixture(params=["httptools", "h11"])
def tiny_server(request):
    """uvicorn in a thread with a 1 s header deadline on either of its HTTP parsers, serving a tiny app."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from service.protections import header_timeout_protocol

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    base = HttpToolsProtocol if request.param == "httptools" else H11Protocol
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off",
                            http=header_timeout_protocol(1.0, 4096, base=base), timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield server.servers[0].sockets[0].getsockname()[1], request.param
    server.should_exit = True
    thread.join(10)


def _read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float | None]:
    started, data = time.monotonic(), b""
    sock.settimeout(0.1)
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, time.monotonic() - started
        if not chunk:
            return data, time.monotonic() - started
        data += chunk
    return data, None


def test_header_deadline_and_size_on_both_parsers(tiny_server):
    port, parser = tiny_server
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    # Keep-alive and pipelining: answered, and the connection is not cut under a request.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request + request)
        time.sleep(0.5)
        sock.sendall(request)
        data, closed = _read_until_closed(sock, 0.8)
        assert data.count(b"HTTP/1.1 200") == 3 and closed is None, data
        data, closed = _read_until_closed(sock, 3)  # idle after its answers: closed by the header deadline
        assert closed is not None and closed < 2.0
    # An answer sent before the request's body has all arrived (as a 4xx can be): the rest of
    # that body is not mistaken for the next request's headers.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + b"a" * 1000)
        time.sleep(0.3)
        sock.sendall(b"a" * 299_000 + request)
        data, _ = _read_until_closed(sock, 0.8)
        assert b" 431 " not in data, data[:300]
        assert data.startswith(b"HTTP/1.1 200")
        if parser == "httptools":  # h11 may close instead of reusing a connection answered early
            assert data.count(b"HTTP/1.1 200") == 2, data[:300]
    # Slowloris: a request line that never ends is cut off after the deadline.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        data, closed = _read_until_closed(sock, 4)
        assert data == b"" and closed is not None and 0.8 < closed < 2.5
    # Oversized headers: a JSON 431.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)
        time.sleep(0.2)
        try:
            sock.sendall(b"a" * 100)
        except OSError:
            pass
        data, closed = _read_until_closed(sock, 3)
        assert data.startswith(b"HTTP/1.1 431") and b"headers_too_large" in data, data[:200]


def test_sigterm_under_load_completes_accepted_work_and_exits_in_time(server):
    """Runs last: SIGTERM while requests are in flight (one still uploading)."""
    results: dict[str, httpx.Response | Exception] = {}

    def call(name: str, **kwargs) -> None:
        try:
            results[name] = httpx.post(server.url + "/v1/localize?format=json", timeout=120, **kwargs)
        except Exception as exc:  # recorded and asserted below
            results[name] = exc

    halfway = threading.Event()

    def slow_body():
        step = len(IMAGE) // 8 + 1
        for n, start in enumerate(range(0, len(IMAGE), step)):
            if n == 4:
                halfway.set()
            time.sleep(0.4)
            yield IMAGE[start : start + step]

    # One request still uploading and, once it is half-way (1.6 s to go), one in the queue:
    # as many as the queue admits. The signal comes when the second is admitted.
    threads = [threading.Thread(target=call, args=("queued",), kwargs={"content": IMAGE}),
               threading.Thread(target=call, args=("uploading",), kwargs={"content": slow_body()})]
    threads[1].start()
    assert halfway.wait(30)
    threads[0].start()
    deadline = time.monotonic() + 10
    while metric(server, "span_queue_depth") < 1 and threads[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    queued_in_flight = threads[0].is_alive()
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    ready = httpx.get(server.url + "/health/ready", timeout=10)
    refused = localize(server.url, timeout=10)
    assert ready.status_code == 503 and "draining" in ready.json()["error"]["message"]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert "retry-after" in refused.headers

    for thread in threads:
        thread.join(GRACE_S + DRAIN_DELAY_S + 30)
    code = server.process.wait(GRACE_S + DRAIN_DELAY_S + 30)
    exited_in = time.monotonic() - signalled
    print(f"\nSIGTERM: accepted requests done (queued one in flight at the signal: {queued_in_flight}), "
          f"exit {code} after {exited_in:.1f} s")
    for name, answer in results.items():
        assert isinstance(answer, httpx.Response), f"{name}: {answer!r}"
        assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text[:200]}"
        assert answer.json()["width"] == 64
    assert len(results) == 2
    # uvicorn re-raises the signal it handled once shutdown is complete: -SIGTERM is a clean exit.
    assert code in (0, -signal.SIGTERM), server.log()[-3000:]
    assert "Application shutdown complete" in server.log()
    assert exited_in < DRAIN_DELAY_S + GRACE_S
    assert "Traceback" not in server.log()
