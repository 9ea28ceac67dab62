"""The primary path: forward the caller's request and relay the answer exactly, chunk by chunk,
keeping a bounded copy for the pair record. This is the hot path; keep it small."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from shadoweval.config.proxy import Limits, Primary
from shadoweval.protocols.openai import error_type_for_status
from shadoweval.proxy.http import Request, Responder
from shadoweval.proxy.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from shadoweval.retry import RetryPolicy
from shadoweval.types import Capture, ErrorType

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import RequestTrace

# RFC 9110 §7.6.1 hop-by-hop fields, plus the framing fields that are recomputed, and
# Expect (the whole body is already here: an upstream "100 Continue" would be noise).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
_HOP_BY_HOP_BYTES = frozenset(h.encode() for h in HOP_BY_HOP)
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
# Answers up to this size with a known length are read whole and written in one go;
# anything else (SSE, chunked, large) is relayed as it arrives.
_BUFFER_LIMIT = 256 * 1024


def raw_end_to_end(
    headers: Iterable[tuple[bytes, bytes]], also_drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """Raw (bytes) header pairs without hop-by-hop fields, nor any the Connection header names."""
    items = list(headers)
    drop = _HOP_BY_HOP_BYTES | also_drop
    for key, value in items:
        if key.lower() == b"connection":
            drop = drop | {t.strip().lower() for t in value.split(b",")}
    return [(k, v) for k, v in items if k.lower() not in drop]


def classify(exc: BaseException) -> tuple[ErrorType, str]:
    """Map a client-side exception to an error type and a short message."""
    if isinstance(exc, UpstreamError):
        return exc.kind, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", "upstream timed out"
    if isinstance(exc, ConnectionError | OSError):
        return "connect", f"upstream connection failed: {exc}"
    return "internal", f"{type(exc).__name__}: {exc}"


class Forwarder:
    def __init__(
        self,
        cfg: Primary,
        limits: Limits,
        pool: UpstreamPool,
        on_attempt: Callable[[str, str, Capture, int], None] | None = None,
        hop: tuple[bytes, bytes] | None = None,
    ) -> None:
        self._name = cfg.name
        self._retry = RetryPolicy(cfg.retry)
        self._on_attempt = on_attempt
        self._pool = pool
        self._hop = hop  # the loop marker every request carries (proxy/loops.py)
        self._capture_max = limits.capture_max_bytes
        self._timeout = cfg.timeout_s

    async def relay(
        self, request: Request, out: Responder, trace: RequestTrace | None = None
    ) -> Capture:
        """Relay the primary's answer to ``out``; the capture is what the records see."""
        if trace is None:
            headers = raw_end_to_end(request.raw_headers)
        else:
            # The one header tracing changes: traceparent becomes the primary call's span.
            headers = raw_end_to_end(request.raw_headers, _TRACE_HEADERS)
            headers.extend((k.encode(), v.encode()) for k, v in trace.primary_call().items())
        if self._hop is not None:
            headers.append(self._hop)
        method, target = request.method, request.raw_path
        attempt = 0
        while True:
            attempt += 1
            cap = Capture(started=time.perf_counter(), attempts=attempt, limit=self._capture_max)
            deadline = asyncio.get_running_loop().time() + self._timeout
            try:
                upstream = await self._pool.request(
                    method, target, headers, request.body, timeout_s=self._timeout
                )
            except Exception as exc:  # every failure becomes a clear 502/504, never a hang
                cap.error_type, cap.error = classify(exc)
                cap.latency_s = time.perf_counter() - cap.started
                if await self._retrying(cap, None):
                    continue
                status = 504 if cap.error_type == "timeout" else 502
                out.send_error(status, f"primary_{cap.error_type}", cap.error)
                return cap
            status = upstream.status or 502
            # Retries happen only here, before a single byte has gone to the caller.
            if self._retry.max_attempts > 1 and status >= 429:
                cap.status = status
                cap.error_type = error_type_for_status(status)
                cap.latency_s = time.perf_counter() - cap.started
                if await self._retrying(cap, upstream.header(b"retry-after")):
                    upstream.release()
                    continue
                cap.error_type = None
            break

        try:
            cap.status = status
            cap.content_type = upstream.header(b"content-type") or ""
            cap.content_encoding = upstream.header(b"content-encoding") or ""
            out_headers = raw_end_to_end(upstream.raw_headers)
            length = upstream.content_length
            if (
                length is not None
                and length <= _BUFFER_LIMIT
                and "event-stream" not in cap.content_type
                and method != "HEAD"  # no body, but the length of the one GET would have
            ):
                await self._buffered(upstream, out, status, out_headers, cap, deadline)
            else:
                await self._streamed(upstream, out, status, out_headers, length, cap, deadline)
            return cap
        finally:
            upstream.release()

    async def _retrying(self, cap: Capture, retry_after: str | None) -> bool:
        """Count a failed attempt and wait, if the policy allows another one."""
        delay = self._retry.delay(cap.attempts, cap.error_type, retry_after)
        if delay is None:
            return False
        if self._on_attempt is not None:
            self._on_attempt("primary", self._name, cap, cap.attempts)
        await asyncio.sleep(delay)
        return True

    async def _buffered(
        self,
        upstream: UpstreamResponse,
        out: Responder,
        status: int,
        headers: list[tuple[bytes, bytes]],
        cap: Capture,
        deadline: float,
    ) -> None:
        try:
            if upstream.complete:
                data = await upstream.read()
            else:
                async with asyncio.timeout_at(deadline):
                    data = await upstream.read()
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
            cap.latency_s = time.perf_counter() - cap.started
            status = 504 if cap.error_type == "timeout" else 502
            out.send_error(status, f"primary_{cap.error_type}", cap.error)
            return
        cap.latency_s = time.perf_counter() - cap.started
        cap.keep(data)
        out.send(status, headers, data, upstream.reason)

    async def _streamed(
        self,
        upstream: UpstreamResponse,
        out: Responder,
        status: int,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        cap: Capture,
        deadline: float,
    ) -> None:
        try:
            out.start(status, headers, length, upstream.reason)
        except ConnectionResetError:
            cap.error_type, cap.error = "client_disconnected", "the caller went away"
            cap.latency_s = time.perf_counter() - cap.started
            return
        keep, write = cap.keep, out.write_nowait

        def relay(chunk: bytes) -> bool:  # called by the upstream connection, per chunk
            keep(chunk)
            return write(chunk)

        try:
            async with asyncio.timeout_at(deadline):
                await upstream.relay_to(relay, out.drain)
        except ConnectionResetError:
            cap.error_type, cap.error = "client_disconnected", "the caller went away mid-answer"
        except TimeoutError:
            cap.error_type, cap.error = "timeout", "primary timed out mid-answer"
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
        cap.latency_s = time.perf_counter() - cap.started
        if cap.error_type is None:
            out.finish()
        else:
            # The primary broke off (or the caller left): end the caller's connection the
            # same way instead of pretending the answer was complete.
            out.abort()
