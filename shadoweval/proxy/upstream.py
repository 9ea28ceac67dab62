"""A small HTTP/1.1 client for the upstreams: one keep-alive pool per upstream, the llhttp
parser (httptools), raw header bytes passed through, bodies streamed with back-pressure.

Why not aiohttp's client: it costs ~300 µs of CPU per request on this path; this client
costs ~60 µs (benchmarks/README.md). Everything on the primary path and every shadow call
goes through here, so it is most of the proxy's CPU budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

import httptools
from yarl import URL

from shadoweval.types import ErrorType

# Methods a client may repeat on a fresh connection when a kept-alive one turns out to be
# stale (RFC 9110 §9.2.2, as aiohttp's client): a POST to a model is a billed generation.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Idle connections are dropped this long before the server's own Keep-Alive timeout, so a
# request is not written onto a connection the server is closing.
_KEEPALIVE_MARGIN_S = 1.0

# Pause reading from the upstream while this much body is waiting for a consumer not yet
# attached (a slow caller pauses it through relay_to), so no stream is buffered whole.
HIGH_WATER = 256 * 1024


class UpstreamError(Exception):
    """A failed upstream exchange, classified into the closed set of error types."""

    def __init__(self, kind: ErrorType, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorType = kind


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.used = False  # served at least one exchange (a stale keep-alive is possible)
        self.keepalive_s = pool._keepalive  # lowered by the server's Keep-Alive: timeout=N
        self.exchanges_left: int | None = None  # the server's Keep-Alive: max=N
        self.response: UpstreamResponse | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None:  # bytes while idle: the server broke the protocol
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            resp._fail(UpstreamError("invalid_response", "upstream switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            resp._fail(
                UpstreamError("invalid_response", f"upstream sent an invalid HTTP response: {exc}")
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.response
        if resp is not None and not resp.complete:
            if resp.status is None:
                resp._fail(
                    UpstreamError(
                        "truncated_stream", "upstream closed the connection before answering"
                    )
                )
            elif resp._until_close:
                resp._finish()  # a body delimited by the end of the connection
            else:
                resp._fail(
                    UpstreamError("truncated_stream", "upstream closed the connection mid-answer")
                )
        self._pool._forget(self)

    def pause_writing(self) -> None:  # request bodies are small; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        assert self.response is not None
        self.response.reason += reason  # relayed as sent (llhttp has checked its bytes)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.raw_headers.append((name, value))
        if len(name) == 10 and name.lower() == b"keep-alive":
            self._keepalive_hint(value)

    def _keepalive_hint(self, value: bytes) -> None:
        for param in value.split(b","):
            key, _, number = param.strip().partition(b"=")
            if key.lower() == b"timeout" and number.strip().isdigit():
                hinted = int(number.strip()) - _KEEPALIVE_MARGIN_S
                self.keepalive_s = max(0.0, min(self._pool._keepalive, hinted))
            elif key.lower() == b"max" and number.strip().isdigit():
                # Requests the server still allows on this connection (Apache, cpp-httplib
                # count down on each answer).
                self.exchanges_left = int(number.strip())

    def dropped(self) -> bool:
        """The idle connection is readable: the server closed it (or broke the protocol)
        and the event loop has not seen it yet, e.g. on a busy machine. Checked before
        every reuse, as urllib3 does: a POST written into it would fail unanswered, and a
        generation is not resent (a caller saw 502s from llama.cpp's server this way)."""
        if self.exchanges_left is not None and self.exchanges_left <= 0:
            return True
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def on_headers_complete(self) -> None:
        resp = self.response
        assert resp is not None
        code = self.parser.get_status_code()
        if 100 <= code < 200:  # an interim answer (we never send Expect); the real one follows
            resp.raw_headers.clear()
            resp.reason = b""
            return
        resp.status = code
        resp.keep_alive = self.parser.should_keep_alive()
        resp._headers_done()
        if resp._head:
            resp._finish()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is not None and resp.status is not None and not resp.complete:
            resp._finish()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """Status and headers as soon as they arrive; the body handed over chunk by chunk."""

    def __init__(self, conn: _Connection, head: bool) -> None:
        self._conn = conn
        self._head = head
        self.status: int | None = None
        self.reason = b""  # the reason phrase as the upstream sent it (may be empty)
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        # time.perf_counter() when its last byte was parsed (a clean end only): the end of
        # the exchange as the bytes moved, not when the reading task next ran.
        self.completed_at: float | None = None
        self._until_close = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        # Set while relay_to waits: chunks go straight from the connection's callback.
        self._consume: Callable[[bytes], bool | None] | None = None
        self._consume_paused = False  # it said its reader is slow: wait for drain
        self._consume_error: BaseException | None = None
        self._headers_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- fed by the connection ------------------------------------------------------------

    def _headers_done(self) -> None:
        # No Content-Length and not chunked: the body runs until the connection closes.
        names = {n.lower() for n, _ in self.raw_headers}
        self._until_close = b"content-length" not in names and b"transfer-encoding" not in names
        if not self._headers_future.done():
            self._headers_future.set_result(None)

    def _feed(self, data: bytes) -> None:
        consume = self._consume
        if consume is not None:
            try:
                if consume(data) is False:  # its reader is slow
                    self._consume = None
                    self._consume_paused = True
                    self._pause()
                    self._wake()
            except Exception as exc:  # the consumer's failure, raised in its task
                self._consume = None
                self._consume_error = exc
                self._wake()
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._pause()
        self._wake()

    def _pause(self) -> None:
        if not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()

    def _finish(self) -> None:
        self.completed_at = time.perf_counter()
        self.complete = True
        self._wake()
        if not self._headers_future.done():
            self._headers_future.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.complete:
            return
        self._error = error
        self.complete = True
        self._wake()
        if not self._headers_future.done():
            self._headers_future.set_exception(error)
            self._headers_future.exception()  # retrieved: raised to whoever awaits it

    def _timed_out(self) -> None:
        self._fail(UpstreamError("timeout", "upstream timed out before answering"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- consumer side ----------------------------------------------------------------------

    def header(self, name: bytes) -> str | None:
        lname = name.lower()
        for key, value in self.raw_headers:
            if key.lower() == lname:
                return value.decode("latin-1")
        return None

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]

    @property
    def content_length(self) -> int | None:
        value = self.header(b"content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def relay_to(
        self,
        consume: Callable[[bytes], bool | None],
        drain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Hand each body chunk to ``consume`` as it arrives, from the connection's own
        callback: no task wake-up per chunk, as ``chunks()`` needs. ``consume`` returning
        False means its reader is slow: reading pauses until ``drain()`` returns. Raises
        UpstreamError when the exchange breaks, and whatever ``consume`` raised."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if consume(chunk) is False and drain is not None:
                    await drain()
            if self._consume_error is not None:
                raise self._consume_error
            if self._error is not None:
                raise self._error
            if self._consume_paused:
                self._consume_paused = False
                if drain is not None:
                    await drain()
                continue  # chunks may have come in meanwhile
            if self._paused and self._conn.transport is not None:
                self._paused = False  # also before the connection goes back to the pool
                self._conn.transport.resume_reading()
            if self.complete:
                return
            self._consume = consume
            try:
                await self._wait()
            finally:
                self._consume = None

    async def read(self) -> bytes:
        if self.complete and self._error is None:  # common: the whole answer came at once
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._buffered = 0
            return data
        parts: list[bytes] = []
        await self.relay_to(parts.append)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back to the pool when the exchange ended cleanly."""
        conn = self._conn
        if conn.response is not self:
            return
        conn.response = None
        if (
            self.complete
            and self._error is None
            and self.keep_alive
            and not self._head
            and not conn.closed
        ):
            conn._pool._put_back(conn)
        else:
            conn.close()


class UpstreamPool:
    """Keep-alive connections to one upstream (scheme, host, port)."""

    def __init__(
        self,
        url: str,
        *,
        limit: int = 0,
        connect_timeout_s: float = 10.0,
        keepalive_s: float = 60.0,
        ssl_context: ssl_module.SSLContext | None = None,
        on_stale: Callable[[bool], None] | None = None,
    ) -> None:
        parsed = URL(url)
        assert parsed.host is not None
        self.host = parsed.host
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.base_path = parsed.raw_path.rstrip("/")
        default_port = self.port == (443 if parsed.scheme == "https" else 80)
        self._host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self._ssl = ssl_context if parsed.scheme == "https" else None
        if parsed.scheme == "https" and self._ssl is None:
            self._ssl = ssl_module.create_default_context()
        self._connect_timeout = connect_timeout_s
        self._keepalive = keepalive_s
        # Called with whether the request is repeated when a reused connection was stale.
        self._on_stale = on_stale
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._limit = limit
        self._connecting = 0
        # Requests waiting for a connection when the limit is reached: handed an idle
        # connection directly, or None when a slot freed up and they may open one.
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()

    @property
    def open_connections(self) -> int:
        return len(self._all)

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            with contextlib.suppress(ValueError):
                self._idle.remove(conn)
            self._hand_over(None)

    def _put_back(self, conn: _Connection) -> None:
        if not self._hand_over(conn):
            conn.idle_since = time.monotonic()
            self._idle.append(conn)

    def _hand_over(self, conn: _Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _full(self) -> bool:
        return self._limit > 0 and len(self._all) + self._connecting >= self._limit

    async def _acquire(self) -> _Connection:
        while True:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()  # most recently used: the least likely to be stale
                fresh = not conn.closed and now - conn.idle_since < conn.keepalive_s
                if fresh and not conn.dropped():
                    return conn
                conn.close()
            if not self._full():
                return await self._connect()
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                # Cancelled just after being handed a connection: pass it on, not leak it.
                if waiter.done() and not waiter.cancelled():
                    given = waiter.result()
                    if given is not None:
                        self._put_back(given)
                raise
            if handed is not None and not handed.closed:
                return handed

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )  # fmt: skip
        except BaseException as exc:
            self._connecting -= 1
            self._hand_over(None)  # the slot this attempt held is free again
            if isinstance(exc, TimeoutError):
                raise UpstreamError(
                    "timeout", f"connect to {self.host}:{self.port} timed out"
                ) from None
            if isinstance(exc, OSError):
                reason = exc.strerror or exc
                raise UpstreamError(
                    "connect", f"cannot connect to upstream {self.host}:{self.port}: {reason}"
                ) from None
            raise
        self._connecting -= 1
        self._all.add(conn)
        return conn

    def encode_request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> bytes:
        lines = [
            f"{method} {self.base_path}{target} HTTP/1.1\r\n".encode("latin-1"),
            b"Host: " + self._host_header + b"\r\n",
        ]
        lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send and wait for the status line and headers. The caller must ``release()``.

        ``target`` is the path and query (already encoded); the pool's base path is
        prepended. ``headers`` must not contain Host, Content-Length or Transfer-Encoding.
        """
        data = self.encode_request(method, target, headers, body)
        idempotent = method in IDEMPOTENT_METHODS
        for attempt in (1, 2):
            conn = await self._acquire()
            reused = conn.used
            conn.used = True
            resp = UpstreamResponse(conn, head=method == "HEAD")
            conn.response = resp
            assert conn.transport is not None
            conn.transport.write(data)
            try:
                if not resp._headers_future.done():
                    # A timer that fails the exchange: cheaper than an asyncio.timeout
                    # context (which reschedules and cancels a task), on every request.
                    timer = None
                    if timeout_s is not None:
                        timer = asyncio.get_running_loop().call_later(timeout_s, resp._timed_out)
                    try:
                        await resp._headers_future
                    finally:
                        if timer is not None:
                            timer.cancel()
                elif resp._error is not None:
                    raise resp._error
            except asyncio.CancelledError:
                # Cancelled by the caller's own deadline (candidates time the whole call):
                # the exchange is abandoned, so the connection must not stay checked out,
                # or `limit` such cancellations starve the pool for good (found by the
                # soak test, tests/faults/test_candidate_faults.py).
                conn.response = None
                conn.close()
                raise
            except UpstreamError as exc:
                conn.response = None
                conn.close()
                # A kept-alive connection closed without an answer: the server may have
                # closed it idle (nothing processed) or processed the request and died.
                # Only a request safe to repeat is sent again; anything else is the
                # caller's retry policy's to decide.
                if reused and attempt == 1 and exc.kind == "truncated_stream":
                    if self._on_stale is not None:
                        self._on_stale(idempotent)
                    if idempotent:
                        continue
                raise
            return resp
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
