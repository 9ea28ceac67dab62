"""Turns upstream outcomes into metric observations (the metrics themselves live in metrics.py),
and samples the process-level gauges: event-loop lag and open connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.protocols.openai import (
    InvalidRequest,
    error_type_for_status,
)
from shadoweval.proxy.candidate import CandidateClient
from shadoweval.proxy.shadow import ParsedOnce
from shadoweval.routes import METRIC_ROUTES
from shadoweval.types import Capture, Outcome, Route

log = logging.getLogger(__name__)


class PrimaryAnswer(ParsedOnce):
    """The primary's answer to a request no shadow job holds here (not mirrored, or
    mirrored by the shadow worker): the metrics and the spans share one parse of it."""

    __slots__ = ("_capture",)

    def __init__(self, route: Route, body: bytes, capture: Capture) -> None:
        super().__init__(route, body)
        self._capture = capture

    def _primary_capture(self) -> Capture:
        return self._capture


class Recorder:
    def __init__(self, metrics: Metrics, primary_name: str, prices: PriceTable) -> None:
        self._m = metrics
        self._primary = primary_name
        self._prices = prices
        self._overhead = {r: metrics.overhead.labels(r) for r in METRIC_ROUTES}
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self._attempts: dict[tuple[str, str, int, str], Counter] = {}

    def reprice(self, prices: PriceTable) -> None:
        """A reload's price table, for the answers observed from now on."""
        self._prices = prices

    def primary(
        self,
        capture: Capture,
        route: Route | None,
        body: bytes,
        overhead: float,
        parsed: ParsedOnce | None,
    ) -> None:
        """Every primary call; runs via call_soon after the handler returned. ``parsed``
        holds the answer's one parse, shared with the spans and the shadows."""
        self._overhead[route or "other"].observe(max(overhead, 0.0))
        self.attempt_of("primary", self._primary, capture)
        if route is None:
            self._plain(capture)
            return
        if parsed is None:
            parsed = PrimaryAnswer(route, body, capture)
        try:
            outcome = parsed.primary_outcome(self._primary, self._prices)
        except InvalidRequest:
            self._plain(capture, route)
            return
        self.outcome(outcome, route)

    def _plain(self, capture: Capture, route: str = "other") -> None:
        """A call whose answer is not parsed: latency and outcome only."""
        status_error = error_type_for_status(capture.status) if capture.status else None
        error = capture.error_type or status_error
        result = "error" if error else "ok"
        labels = ("primary", self._primary, "none", route, result)
        self._m.requests.labels(*labels).inc()
        self._m.request_duration.labels(*labels).observe(capture.latency_s)
        if error:
            self._m.errors.labels("primary", self._primary, error).inc()

    def attempt(self, client: CandidateClient, attempt: int, cap: Capture, retrying: bool) -> None:
        self.attempt_of(client.role, client.name, cap, attempt)

    def attempt_of(
        self, role: str, upstream: str, cap: Capture, attempt: int | None = None
    ) -> None:
        n = attempt if attempt is not None else cap.attempts
        error = cap.error_type or (error_type_for_status(cap.status) if cap.status else None)
        key = (role, upstream, n, error or "ok")
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self._m.attempts.labels(role, upstream, str(n), key[3])
        child.inc()
        if n > 1:
            self._m.retries.labels(role, upstream, "error" if error else "ok").inc()

    def outcome(self, out: Outcome, route: Route) -> None:
        m = self._m
        labels = (out.role, out.upstream, m.model_label(out.model), route)
        s = self._series.get(labels)
        if s is None:
            s = self._series[labels] = _Series(m, labels)
        if out.capture_truncated:
            m.capture_truncated.labels(out.role, out.upstream).inc()
        if out.error_type:
            s.failed.inc()
            s.failed_duration.observe(out.latency_s)
            m.errors.labels(out.role, out.upstream, out.error_type).inc()
        else:
            s.ok.inc()
            s.ok_duration.observe(out.latency_s)
        if out.ttft_s is not None:
            s.ttft.observe(out.ttft_s)
            tokens = out.usage.output_tokens if out.usage else None
            if tokens and tokens > 1 and out.error_type is None:
                s.tpot.observe((out.latency_s - out.ttft_s) / (tokens - 1))
        usage = out.usage
        if usage is not None:
            if usage.input_tokens:
                s.input_tokens.inc(usage.input_tokens)
            if usage.output_tokens:
                s.output_tokens.inc(usage.output_tokens)
            if usage.cached_input_tokens:
                s.cached_tokens.inc(usage.cached_input_tokens)
        if out.cost_usd is not None:
            s.cost.inc(out.cost_usd)
            s.request_cost.observe(out.cost_usd)
        elif out.error_type is None:
            m.unpriced.labels(out.role, out.upstream).inc()


class _Series:
    """The children of one (role, upstream, model, route), looked up once: ``labels()``
    takes a lock and hashes its arguments on every call."""

    def __init__(self, m: Metrics, labels: tuple[str, str, str, str]) -> None:
        self.ok = m.requests.labels(*labels, "ok")
        self.failed = m.requests.labels(*labels, "error")
        self.ok_duration = m.request_duration.labels(*labels, "ok")
        self.failed_duration = m.request_duration.labels(*labels, "error")
        self.ttft = m.ttft.labels(*labels)
        self.tpot = m.tpot.labels(*labels)
        self.input_tokens = m.tokens.labels(*labels, "input")
        self.output_tokens = m.tokens.labels(*labels, "output")
        self.cached_tokens = m.tokens.labels(*labels, "cached_input")
        self.cost = m.cost.labels(*labels)
        self.request_cost = m.request_cost.labels(*labels)


class Heartbeat:
    """Periodically observes event-loop lag, open connections and fixed hourly costs."""

    def __init__(
        self,
        metrics: Metrics,
        interval_s: float,
        prices: PriceTable,
        roles: dict[str, str],
        connections: Callable[[], dict[tuple[str, str], int]],
    ) -> None:
        self._m = metrics
        self._interval = interval_s
        self._prices = prices
        self._roles = roles
        self._connections = connections
        self._task: asyncio.Task[None] | None = None

    def reconfigure(self, prices: PriceTable, roles: dict[str, str]) -> None:
        """A reload's fixed hourly costs and upstreams."""
        self._prices, self._roles = prices, roles

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shadoweval-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            expected = time.monotonic() + self._interval
            await asyncio.sleep(self._interval)
            now = time.monotonic()
            # A loop blocked by CPU work wakes this timer late; the delay is the lag.
            self._m.loop_lag.observe(max(now - expected, 0.0))
            for (direction, upstream), count in self._connections().items():
                self._m.open_connections.labels(direction, upstream).set(count)
            for upstream, per_hour in self._prices.hourly.items():
                role = self._roles.get(upstream)
                if role is not None:
                    self._m.cost.labels(role, upstream, "fixed", "all").inc(
                        per_hour * (now - last) / 3600
                    )
            last = now
