"""The proxy's request handler: offer the request to the shadow dispatcher, relay the
primary's answer. Everything the caller waits for is in ``ProxyHandler.__call__``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shadoweval.proxy.forward import Forwarder
from shadoweval.proxy.http import Request, Responder
from shadoweval.proxy.shadow import ParsedOnce, ShadowDispatcher, ShadowJob
from shadoweval.proxy.worker import Handoff
from shadoweval.routes import route_of
from shadoweval.telemetry import PrimaryAnswer
from shadoweval.types import Capture, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import RequestTrace, Tracer

# Called after each primary answer, off the caller's path (metrics hook).
PrimaryObserver = Callable[[Capture, "Route | None", bytes, float, "ParsedOnce | None"], None]


class ProxyHandler:
    def __init__(
        self,
        forwarder: Forwarder,
        dispatcher: ShadowDispatcher | None,
        worker: Handoff | None = None,
        observe: PrimaryObserver | None = None,
        tracer: Tracer | None = None,
        shadows_with_request: bool = False,
    ) -> None:
        self._forwarder = forwarder
        self._with_request = shadows_with_request
        self._tracer = tracer
        self._dispatcher = dispatcher
        self._worker = worker
        self._observe = observe
        self._loop = asyncio.get_running_loop()

    def reconfigure(self, shadows_with_request: bool) -> None:
        """A reload's ``sampling.send_shadows`` (the dispatcher reconfigures in place)."""
        self._with_request = shadows_with_request

    async def __call__(self, request: Request, out: Responder) -> None:
        entered = time.perf_counter()
        body = request.body
        route = route_of(request.path) if request.method == "POST" else None
        trace = self._tracer.start(request, route, entered) if self._tracer is not None else None
        job = None
        dispatcher = self._dispatcher
        if route and self._with_request and dispatcher is not None and dispatcher.accepting:
            job = dispatcher.offer(route, request.raw_path, request.headers, body, trace)
        capture = await self._forwarder.relay(request, out, trace)
        if job is not None:
            job.primary_done(capture)
        # Overhead: time in this handler that was not spent waiting for the upstream.
        overhead = time.perf_counter() - entered - capture.latency_s
        # Runs after this task has handed the answer to the transport: shadows, metrics and
        # spans never delay it.
        self._loop.call_soon(
            self._after, request, route, body, capture, overhead, job, trace, out.status
        )

    def _after(
        self,
        request: Request,
        route: Route | None,
        body: bytes,
        capture: Capture,
        overhead: float,
        job: ShadowJob | None,
        trace: RequestTrace | None,
        status: int,
    ) -> None:
        if route and not self._with_request:
            dispatcher = self._dispatcher
            if dispatcher is not None and dispatcher.accepting:
                job = dispatcher.offer(route, request.raw_path, request.headers, body, trace)
                if job is not None:
                    job.primary_done(capture)
            elif self._worker is not None and self._worker.accepting:
                self._worker.send(route, request, capture, trace)
        # One parse of the primary's answer for the metrics and the spans: the job's when
        # mirrored here, else parsed on first use.
        parsed: ParsedOnce | None = job
        if parsed is None and route is not None:
            parsed = PrimaryAnswer(route, body, capture)
        if trace is not None:
            trace.finish(capture, body, parsed, status)
        if self._observe is not None:
            self._observe(capture, route, body, overhead, parsed)
