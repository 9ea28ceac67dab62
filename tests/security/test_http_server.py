"""The proxy port's own HTTP/1.1 server (proxy/http.py), over raw sockets: keep-alive,
pipelining, Expect, body limits decided before the body is read, chunked bodies, Upgrade
and HTTP/1.0 framing — what client libraries rely on without saying."""

from __future__ import annotations

import asyncio
import re

import orjson
from yarl import URL

from shadoweval.testing import running_stack
from tests.security.rawhttp import exchange
from tests.waiting import wait_for

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"


def body(text: str, stream: bool = False) -> bytes:
    msg = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}
    return orjson.dumps(msg)


def request(text: str, extra: bytes = b"") -> bytes:
    b = body(text)
    return HEAD + b"Content-Length: %d\r\n" % len(b) + extra + b"\r\n" + b


def statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def refused(stack: object, reason: str) -> float:
    registry = stack.proxy.metrics.registry  # type: ignore[attr-defined]
    value = registry.get_sample_value("shadoweval_refused_requests_total", {"reason": reason})
    return value or 0.0


async def test_keep_alive_then_close() -> None:
    async with running_stack() as stack:
        reply = await exchange(
            stack.url,
            request("one"),
            request("two"),
            request("three", b"Connection: close\r\n"),
            gap_s=0.05,
        )
        assert statuses(reply.data) == [200, 200, 200] and reply.closed
        order = [reply.data.index(b"Echo: %s" % w) for w in (b"one", b"two", b"three")]
        assert order == sorted(order)
        assert len(stack.primary.received) == 3


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with running_stack() as stack:
        words = [b"w%d" % i for i in range(8)]
        packet = b"".join(request(w.decode()) for w in words[:-1])
        packet += request(words[-1].decode(), b"Connection: close\r\n")
        reply = await exchange(stack.url, packet)
        assert statuses(reply.data) == [200] * len(words) and reply.closed
        order = [reply.data.index(b"Echo: " + w + b'"') for w in words]
        assert order == sorted(order)


async def test_expect_100_continue() -> None:
    async with running_stack() as stack:
        u = URL(stack.url)
        reader, writer = await asyncio.open_connection(u.host, u.port)
        b = body("later")
        writer.write(
            HEAD + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(b)
        )  # fmt: skip
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.close()
        # An expectation the server cannot meet: 417, and nothing is forwarded.
        reply = await exchange(stack.url, request("x", b"Expect: something-else\r\n"))
        assert reply.status == 417 and reply.closed
        assert len(stack.primary.received) == 1


async def test_a_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    async with running_stack(overrides={"limits": {"max_body_bytes": 2048}}) as stack:
        # Only the head is sent: the answer must not wait for 5,000 bytes that never come.
        reply = await exchange(stack.url, HEAD + b"Content-Length: 5000\r\n\r\n", timeout_s=5)
        assert reply.status == 413 and reply.closed
        assert b'"code":"request_too_large"' in reply.data
        # Chunked, so no length up front: refused once the chunks pass the limit.
        chunk = b"x" * 1500
        chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        chunked += (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n"
        reply = await exchange(stack.url, chunked)
        assert reply.status == 413 and reply.closed
        assert refused(stack, "body_too_large") == 2
        await asyncio.sleep(0.1)
        assert stack.primary.received == []


async def test_a_chunked_body_is_forwarded_with_a_length() -> None:
    async with running_stack() as stack:
        b = body("chunky")
        half = len(b) // 2
        chunked = HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        chunked += b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, b[:half], len(b) - half, b[half:])
        reply = await exchange(stack.url, chunked)
        assert reply.status == 200 and b"Echo: chunky" in reply.data
        [received] = stack.primary.received
        assert orjson.dumps(received.body) == b  # one body, framed afresh
        [record] = await stack.memory.wait_for(1)
        assert record["request"]["messages"][0]["content"] == "chunky"


async def test_upgrade_is_ignored_and_nothing_after_it_is_parsed() -> None:
    async with running_stack() as stack:
        # No body: answered in HTTP/1.1 (a server may ignore Upgrade), then closed; the
        # bytes after the head belong to the protocol asked for and are never parsed.
        upgrade = (
            b"GET /v1/models HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        reply = await exchange(stack.url, upgrade + request("smuggled"))
        assert statuses(reply.data) == [200] and reply.closed
        assert b'"id": "prod-model"' in reply.data
        # With a body: the parser would hand the body to the new protocol, so it is refused
        # rather than forwarded empty.
        reply = await exchange(stack.url, request("up", b"Connection: Upgrade\r\nUpgrade: h2c\r\n"))
        assert reply.status == 400 and reply.closed
        await asyncio.sleep(0.1)
        # The fake logs POSTs only: neither the smuggled one nor the refused one arrived.
        assert stack.primary.received == []


async def test_http10_streams_are_delimited_by_close() -> None:
    async with running_stack() as stack:
        b = body("old client", stream=True)
        head = HEAD.replace(b"HTTP/1.1", b"HTTP/1.0")
        reply = await exchange(stack.url, head + b"Content-Length: %d\r\n\r\n" % len(b) + b)
        head_part, _, rest = reply.data.partition(b"\r\n\r\n")
        assert reply.status == 200 and reply.closed
        assert b"transfer-encoding" not in head_part.lower()  # HTTP/1.0 has no chunking
        assert b"connection: close" in head_part.lower()
        assert rest.rstrip().endswith(b"data: [DONE]")


async def test_head_keeps_the_upstreams_length_and_sends_no_body() -> None:
    async with running_stack() as stack:
        get = await exchange(
            stack.url, b"GET /v1/models HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        )
        head = await exchange(
            stack.url, b"HEAD /v1/models HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        )
        _, _, get_body = get.data.partition(b"\r\n\r\n")
        head_head, _, head_body = head.data.partition(b"\r\n\r\n")
        assert get.status == head.status == 200
        assert b"content-length: %d" % len(get_body) in head_head.lower()
        assert head_body == b""


async def test_shutdown_waits_briefly_for_a_fresh_connections_first_request() -> None:
    """A caller that connected just before SIGTERM and sends its request a moment later is
    answered; an idle keep-alive connection is closed at once."""
    async with running_stack() as stack:
        u = URL(stack.url)
        assert u.host is not None and u.port is not None
        fresh_r, fresh_w = await asyncio.open_connection(u.host, u.port)
        used_r, used_w = await asyncio.open_connection(u.host, u.port)
        used_w.write(request("first"))
        head = await asyncio.wait_for(used_r.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(re.findall(rb"(?i)content-length: (\d+)", head)[0])
        await used_r.readexactly(length)
        server = stack.proxy._http
        assert server is not None and len(server.connections) == 2
        stopping = asyncio.create_task(server.shutdown(10))
        # The keep-alive connection, idle between requests, is closed now ...
        assert await asyncio.wait_for(used_r.read(), 2) == b""
        # ... the fresh one gets its answer, then is closed.
        await wait_for(lambda: len(server.connections) == 1, what="the idle connection closed")
        fresh_w.write(request("late"))
        reply = await asyncio.wait_for(fresh_r.read(), 5)
        assert statuses(reply) == [200] and b"Echo: late" in reply
        await asyncio.wait_for(stopping, 5)
        assert not server.connections
        for w in (fresh_w, used_w):
            w.close()
