"""Property tests of the proxy port's HTTP/1.1 server (proxy/http.py): whatever bytes a
caller sends, in whatever pieces, the protocol never raises out of ``data_received``,
the handler sees only requests that were complete and within the limits, every answer
written is a well-formed HTTP/1.1 response, and a connection that was refused is closed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadoweval.config.proxy import Limits
from shadoweval.proxy.http import HttpServer, Request, Responder

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(
    max_body_bytes=2048, max_headers=16, max_header_bytes=1024, max_request_line_bytes=1024
)

GOOD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)
PIECES = [
    GOOD,
    b"GET /v1/models HTTP/1.1\r\nHost: p\r\n\r\n",
    b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"Content-Length: 5000\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: Upgrade\r\nUpgrade: h2c\r\n",
    b"X-Long: " + b"v" * 1100 + b"\r\n",
    b"\r\n",
    b"\n",
    b"\x00",
    b"HTTP/1.1 200 OK\r\n",
]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write after close"
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0


class Responses:
    """Parses what the server wrote: every response must be complete and well-formed."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def on_status(self, status: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        pass

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def feed(self, data: bytes) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # 100 Continue is an interim answer: drop it, then parse the rest as one stream.
        data = re.sub(rb"HTTP/1\.1 100 Continue\r\n\r\n", b"", data)
        self.parser.feed_data(data)


async def drive(chunks: list[bytes]) -> tuple[list[Request], FakeTransport]:
    seen: list[Request] = []

    async def handler(request: Request, out: Responder) -> None:
        seen.append(request)
        await asyncio.sleep(0)
        out.send(200, [(b"content-type", b"text/plain")], b"ok:" + request.body)

    server = HttpServer(handler, LIMITS, None)
    protocol = server()
    transport = FakeTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        if transport.closed:
            break
        protocol.data_received(chunk)  # must never raise
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return seen, transport


@FUZZ
@given(
    st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=64)), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=10),
)
def test_any_bytes_in_any_pieces(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    chunks, i = [], 0
    for n in cuts:
        if i >= len(stream):
            break
        chunks.append(stream[i : i + n])
        i += n
    if i < len(stream):
        chunks.append(stream[i:])
    seen, transport = asyncio.run(drive(chunks))
    for request in seen:
        assert len(request.body) <= LIMITS.max_body_bytes
        assert len(request.raw_headers) <= LIMITS.max_headers
    responses = Responses()
    try:
        responses.feed(bytes(transport.data))
    except httptools.HttpParserUpgrade:  # pragma: no cover - the server never upgrades
        raise AssertionError("the server switched protocols") from None
    # Every handler call was answered, and only refusals come on top (at most one, last).
    answered_ok = [s for s in responses.statuses if s == 200]
    assert len(answered_ok) == len(seen)
    refusals = [s for s in responses.statuses if s != 200]
    assert len(refusals) <= 1
    if refusals:
        assert responses.statuses[-1] in (400, 408, 413, 417, 431)
        assert transport.closed


@FUZZ
@given(st.integers(min_value=1, max_value=len(GOOD) * 3))
def test_pipelined_requests_in_any_pieces_are_all_answered_in_order(cut: int) -> None:
    stream = b"".join(GOOD.replace(b"{}", b"%02d" % i) for i in range(3))
    chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    seen, transport = asyncio.run(drive(chunks))
    assert [r.body for r in seen] == [b"00", b"01", b"02"]
    bodies = re.findall(rb"ok:(\d\d)", bytes(transport.data))
    assert bodies == [b"00", b"01", b"02"]
    assert not transport.closed or transport.data.endswith(b"ok:02")
