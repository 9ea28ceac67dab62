"""The proxy's request handler: read the body, offer it to the shadow dispatcher, relay the
primary's answer. Everything the caller waits for is in ``ProxyHandler.__call__``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from shadoweval.config import Limits
from shadoweval.proxy.forward import Forwarder, error_response
from shadoweval.proxy.guard import GuardedServer, RefusedHook
from shadoweval.proxy.openai import ROUTES
from shadoweval.proxy.shadow import ShadowDispatcher, ShadowJob
from shadoweval.types import Capture, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import RequestTrace, Tracer

# Called after each primary answer, off the caller's path (metrics hook).
PrimaryObserver = Callable[[Capture, "Route | None", bytes, float, "ShadowJob | None"], None]


class ProxyHandler:
    def __init__(
        self,
        forwarder: Forwarder,
        dispatcher: ShadowDispatcher,
        limits: Limits,
        observe: PrimaryObserver | None = None,
        tracer: Tracer | None = None,
        shadows_with_request: bool = False,
    ) -> None:
        self._forwarder = forwarder
        self._with_request = shadows_with_request
        self._tracer = tracer
        self._dispatcher = dispatcher
        self._max_body = limits.max_body_bytes
        self._observe = observe
        self._loop = asyncio.get_running_loop()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        entered = time.perf_counter()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                413, "request_too_large", f"request body exceeds {self._max_body} bytes"
            )
        route = ROUTES.get(request.path) if request.method == "POST" else None
        trace = self._tracer.start(request, route, entered) if self._tracer is not None else None
        job = None
        if route and self._with_request:
            job = self._dispatcher.offer(route, request.path, request.headers, body, trace)
        response, capture = await self._forwarder.relay(request, body, trace)
        if job is not None:
            job.primary_done(capture)
        # Overhead: time in this handler that was not spent waiting for the upstream.
        overhead = time.perf_counter() - entered - capture.latency_s
        # Runs after this task has handed the answer to the transport: shadows, metrics and
        # spans never delay it.
        self._loop.call_soon(
            self._after, request, route, body, capture, overhead, job, trace, response.status
        )
        return response

    def _after(
        self,
        request: web.BaseRequest,
        route: Route | None,
        body: bytes,
        capture: Capture,
        overhead: float,
        job: ShadowJob | None,
        trace: RequestTrace | None,
        status: int,
    ) -> None:
        if route and not self._with_request:
            job = self._dispatcher.offer(route, request.path, request.headers, body, trace)
            if job is not None:
                job.primary_done(capture)
        if trace is not None:
            trace.finish(capture, body, job, status)
        if self._observe is not None:
            self._observe(capture, route, body, overhead, job)


def make_server(
    handler: ProxyHandler, limits: Limits, on_refused: RefusedHook | None = None
) -> web.Server:
    def request_factory(message, payload, protocol, writer, task):  # type: ignore[no-untyped-def]
        return web.BaseRequest(
            message, payload, protocol, writer, task, protocol._loop,
            client_max_size=limits.max_body_bytes,
        )  # fmt: skip

    # GuardedServer: head limits, slow-client timeouts, HTTP/1.0 framing (proxy/guard.py).
    return GuardedServer(handler, limits, on_refused, request_factory=request_factory)
