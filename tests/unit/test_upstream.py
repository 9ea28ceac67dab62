"""The upstream HTTP/1.1 client against a scripted raw TCP server."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shadoweval.proxy.upstream import HIGH_WATER, UpstreamError, UpstreamPool
from tests.waiting import wait_for

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
ServerFactory = Callable[[Script], Awaitable[tuple[str, list[int]]]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@pytest.fixture
async def server() -> AsyncIterator[ServerFactory]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> tuple[str, list[int]]:
        connections: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(len(connections))
            try:
                await script(reader, writer, len(connections))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}", connections

    yield start
    for srv in servers:
        srv.close()


async def call(pool: UpstreamPool, body: bytes = b"{}") -> tuple[int | None, bytes]:
    resp = await pool.request("POST", "/v1/x", [(b"Content-Type", b"application/json")], body)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_keep_alive_reuses_one_connection(server: ServerFactory) -> None:
    seen: list[bytes] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            seen.append(await read_request(r))
            w.write(OK)

    url, conns = await server(script)
    pool = UpstreamPool(url + "/base")
    assert [await call(pool) for _ in range(3)] == [(200, b"{}")] * 3
    assert len(conns) == 1
    assert seen[0].startswith(b"POST /base/v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 2\r\n" in seen[0]
    await pool.close()


async def test_stale_keep_alive_is_retried_once_on_a_fresh_connection(
    server: ServerFactory,
) -> None:
    closed = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(OK)
        await w.drain()
        if n == 1:  # the first connection is closed by the server right after answering
            await asyncio.sleep(0.05)
            w.close()
            await w.wait_closed()
            closed.set()
            return
        while True:
            await read_request(r)
            w.write(OK)

    url, conns = await server(script)
    pool = UpstreamPool(url)
    assert await call(pool) == (200, b"{}")
    await asyncio.wait_for(closed.wait(), 30)  # the pooled connection is now stale
    assert await call(pool) == (200, b"{}")
    assert len(conns) == 2
    await pool.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"{}"),
    ],
)
async def test_body_framings(server: ServerFactory, answer: bytes, body: bytes) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answer)
        await w.drain()

    url, _ = await server(script)
    pool = UpstreamPool(url)
    assert await call(pool) == (200, body)
    await pool.close()


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "invalid_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", "truncated_stream"),
        (b"", "truncated_stream"),
    ],
)
async def test_broken_answers_are_classified(
    server: ServerFactory, answer: bytes, kind: str
) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answer)
        await w.drain()

    url, _ = await server(script)
    pool = UpstreamPool(url)
    with pytest.raises(UpstreamError) as err:
        await call(pool)
    assert err.value.kind == kind
    await pool.close()


async def test_refused_and_timeout() -> None:
    pool = UpstreamPool("http://127.0.0.1:1")
    with pytest.raises(UpstreamError) as err:
        await call(pool)
    assert err.value.kind == "connect"


async def test_slow_answer_times_out(server: ServerFactory) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        await asyncio.sleep(5)

    url, _ = await server(script)
    pool = UpstreamPool(url)
    with pytest.raises(UpstreamError) as err:
        await pool.request("POST", "/", [], b"x", timeout_s=0.2)
    assert err.value.kind == "timeout"
    await pool.close()


async def test_unread_body_pauses_the_upstream(server: ServerFactory) -> None:
    size = 4 * HIGH_WATER

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        w.write(b"x" * size)
        await w.drain()
        await asyncio.sleep(1)

    url, _ = await server(script)
    pool = UpstreamPool(url)
    resp = await pool.request("POST", "/", [], b"")
    await wait_for(lambda: resp._paused, what="the upstream paused")
    # Not consumed yet: only about HIGH_WATER (plus one socket read) is held in memory.
    assert resp._paused
    assert resp._buffered < 2 * HIGH_WATER
    assert len(await resp.read()) == size  # reading resumes the flow to the end
    resp.release()
    await pool.close()


async def test_pool_limit_bounds_connections(server: ServerFactory) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(r)
            await asyncio.sleep(0.05)
            w.write(OK)

    url, conns = await server(script)
    pool = UpstreamPool(url, limit=2)
    results = await asyncio.gather(*(call(pool) for _ in range(6)))
    assert results == [(200, b"{}")] * 6
    assert len(conns) == 2
    await pool.close()


def _threaded_server(closes: threading.Event, closed: threading.Event) -> tuple[int, list[int]]:
    """A blocking server in a thread: answers each connection's first request, waits for
    ``closes``, then closes that connection and sets ``closed``. Every connection counts."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5, max=100\r\n\r\nok"

    def serve() -> None:
        with listener:
            for _ in range(2):
                conn, _ = listener.accept()
                accepted.append(1)
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    conn.sendall(answer)
                    if len(accepted) == 1:
                        closes.wait(10)
                        conn.shutdown(socket.SHUT_RDWR)
                        closed.set()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], accepted


async def test_a_connection_closed_while_idle_is_not_reused_for_a_post() -> None:
    # The server closes the kept-alive connection, and its FIN is in the kernel before the
    # event loop has run to see it (a busy machine): the pool must notice at reuse, or the
    # POST is written into a dead connection and fails unanswered (a caller's 502).
    closes, closed = threading.Event(), threading.Event()
    port, accepted = _threaded_server(closes, closed)
    pool = UpstreamPool(f"http://127.0.0.1:{port}", limit=4)
    try:
        first = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        assert await first.read() == b"ok"
        first.release()
        closes.set()
        assert closed.wait(10)  # blocks the loop: the FIN arrives unseen by it
        # Wait (still without running the loop) until the FIN is in this end's buffer.
        [idle] = pool._idle
        sock = idle.transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert select.select([sock.fileno()], [], [], 10)[0]
        second = await pool.request("POST", "/v1/chat/completions", [], b"{}")
        assert await second.read() == b"ok"
        second.release()
        assert len(accepted) == 2  # a new connection, not the dead one
    finally:
        await pool.close()
