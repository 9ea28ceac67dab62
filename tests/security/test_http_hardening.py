"""The proxy port against hostile or broken HTTP, over raw sockets: request smuggling
shapes, oversized heads, slow clients, invalid UTF-8 and deeply nested JSON. Whatever is
refused is refused by the proxy itself (the primary never sees it), counted by reason, and
logged without its bytes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from shadoweval.testing import FakeUpstream, running_stack
from tests.security.rawhttp import exchange
from tests.waiting import wait_for

SECRET = b"sk-planted0123456789abcdefSECRET"
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer "
    + SECRET
    + b"\r\n"
)
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
CL = b"Content-Length: %d\r\n" % len(BODY)
OK = HEAD + CL + b"Connection: close\r\n\r\n" + BODY
# What a smuggler would hide behind the first request: it must never reach the primary.
SMUGGLED = b"POST /v1/smuggled HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\n\r\n{}"

SMUGGLING = {
    "content-length and transfer-encoding": HEAD
    + CL
    + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "two different content-lengths": HEAD
    + b"Content-Length: 2\r\nContent-Length: 60\r\n\r\n{}"
    + SMUGGLED,
    "two equal content-lengths": HEAD
    + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    + SMUGGLED,
    "content-length list": HEAD + b"Content-Length: 2, 2\r\n\r\n{}" + SMUGGLED,
    "signed content-length": HEAD + b"Content-Length: +2\r\n\r\n{}" + SMUGGLED,
    "negative content-length": HEAD + b"Content-Length: -1\r\n\r\n{}" + SMUGGLED,
    "obfuscated transfer-encoding": HEAD
    + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "transfer-encoding twice": HEAD
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "chunked not the last coding": HEAD
    + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "space before the colon": HEAD
    + b"Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}"
    + SMUGGLED,
    "bad chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\n2x\r\n{}\r\n0\r\n\r\n" + SMUGGLED,
    "bare LF in a chunk extension": HEAD
    + b"Transfer-Encoding: chunked\r\n\r\n2;a\nb\r\n{}\r\n0\r\n\r\n"
    + SMUGGLED,
    # Nothing after this one: bytes after an HTTP/1.0 message are refused anyway.
    "HTTP/1.0 with transfer-encoding": HEAD.replace(b"HTTP/1.1", b"HTTP/1.0")
    + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    # Header injection: a line break or control character inside a header.
    "bare LF line endings": HEAD.replace(b"\r\n", b"\n") + b"Content-Length: 2\n\n{}" + SMUGGLED,
    "bare CR in a value": HEAD
    + b"X-Api-Key: "
    + SECRET
    + b"\rX-Injected: 1\r\n"
    + CL
    + b"\r\n"
    + BODY,
    "NUL in a value": HEAD + b"X-Api-Key: " + SECRET + b"\x00\r\n" + CL + b"\r\n" + BODY,
    "obs-fold continuation": HEAD + b"X-Api-Key: a\r\n " + SECRET + b"\r\n" + CL + b"\r\n" + BODY,
    "space in a header name": HEAD + b"X Api-Key: " + SECRET + b"\r\n" + CL + b"\r\n" + BODY,
}


def refused(stack: Any, reason: str) -> float:
    value = stack.proxy.metrics.registry.get_sample_value(
        "shadoweval_refused_requests_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_clean_request_passes(caplog: pytest.LogCaptureFixture) -> None:
    """The control for everything below: the same head, well formed, is served."""
    async with running_stack() as stack:
        reply = await exchange(stack.url, OK)
        assert reply.status == 200 and b"Echo: hi" in reply.data
        assert [r.path for r in stack.primary.received] == ["/v1/chat/completions"]


async def test_smuggling_and_header_injection_shapes_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_stack() as stack:
        for name, request in SMUGGLING.items():
            reply = await exchange(stack.url, request)
            assert reply.status == 400, (name, reply.data[:300])
            assert reply.closed, name  # never kept alive after a framing error
            assert b'"code":"bad_request"' in reply.data, name
        await asyncio.sleep(0.1)
        assert stack.primary.received == []  # neither the request nor what it smuggled
        assert refused(stack, "bad_request") == len(SMUGGLING)
    # aiohttp's own error line quotes the offending header; ours names only the reason.
    assert SECRET.decode() not in caplog.text


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (
            HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + CL + b"\r\n" + BODY,
            "many headers",
        ),
        (HEAD + b"X-Big: " + b"v" * 3000 + b"\r\n" + CL + b"\r\n" + BODY, "a long header"),
        (
            HEAD.replace(b"/v1/chat/completions", b"/v1/" + b"a" * 3000) + CL + b"\r\n" + BODY,
            "a long request line",
        ),
    ],
)
async def test_oversized_heads_get_431(request_bytes: bytes, reason: str) -> None:
    limits = {"max_headers": 32, "max_header_bytes": 2048, "max_request_line_bytes": 2048}
    async with running_stack(overrides={"limits": limits}) as stack:
        reply = await exchange(stack.url, request_bytes)
        assert reply.status == 431 and reply.closed, reason
        assert refused(stack, "header_too_large") == 1
        # Just under the limits is fine.
        fits = (
            HEAD
            + b"".join(b"X-H%d: v\r\n" % i for i in range(25))
            + b"X-Big: "
            + b"v" * 1900
            + b"\r\n"
        )
        assert (
            await exchange(stack.url, fits + CL + b"Connection: close\r\n\r\n" + BODY)
        ).status == 200
        assert len(stack.primary.received) == 1


SLOW = {"limits": {"header_timeout_s": 0.6, "body_timeout_s": 0.6, "idle_timeout_s": 1.0}}


async def test_a_head_sent_slowly_is_cut_at_header_timeout() -> None:
    async with running_stack(overrides=SLOW) as stack:
        # Slowloris: a header line every 0.2 s, forever.
        pieces = [HEAD] + [b"X-Slow-%d: x\r\n" % i for i in range(30)]
        reply = await exchange(stack.url, *pieces, gap_s=0.2, timeout_s=30)
        assert reply.status == 408 and reply.closed
        assert b'"code":"header_timeout"' in reply.data
        # Cut while the head was still coming (the timer is not re-armed by each line), and
        # not at its first packet: the test's first 0.2 s gap ends before the 0.6 s timer on
        # the same loop, however busy the machine.
        assert 2 <= reply.sent < len(pieces), reply.sent
        assert refused(stack, "header_timeout") == 1
        # A head that is slow but complete in time is served.
        pieces = [HEAD, b"X-A: 1\r\n", CL, b"Connection: close\r\n\r\n" + BODY]
        reply = await exchange(stack.url, *pieces, gap_s=0.1)
        assert reply.status == 200
        assert [r.path for r in stack.primary.received] == ["/v1/chat/completions"]


async def test_a_body_sent_slowly_is_cut_at_body_timeout() -> None:
    async with running_stack(overrides=SLOW) as stack:
        head = HEAD + b"Content-Length: 200\r\n\r\n"
        pieces = [head, *[b"x" * 10] * 20]
        reply = await exchange(stack.url, *pieces, gap_s=0.2, timeout_s=30)
        assert reply.status == 408 and reply.closed, reply.data
        assert b"body_timeout" in reply.data
        assert 2 <= reply.sent < len(pieces), reply.sent  # cut while the body was coming
        assert refused(stack, "body_timeout") == 1
        assert stack.primary.received == []  # refused in the protocol: nothing was forwarded
        # A body in a few quick pieces is fine.
        reply = await exchange(
            stack.url, HEAD + CL + b"Connection: close\r\n\r\n", BODY[:10], BODY[10:], gap_s=0.1
        )
        assert reply.status == 200


async def test_a_silent_connection_is_closed_after_header_timeout_not_idle_timeout() -> None:
    # idle_timeout_s is far beyond the exchange's patience: only header_timeout_s can close it.
    limits = {"limits": {"header_timeout_s": 0.3, "idle_timeout_s": 3600.0}}
    async with running_stack(overrides=limits) as stack:
        reply = await exchange(stack.url, b"", timeout_s=60)
        assert reply.closed and reply.data == b""
        # Not a slow head: nothing was sent, so nothing is counted as refused.
        assert refused(stack, "header_timeout") == 0


async def test_a_kept_alive_connection_is_closed_after_idle_timeout() -> None:
    async with running_stack(overrides=SLOW) as stack:
        reply = await exchange(stack.url, HEAD + CL + b"\r\n" + BODY, timeout_s=30)
        assert reply.status == 200 and reply.closed
        assert refused(stack, "header_timeout") == 0


async def test_invalid_utf8_in_headers_and_body_never_breaks_anything() -> None:
    """Header bytes that are not UTF-8 (sampling key, task) and a body that is not: the
    caller gets what the primary answers, and the shadows are recorded or counted."""
    async with running_stack(overrides={"sampling": {"key": "header:x-user"}}) as stack:
        head = HEAD + b"x-user: \xff\xfe\x80\r\nx-shadoweval-task: caf\xe9 \xff\r\n"
        reply = await exchange(stack.url, head + CL + b"Connection: close\r\n\r\n" + BODY)
        assert reply.status == 200 and b"Echo: hi" in reply.data
        [record] = await stack.memory.wait_for(1)
        assert record["task"] == "caf\ufffd \ufffd"
        assert record["sampling_key"]  # hashed from the raw bytes
        body = b'{"model":"m","messages":[{"role":"user","content":"\xff\xfe"}]}'
        reply = await exchange(
            stack.url, HEAD + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )
        assert reply.status == 400 and b"invalid JSON" in reply.data  # the primary's answer
        await wait_for(
            lambda: stack.proxy.metrics.totals()["shadows_dropped"] >= 1,
            what="the invalid request's shadow counted",
        )
        totals = stack.proxy.metrics.totals()
        assert totals["pairs"] == 1 and totals["shadows_dropped"] == 1  # invalid_request
        assert totals["shadows_internal"] == 0


@pytest.mark.parametrize("depth", [50, 300, 3000])
async def test_deeply_nested_json_is_relayed_and_never_crashes(depth: int) -> None:
    primary = FakeUpstream(model="p")
    async with running_stack(primary=primary) as stack:
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        body = b'{"model":"m","messages":[{"role":"user","content":"deep"}],"x":' + nested + b"}"
        request = HEAD + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        reply = await exchange(stack.url, request)
        # The fake primary parses with orjson like the proxy: it answers up to 1024 levels.
        assert reply.status == (200 if depth < 1000 else 400), reply.data[-200:]
        await wait_for(
            lambda: bool(stack.memory.records) or stack.proxy.metrics.totals()["shadows_dropped"],
            what="the shadow recorded or counted",
        )
        totals = stack.proxy.metrics.totals()
        assert totals["shadows_internal"] == 0
        if depth <= 253:  # recorded (and mirrored)
            [record] = stack.memory.records
            assert orjson.dumps(record)
        else:  # too deep to mirror or record: counted, never sent
            assert totals["shadows_dropped"] == 1 and stack.memory.records == []
            assert stack.candidates["cand-a"].received == []
