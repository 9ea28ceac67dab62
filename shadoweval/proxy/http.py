"""The proxy port's HTTP/1.1 server: llhttp (via httptools) parsing straight into the
request handler, with the limits, timeouts and framing rules a proxy in front of
production needs. The admin port and every other server in the project use aiohttp; this
one exists because aiohttp's server side was the largest cost of the primary path (about
2,800 proxied req/s on one core against about 8,000 for the same relay on this protocol,
docs/performance.md).

- Framing: llhttp in strict mode refuses conflicting or repeated Content-Length, invalid
  or non-final Transfer-Encoding, bare CR/LF, obs-fold and invalid field characters (400);
  an HTTP/1.0 request with Transfer-Encoding is refused here (RFC 9112 §6.1). Upstream
  requests are framed afresh anyway. After any refusal the connection closes.
- Head limits (request line, one header field, number of headers, whole head): 431.
  Body over ``max_body_bytes``: 413, decided from Content-Length before reading it.
- Slowloris: a head must be complete within ``header_timeout_s`` of its first byte, a body
  within ``body_timeout_s`` of its head; otherwise 408 and the connection closes. An idle
  kept-alive connection is closed after ``idle_timeout_s``. Timers are armed only when a
  packet leaves a head or body incomplete, which one-packet requests never do.
- Request targets: origin-form only (absolute-form, ``CONNECT``, ``OPTIONS *`` and a
  request line without an HTTP version are refused with 400); a path with a dot-segment
  (``.``/``..``, also percent-encoded or behind a backslash) is refused, so a request
  cannot leave the primary's base path behind a front that resolves them.
- Loops: a request carrying this proxy's own hop marker (``x-shadoweval-hop``, added to
  everything the proxy sends) is refused with 508 (``proxy/loops.py``).
- Connections: at ``max_connections`` the oldest connection that has not sent a byte is
  closed to make room for a new one (a flood of silent sockets cannot lock callers out);
  when every connection has spoken, a new one is closed at once; either is counted and
  logged at most every 10 s; a connection gets ``header_timeout_s`` for its first byte
  (then it is closed, without an answer or a count), so silent connections cannot hold
  descriptors for ``idle_timeout_s``.
- Pipelined requests are answered in order, one at a time; reading pauses while any wait.
- Refused requests are counted by reason and logged in one line without their bytes; no
  access log is kept (its request line would include query strings, and it costs every
  request).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from shadoweval.config.proxy import Config, Limits
from shadoweval.proxy.loops import HOP_HEADER

log = logging.getLogger(__name__)

# Called with the reason of every refused request (a metric label from a closed set).
RefusedHook = Callable[[str], None]

_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
_HTTP_VERSIONS = frozenset({"1.0", "1.1"})
# How often a flood of connections over the limit is logged (each one is counted).
_FLOOD_LOG_INTERVAL_S = 10.0
_NO_BODY = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_body(code: str, message: str) -> bytes:
    """The JSON of an OpenAI-shaped error produced by shadoweval itself."""
    return orjson.dumps({"error": {"message": message, "type": "shadoweval_error", "code": code}})


def error_headers(code: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"x-shadoweval-error", code.encode())]


def decode_headers(raw: list[tuple[bytes, bytes]]) -> CIMultiDictProxy[str]:
    """Raw header pairs as a case-insensitive mapping, decoded as aiohttp decodes them:
    bytes that are not UTF-8 survive as surrogates (the sampling key hashes them back)."""
    return CIMultiDictProxy(
        CIMultiDict(
            (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for k, v in raw
        )
    )


class Request:
    """One complete caller request (its body read whole: bodies are bounded)."""

    __slots__ = ("_headers", "body", "keep_alive", "method", "path", "raw_headers", "raw_path")

    def __init__(
        self,
        method: str,
        raw_path: str,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.raw_path = raw_path  # the target as sent, query included: forwarded as is
        self.path = raw_path.partition("?")[0]  # undecoded: routes match what is forwarded
        self.raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Decoded headers, built on first use (the relay itself needs only the raw ones)."""
        if self._headers is None:
            self._headers = decode_headers(self.raw_headers)
        return self._headers


class Responder:
    """Writes one answer on the caller's connection: ``send`` a whole one, or ``start``,
    ``write`` chunks and ``finish`` (or ``abort``)."""

    __slots__ = ("_chunked", "_conn", "_head_only", "_keep_alive", "finished", "started", "status")

    def __init__(self, conn: HttpProtocol, request: Request) -> None:
        self._conn = conn
        self._head_only = request.method == "HEAD"
        self._keep_alive = request.keep_alive
        self._chunked = False
        self.status = 0
        self.started = False
        self.finished = False

    def _head(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        reason: bytes | None,
    ) -> bytes:
        self.status = status
        self.started = True
        if self._conn.closing:
            self._keep_alive = False
        if reason is None:
            reason = _PHRASES.get(status, b"Unknown")
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if status in _NO_BODY or status < 200:
            pass
        elif length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        elif self._keep_alive:
            # Chunked only for HTTP/1.1 callers: keep_alive is false for HTTP/1.0 ones
            # unless they asked for it, and then they get a close-delimited body instead.
            if self._conn.http11:
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self._keep_alive = False
        if not self._keep_alive:
            parts.append(b"connection: close\r\n")
        elif not self._conn.http11:
            # An HTTP/1.0 caller that asked to keep the connection must be told it is kept,
            # or it waits for a close that never comes (RFC 9112 Appendix C.2.2).
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def send(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        reason: bytes | None = None,
    ) -> None:
        """The whole answer in one write; ``reason`` is the upstream's phrase, as sent."""
        head = self._head(status, headers, len(body), reason)
        transport = self._conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(head if self._head_only or status in _NO_BODY else head + body)
        self._finish()

    def send_error(self, status: int, code: str, message: str) -> None:
        self.send(status, error_headers(code), error_body(code, message))

    def start(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        reason: bytes | None = None,
    ) -> None:
        """The head; the body follows through ``write``, framed by length, chunks or close."""
        head = self._head(status, headers, length, reason)
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the caller went away")
        transport.write(head)

    async def write(self, data: bytes) -> None:
        if not self.write_nowait(data):
            await self._conn.drain()

    def write_nowait(self, data: bytes) -> bool:
        """Write now; False when the caller reads slower than we write (then ``drain``)."""
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the caller went away")
        if data and not self._head_only:
            if self._chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                transport.write(data)
        return not self._conn.write_paused

    async def drain(self) -> None:
        await self._conn.drain()

    def finish(self) -> None:
        if self._chunked and not self._head_only:
            transport = self._conn.transport
            if transport is not None and not transport.is_closing():
                transport.write(b"0\r\n\r\n")
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._conn.answered(self._keep_alive)

    def abort(self) -> None:
        """End the connection mid-answer, so the caller cannot take a cut answer as whole."""
        self.finished = True
        self._conn.close()


Handler = Callable[[Request, Responder], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, reason: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.code, self.message = status, reason, code, message


def _bad_request() -> _Refused:
    return _Refused(400, "bad_request", "bad_request", "malformed or oversized request head")


def _head_too_large() -> _Refused:
    return _Refused(431, "header_too_large", "header_too_large", "request head too large")


def _bad_target(message: str) -> _Refused:
    return _Refused(400, "bad_target", "bad_request", message)


def target_problem(method: bytes, target: bytes) -> str | None:
    """Why a request target may not be forwarded, or None: only origin-form targets whose
    path has no dot-segment (RFC 3986 §5.2.4), percent-encoded or behind a backslash,
    so what the primary sees stays under its base path whatever resolves the path."""
    if method == b"CONNECT":
        return "CONNECT is not proxied"
    if not target.startswith(b"/"):
        return "only origin-form request targets (/path?query) are accepted"
    path = target.partition(b"?")[0]
    if b"." in path or b"%" in path or b"\\" in path:  # the common path has none: no work
        unified = path.lower().replace(b"%2e", b".").replace(b"%2f", b"/").replace(b"%5c", b"/")
        segments = unified.replace(b"\\", b"/").split(b"/")
        if b"." in segments or b".." in segments:
            return "dot-segments in the request path are refused"
    return None


# Connection states: between requests, in a head, in a body.
_IDLE, _HEAD, _BODY = 0, 1, 2
# At shutdown, a connection accepted but not yet sent anything gets this long for its
# request (it was opened to send one, and may be a packet away) before it is closed.
FIRST_REQUEST_GRACE_S = 1.0


def max_connections(cfg: Config) -> int:
    """``limits.max_connections``, or what the open-files limit leaves: each caller
    connection in flight also holds a primary connection, and the candidates' pools, the
    admin port, the sink and the worker's channel need descriptors of their own."""
    if cfg.limits.max_connections:
        return cfg.limits.max_connections
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    reserved = 64 + sum(c.concurrency for c in cfg.candidates)
    return max(16, (soft - reserved) // 2)


class HttpServer:
    """The protocol factory of the proxy port, and its connections (for draining)."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        on_refused: RefusedHook | None,
        *,
        max_connections: int = 0,
        hop_id: bytes = b"",
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.refused: RefusedHook = on_refused or (lambda _reason: None)
        self.connections: set[HttpProtocol] = set()
        # Connections that have not sent a byte yet, oldest first: at the limit the oldest
        # makes room for a new one, so a flood of silent sockets cannot lock callers out.
        self.silent: dict[HttpProtocol, None] = {}
        self.closing = False
        self.max_connections = max_connections or 1 << 62  # 0: no limit of our own
        self.hop_id = hop_id  # this proxy's loop marker; empty: not checked
        self._flood_logged_at: float | None = None
        self._flood_unlogged = 0
        # Bytes a head may take before it is refused whatever its shape.
        self.max_head_bytes = (
            limits.max_request_line_bytes + limits.max_headers * (limits.max_header_bytes + 4) + 4
        )

    def __call__(self) -> HttpProtocol:
        return HttpProtocol(self)

    def over_limit(self, now: float) -> None:
        """A connection over ``max_connections`` was closed: count it, log now and then."""
        self.refused("too_many_connections")
        self._flood_unlogged += 1
        last = self._flood_logged_at
        if last is None or now - last >= _FLOOD_LOG_INTERVAL_S:
            log.warning(
                "%d connection(s) closed at once: %d open, limits.max_connections is %d",
                self._flood_unlogged,
                len(self.connections),
                self.max_connections,
            )
            self._flood_logged_at, self._flood_unlogged = now, 0

    async def shutdown(self, grace_s: float) -> None:
        """Close idle connections now, the others after their answer; abort any left after
        ``grace_s``. Call after the listening socket has stopped accepting."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_when_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()


class HttpProtocol(asyncio.Protocol):
    """One caller connection."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.http11 = True
        self.closing = False  # close after the answer in progress
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._queue: deque[Request | _Refused] = deque()
        self._busy = False
        self._reading = True
        self._ignore_input = False  # after a refusal or an upgrade: nothing more is parsed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = _IDLE
        self._last_active = 0.0
        self._received = False  # any bytes yet
        # the request being parsed
        self._state = _IDLE
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_bytes = 0
        self._expect = False
        self._has_body = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        if len(server.connections) >= server.max_connections:
            if server.silent:
                # The oldest connection that never spoke goes instead: a caller opens a
                # connection to send at once, a flood holds them silent.
                oldest = next(iter(server.silent))
                oldest.evict()
            else:
                # Closed before any timer or parser work: the descriptor is back at once,
                # so a flood cannot starve callers already connected or the admin port.
                self._ignore_input = True
                transport.abort()  # type: ignore[attr-defined]
                server.over_limit(self._loop.time())
                return
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass
        server.connections.add(self)
        server.silent[self] = None
        self._last_active = self._loop.time()
        # Its first byte is due within header_timeout_s, like the rest of a head: a
        # connection that sends nothing must not hold a descriptor for idle_timeout_s.
        self._arm(self._limits.header_timeout_s, self._first_byte_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._server.silent.pop(self, None)
        self._disarm()
        self._queue.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("the caller went away"))
        self.transport = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drain(self) -> None:
        if self.transport is None:
            raise ConnectionResetError("the caller went away")
        if not self.write_paused:
            # The buffer drained between the pause and this call (resume_writing ran
            # already): waiting would stall until a resume that never comes.
            return
        if self._drain is None:
            self._drain = self._loop.create_future()
        await self._drain

    def data_received(self, data: bytes) -> None:
        if not self._received:
            self._received = True
            self._server.silent.pop(self, None)
        if self._ignore_input:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            self._refuse(refusal if isinstance(refusal, _Refused) else _bad_request())
        except httptools.HttpParserUpgrade:
            # The request is complete; the caller hoped to switch protocols. Answer it in
            # HTTP/1.1 (RFC 9110 §7.8 lets a server ignore Upgrade) and then close.
            self._ignore_input = True
            self.closing = True
        except httptools.HttpParserError:
            self._refuse(_bad_request())
        else:
            state = self._state
            if state == _HEAD:
                self._head_bytes += len(data)
                if self._head_bytes > self._server.max_head_bytes:
                    self._refuse(_head_too_large())
                elif self._timer is None or self._timer_kind != _HEAD:
                    self._arm(self._limits.header_timeout_s, self._expired, _HEAD)
            elif state == _BODY and (self._timer is None or self._timer_kind != _BODY):
                self._arm(self._limits.body_timeout_s, self._expired, _BODY)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._head_bytes = 0
        self._expect = False
        self._has_body = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_request_line_bytes:
            raise _head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= self._limits.max_headers or (
            len(name) + len(value) > self._limits.max_header_bytes
        ):
            raise _head_too_large()
        headers.append((name, value))
        # "expect", "content-length", "x-shadoweval-hop", "transfer-encoding"
        if len(name) in (6, 14, 16, 17):
            lower = name.lower()
            if lower == HOP_HEADER:
                if self._server.hop_id and self._server.hop_id in value:
                    raise _Refused(
                        508, "loop", "loop_detected", "the request came back to this proxy"
                    )
            elif lower == b"transfer-encoding":
                self._has_body = True
            elif lower == b"content-length":
                self._has_body = value != b"0"
                if int(value) > self._limits.max_body_bytes:  # llhttp has checked the digits
                    raise _Refused(
                        413,
                        "body_too_large",
                        "request_too_large",
                        f"request body exceeds {self._limits.max_body_bytes} bytes",
                    )
            elif lower == b"expect":
                if value.lower() != b"100-continue":
                    raise _Refused(417, "bad_request", "bad_request", "unsupported Expect")
                self._expect = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _HTTP_VERSIONS:  # "GET /" alone parses as HTTP/0.9
            raise _bad_target("the request line has no HTTP version")
        problem = target_problem(parser.get_method(), self._url)
        if problem is not None:
            raise _bad_target(problem)
        self.http11 = version == "1.1"
        if not self.http11 and any(k.lower() == b"transfer-encoding" for k, _ in self._headers):
            raise _bad_request()  # RFC 9112 §6.1: faulty framing
        if self._has_body and parser.should_upgrade():
            # llhttp hands the bytes after an upgrade request's head to the new protocol,
            # so its body would be lost: refused rather than forwarded empty.
            raise _Refused(400, "bad_request", "bad_request", "protocol upgrade with a body")
        self._state = _BODY
        if self._timer is not None and self._timer_kind == _HEAD:
            self._disarm()
        if self._expect and self.http11 and self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:  # chunked: no length up front
            raise _Refused(
                413,
                "body_too_large",
                "request_too_large",
                f"request body exceeds {self._limits.max_body_bytes} bytes",
            )
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._state = _IDLE
        if self._timer is not None and self._timer_kind != _IDLE:
            self._disarm()
        parser = self._parser
        body = self._body
        request = Request(
            parser.get_method().decode("ascii", "replace"),
            self._url.decode("utf-8", "surrogateescape"),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
            parser.should_keep_alive(),
        )
        self._enqueue(request)

    # -- requests and answers -------------------------------------------------------------

    def _enqueue(self, item: Request | _Refused) -> None:
        self._queue.append(item)
        if self._busy:
            if self._reading and self.transport is not None:
                self._reading = False  # pipelined: no more until the queue is answered
                self.transport.pause_reading()
            return
        self._busy = True
        self._loop.create_task(self._serve())

    def _refuse(self, refusal: _Refused) -> None:
        self._ignore_input = True
        self._state = _IDLE
        self._disarm()
        self._enqueue(refusal)

    async def _serve(self) -> None:
        server = self._server
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Refused):
                self._answer_refusal(item)
                return
            responder = Responder(self, item)
            try:
                await server.handler(item, responder)
            except Exception:
                log.exception("internal error answering %s %s", item.method, item.path)
                if not responder.started:
                    responder.send_error(500, "internal_error", "shadoweval internal error")
                elif not responder.finished:
                    responder.abort()
            if not responder.finished:
                responder.abort()
            if self.transport is None or self.transport.is_closing():
                return
        self._busy = False
        if not self._reading and self.transport is not None:
            self._reading = True
            self.transport.resume_reading()

    def _answer_refusal(self, refusal: _Refused) -> None:
        self._server.refused(refusal.reason)
        log.debug("refused a request (%s: %s)", refusal.reason, refusal.message)
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        body = error_body(refusal.code, refusal.message)
        head = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, _PHRASES.get(refusal.status, b""))]
        head += (b"%s: %s\r\n" % kv for kv in error_headers(refusal.code))
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport.write(b"".join(head) + body)
        transport.close()

    def answered(self, keep_alive: bool) -> None:
        """An answer was written whole; close unless the connection may serve another."""
        self._last_active = self._loop.time()
        if not keep_alive or self.closing or self._server.closing:
            self.close()

    def close_when_idle(self) -> None:
        self.closing = True
        if self._busy or self._state != _IDLE:
            return  # closed once its answer is written
        if not self._received:
            self._loop.call_later(FIRST_REQUEST_GRACE_S, self._close_if_idle)
            return
        self.close()  # between keep-alive requests: as every server does at shutdown

    def _first_byte_check(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        if self._received:
            self._idle_check()  # it spoke: from now on the idle clock
            return
        self.close()  # not counted as refused: no request was ever begun (a preconnect)

    def _close_if_idle(self) -> None:
        if not self._busy and self._state == _IDLE:
            self.close()

    def evict(self) -> None:
        """Closed (reset) to make room at the connection limit; counted like a refusal."""
        server = self._server
        server.connections.discard(self)
        server.silent.pop(self, None)
        self._ignore_input = True
        if self.transport is not None:
            self.transport.abort()
        server.over_limit(self._loop.time())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- timers ---------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None], kind: int = _IDLE) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_kind = kind
        self._timer = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = _IDLE
        # Back to the idle clock, which only ever closes a connection with nothing to do.
        if self.transport is not None and not self._ignore_input:
            self._timer = self._loop.call_later(self._limits.idle_timeout_s, self._idle_check)

    def _idle_check(self) -> None:
        """Runs every ``idle_timeout_s`` (not per request) and closes an idle connection."""
        self._timer = None
        if self.transport is None:
            return
        idle_for = self._loop.time() - self._last_active
        if self._busy or self._state != _IDLE or idle_for < self._limits.idle_timeout_s:
            self._arm(max(self._limits.idle_timeout_s - idle_for, 0.05), self._idle_check)
            return
        self.close()

    def _expired(self) -> None:
        self._timer = None
        kind, self._timer_kind = self._timer_kind, _IDLE
        if self.transport is None or self._ignore_input or self._state != kind:
            return
        if kind == _HEAD and self._busy:
            # A pipelined head behind a running request: its clock restarts.
            self._arm(self._limits.header_timeout_s, self._expired, _HEAD)
            return
        if kind == _HEAD:
            refusal = _Refused(
                408, "header_timeout", "header_timeout", "request head not received in time"
            )
        else:
            refusal = _Refused(
                408, "body_timeout", "body_timeout", "request body not received in time"
            )
        self._refuse(refusal)
