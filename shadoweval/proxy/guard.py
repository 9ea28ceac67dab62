"""The proxy port's connection guard: request-head limits, slow-client timeouts and framing
rules, enforced in aiohttp's protocol object so the request handler never sees what they refuse.

- Head limits (request line, one header field, number of headers) are aiohttp's parser's;
  over them the caller gets 431.
- Slowloris: a request head must be complete within ``header_timeout_s`` of its first
  byte, a body within ``body_timeout_s`` of its head; otherwise 408 and the connection
  closes. An idle kept-alive connection is closed after ``idle_timeout_s``.
- Framing: the parser already refuses conflicting or repeated Content-Length and
  Transfer-Encoding (400); here an HTTP/1.0 request with Transfer-Encoding is refused too
  (RFC 9112 §6.1: its framing is faulty). Upstream requests are framed afresh anyway.
- Malformed requests are counted and logged in one line without their bytes (aiohttp's own
  log line quotes the offending header, which may be a credential); no access log is kept
  (its request line would include query strings, and it costs every request).

Cost on the hot path: one extra method call per received packet. A timer is armed only when
a packet leaves a request head or body incomplete, which one-packet requests never do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from shadoweval.config import Limits
from shadoweval.proxy.forward import error_response

log = logging.getLogger(__name__)

# Called with the reason of every refused request (a metric label from a closed set).
RefusedHook = Callable[[str], None]


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "shadoweval_error", "code": code}})


# Written raw: a head that never completed has no request object to answer through.
_HEADER_TIMEOUT_BODY = _error_body("header_timeout", "request head not received in time")
_HEADER_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"x-shadoweval-error: header_timeout\r\nContent-Length: %d\r\n\r\n%s"
) % (len(_HEADER_TIMEOUT_BODY), _HEADER_TIMEOUT_BODY)
_BODY_TIMEOUT_BODY = _error_body("body_timeout", "request body not received in time")


class GuardedServer(web.Server):
    """``web.Server`` whose connections are :class:`GuardedHandler`s."""

    def __init__(
        self,
        handler: Any,
        limits: Limits,
        on_refused: RefusedHook | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            keepalive_timeout=limits.idle_timeout_s,
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            access_log=None,
            **kwargs,
        )
        self.header_timeout_s = limits.header_timeout_s
        self.body_timeout_s = limits.body_timeout_s
        self.refused: RefusedHook = on_refused or (lambda _reason: None)

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedHandler(RequestHandler):
    """One caller connection: aiohttp's protocol plus the head and body timers."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        # per-connection state
        self._guard = manager
        self._timer: asyncio.TimerHandle | None = None
        self._timer_count = 0  # requests parsed when the head timer was armed
        self._body: StreamReader | None = None  # the incomplete body the timer waits for

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            # Heads completed (the common case: one, body included). Kept inline and
            # short: this runs for every request.
            if self._timer is not None:
                self._disarm()
            messages = self._messages
            if messages:
                msg, payload = messages[-1]
                if self._request_count - count > 1 or getattr(msg, "chunked", False):
                    self._check_framing(self._request_count - count)
                if not payload.is_eof():
                    self._body = payload
                    self._arm(self._guard.body_timeout_s)
        elif self._timer is None:
            if data and not (self._close or self._force_close or self._upgraded):
                # Bytes but no complete head: start the head's clock.
                self._arm(self._guard.header_timeout_s)
        elif self._body is not None and self._body.is_eof():
            self._disarm()

    def _check_framing(self, new: int) -> None:
        """Refuse HTTP/1.0 requests with Transfer-Encoding among the ``new`` last ones
        (this packet's: start() has not run since), as aiohttp refuses a parse error."""
        messages = self._messages
        for i in range(max(len(messages) - new, 0), len(messages)):
            msg, payload = messages[i]
            if not isinstance(msg, _ErrInfo) and msg.chunked and msg.version < HttpVersion11:
                exc = BadHttpMessage("Transfer-Encoding in an HTTP/1.0 request")
                messages[i] = (_ErrInfo(status=400, exc=exc, message=exc.message), payload)

    def _arm(self, delay: float) -> None:
        self._timer_count = self._request_count
        self._timer = self._loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._body = None

    def _expired(self) -> None:
        self._timer = None
        body, self._body = self._body, None
        if self.transport is None or self._force_close:
            return
        if body is not None:
            if body.is_eof():
                return
            self._guard.refused("body_timeout")
            # The handler is reading this body: it gets a 408 (an HTTPException, which
            # aiohttp answers), and close() ends the connection after that answer and
            # ignores whatever else the client sends.
            self.close()
            timeout = web.HTTPRequestTimeout(
                text=_BODY_TIMEOUT_BODY.decode(),
                content_type="application/json",
                headers={"x-shadoweval-error": "body_timeout"},
            )
            body.set_exception(timeout)
            body.feed_eof()  # so aiohttp does not linger reading the rest of it
            return
        if self._request_count != self._timer_count:
            return
        if self._request_in_progress or self._messages:
            # A pipelined head behind a running request: its clock restarts.
            self._arm(self._guard.header_timeout_s)
            return
        self._guard.refused("header_timeout")
        self.transport.write(_HEADER_TIMEOUT)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # A request the parser refused: one log line without the request's bytes.
        too_large = isinstance(exc, LineTooLong) or "Too many headers" in str(exc)
        reason = "header_too_large" if too_large else "bad_request"
        self._guard.refused(reason)
        log.debug("refused a malformed request (%s: %s)", reason, type(exc).__name__)
        status = 431 if too_large else 400
        resp = error_response(status, reason, "malformed or oversized request head")
        resp.force_close()
        return resp
