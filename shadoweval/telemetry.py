"""Turns upstream outcomes into metric observations (the metrics themselves live in metrics.py)."""

from __future__ import annotations

import logging

from shadoweval.metrics import Metrics
from shadoweval.proxy.openai import (
    InvalidRequest,
    error_type_for_status,
    parse_answer,
    parse_request,
)
from shadoweval.proxy.shadow import ShadowJob
from shadoweval.types import Capture, Outcome, Route

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, metrics: Metrics, primary_name: str) -> None:
        self._m = metrics
        self._primary = primary_name
        self._overhead = {
            r: metrics.overhead.labels(r)
            for r in ("chat", "completions", "embeddings", "responses", "other")
        }

    def primary(
        self,
        capture: Capture,
        route: Route | None,
        body: bytes,
        overhead: float,
        job: ShadowJob | None,
    ) -> None:
        self._overhead[route or "other"].observe(max(overhead, 0.0))
        if route is None:
            self._plain(capture)
            return
        try:
            outcome = (
                job.primary_outcome(self._primary)
                if job is not None
                else parse_answer(
                    route, parse_request(body), capture, upstream=self._primary, role="primary"
                )
            )
        except InvalidRequest:
            self._plain(capture, route)
            return
        self.outcome(outcome, route)

    def _plain(self, capture: Capture, route: str = "other") -> None:
        """A call whose answer is not parsed: latency and outcome only."""
        error = capture.error_type or (
            error_type_for_status(capture.status) if capture.status else None
        )
        outcome = "error" if error else "ok"
        self._m.requests.labels("primary", self._primary, "none", route, outcome).inc()
        self._m.request_duration.labels("primary", self._primary, "none", route, outcome).observe(
            capture.latency_s
        )
        if error:
            self._m.errors.labels("primary", self._primary, error).inc()

    def outcome(self, out: Outcome, route: Route) -> None:
        m = self._m
        model = m.model_label(out.model)
        result = "error" if out.error_type else "ok"
        labels = (out.role, out.upstream, model, route)
        m.requests.labels(*labels, result).inc()
        m.request_duration.labels(*labels, result).observe(out.latency_s)
        if out.error_type:
            m.errors.labels(out.role, out.upstream, out.error_type).inc()
        if out.ttft_s is not None:
            m.ttft.labels(*labels).observe(out.ttft_s)
            tokens = out.usage.output_tokens if out.usage else None
            if tokens and tokens > 1 and out.error_type is None:
                m.tpot.labels(*labels).observe((out.latency_s - out.ttft_s) / (tokens - 1))
        if out.usage is not None:
            if out.usage.input_tokens:
                m.tokens.labels(*labels, "input").inc(out.usage.input_tokens)
            if out.usage.output_tokens:
                m.tokens.labels(*labels, "output").inc(out.usage.output_tokens)
            if out.usage.cached_input_tokens:
                m.tokens.labels(*labels, "cached_input").inc(out.usage.cached_input_tokens)
