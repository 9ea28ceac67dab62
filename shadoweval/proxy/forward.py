"""The primary path: forward the caller's request and relay the answer exactly, chunk by chunk,
keeping a bounded copy for the pair record. This is the hot path; keep it small."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from shadoweval.config import Limits, Primary
from shadoweval.proxy.openai import error_type_for_status
from shadoweval.retry import RetryPolicy
from shadoweval.types import Capture, ErrorType

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import RequestTrace

# RFC 9110 §7.6.1 hop-by-hop fields, plus the framing fields aiohttp recomputes.
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
    }
)
MAX_CHUNK_TIMES = 4096
# Answers up to this size with a known length are read whole and written in one go;
# anything else (SSE, chunked, large) is relayed as it arrives.
_BUFFER_LIMIT = 256 * 1024


def end_to_end(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """Drop hop-by-hop fields, including any the Connection header names."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    drop = set(HOP_BY_HOP)
    for key, value in items:
        if key.lower() == "connection":
            drop.update(t.strip().lower() for t in value.split(","))
    return CIMultiDict((k, v) for k, v in items if k.lower() not in drop)


def error_response(status: int, code: str, message: str) -> web.Response:
    """An OpenAI-shaped error produced by shadoweval itself (marked by a header)."""
    body = {"error": {"message": message, "type": "shadoweval_error", "code": code}}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"x-shadoweval-error": code},
    )


def classify(exc: BaseException) -> tuple[ErrorType, str]:
    """Map a client-side exception to an error type and a short message."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout", "upstream timed out"
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientConnectorDNSError):
        return "connect", f"cannot connect to upstream: {exc.os_error or exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "truncated_stream", f"upstream closed the connection early: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid_response", f"upstream sent an invalid HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.ClientOSError):
        return "connect", f"upstream connection failed: {exc}"
    return "internal", f"{type(exc).__name__}: {exc}"


class Forwarder:
    def __init__(
        self,
        cfg: Primary,
        limits: Limits,
        session: aiohttp.ClientSession,
        on_attempt: Callable[[str, str, Capture, int], None] | None = None,
    ) -> None:
        self._name = cfg.name
        self._retry = RetryPolicy(cfg.retry)
        self._on_attempt = on_attempt
        self._base = cfg.url
        self._session = session
        self._capture_max = limits.capture_max_bytes
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, connect=cfg.connect_timeout_s)

    async def relay(
        self, request: web.BaseRequest, body: bytes, trace: RequestTrace | None = None
    ) -> tuple[web.StreamResponse, Capture]:
        url = URL(self._base + request.raw_path, encoded=True)
        headers = end_to_end(request.headers)
        if trace is not None:
            # The one header tracing changes: traceparent becomes the primary call's span.
            trace.primary_call(headers)
        attempt = 0
        while True:
            attempt += 1
            cap = Capture(started=time.perf_counter(), attempts=attempt)
            try:
                upstream = await self._session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=body if body else None,
                    allow_redirects=False,
                    timeout=self._timeout,
                )
            except Exception as exc:  # every failure becomes a clear 502/504, never a hang
                cap.error_type, cap.error = classify(exc)
                cap.latency_s = time.perf_counter() - cap.started
                if await self._retrying(cap, None):
                    continue
                status = 504 if cap.error_type == "timeout" else 502
                return error_response(status, f"primary_{cap.error_type}", cap.error), cap
            # Retries happen only here, before a single byte has gone to the caller.
            if self._retry.max_attempts > 1 and upstream.status >= 429:
                cap.status = upstream.status
                cap.error_type = error_type_for_status(upstream.status)
                cap.latency_s = time.perf_counter() - cap.started
                if await self._retrying(cap, upstream.headers.get("Retry-After")):
                    upstream.release()
                    continue
                cap.error_type = None
            break

        async with upstream:
            cap.status = upstream.status
            cap.content_type = upstream.headers.get("Content-Type", "")
            cap.content_encoding = upstream.headers.get("Content-Encoding", "")
            headers = end_to_end(upstream.headers)
            length = upstream.content_length
            if (
                length is not None
                and length <= _BUFFER_LIMIT
                and "event-stream" not in cap.content_type
            ):
                return await self._buffered(upstream, headers, cap)
            return await self._streamed(request, upstream, headers, length, cap)

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
        self, upstream: aiohttp.ClientResponse, headers: CIMultiDict[str], cap: Capture
    ) -> tuple[web.StreamResponse, Capture]:
        try:
            data = await upstream.read()
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
            cap.latency_s = time.perf_counter() - cap.started
            return error_response(502, f"primary_{cap.error_type}", cap.error), cap
        cap.latency_s = time.perf_counter() - cap.started
        cap.body += data[: self._capture_max]
        cap.body_truncated = len(data) > self._capture_max
        cap.chunk_times.append((len(data), cap.latency_s))
        resp = web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
        resp.body = data
        return resp, cap

    async def _streamed(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        length: int | None,
        cap: Capture,
    ) -> tuple[web.StreamResponse, Capture]:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        received = 0
        body, limit, times = cap.body, self._capture_max, cap.chunk_times
        try:
            async for chunk in upstream.content.iter_any():
                received += len(chunk)
                if len(times) < MAX_CHUNK_TIMES:
                    times.append((received, time.perf_counter() - cap.started))
                if len(body) < limit:
                    body += chunk[: limit - len(body)]
                elif not cap.body_truncated:
                    cap.body_truncated = True
                await resp.write(chunk)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            cap.error_type, cap.error = "client_disconnected", "the caller went away mid-answer"
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
            if cap.error_type == "timeout":
                cap.error = "primary timed out mid-answer"
        cap.latency_s = time.perf_counter() - cap.started
        if cap.error_type is None:
            await resp.write_eof()
        elif request.transport is not None:
            # The primary broke off (or the caller left): end the caller's connection the
            # same way instead of pretending the answer was complete.
            request.transport.close()
        return resp, cap
