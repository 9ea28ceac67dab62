"""What becomes of a candidate's answer once its last byte is in: parsed, priced, paired
with the primary's and handed to the sink as one record.

In one process the dispatcher calls :meth:`Pairing.record` itself. With the shadow worker
the worker process only sends, reads and timestamps (at normal priority, so the times are
the wire's), and hands each finished capture to its idle child
(:mod:`shadoweval.proxy.pairing_child`), which runs this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shadoweval.config.proxy import Candidate, Config
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.protocols.openai import parse_answer
from shadoweval.records import build_pair, fit, record_limit
from shadoweval.redaction import Redactor
from shadoweval.sinks import Sink
from shadoweval.types import Capture, Json, Outcome, Route

if TYPE_CHECKING:
    from shadoweval.proxy.shadow import ShadowJob
    from shadoweval.tracing import ShadowSpan

# Called with every parsed upstream outcome (metrics hook).
ObserveFn = Callable[[Outcome, Route], None]

# A finished shadow: (candidate, job, payload sent, capture of the last attempt,
# time.perf_counter() when the first attempt was sent).
# (candidate, job, payload sent, its answer, when it was sent, whether the conversation
# was rebuilt): where a finished shadow goes.
FinishFn = Callable[[Candidate, "ShadowJob", Json, Capture, float, bool], None]


class Pairing:
    def __init__(
        self,
        sink: Sink,
        redactor: Redactor,
        metrics: Metrics,
        primary_name: str,
        prices: PriceTable,
        observe: ObserveFn | None = None,
        max_record_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._sink = sink
        self._redactor = redactor
        self._metrics = metrics
        self._primary_name = primary_name
        self._prices = prices
        self._observe = observe
        self._max_record = max_record_bytes

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        sink: Sink,
        metrics: Metrics,
        prices: PriceTable,
        observe: ObserveFn | None = None,
    ) -> Pairing:
        """The pairing of a configuration: its redaction, primary and record limit."""
        return cls(
            sink,
            Redactor(cfg.redaction),
            metrics,
            cfg.primary.name,
            prices,
            observe,
            record_limit(cfg),
        )

    def record(
        self,
        cand: Candidate,
        job: ShadowJob,
        payload: Json,
        capture: Capture,
        sent_at: float,
        span: ShadowSpan | None = None,
        rebuilt: bool = False,
    ) -> None:
        """Parse the candidate's answer and write its pair record (the primary's answer is
        in: the dispatcher waited for it). ``span``: one started when it was sent; without
        it, one is made from the capture's times (the worker's idle child)."""
        parse_started = time.perf_counter()
        outcome = parse_answer(job.route, payload, capture, upstream=cand.name, role=cand.role)
        self._prices.annotate(outcome, payload.get("model"))
        # perf_counter is the system's monotonic clock: comparable across this host's
        # processes, so the proxy's hand-off time is a valid origin here.
        outcome.queue_wait_s = max(0.0, sent_at - job.queued_at)
        outcome.parse_wait_s = max(0.0, parse_started - (capture.started + capture.latency_s))
        if span is None and job.trace is not None:
            span = job.trace.shadow(cand, job.info.request_id, payload, started=sent_at)
        if span is not None:
            span.finish(capture, outcome)
        if self._observe is not None:
            self._observe(outcome, job.route)
        primary = job.primary_outcome(self._primary_name, self._prices)
        record = build_pair(
            job.info,
            job.request(),
            primary,
            outcome,
            self._redactor,
            job.record_parts,
            rebuilt=rebuilt,
        )
        self._sink.put(fit(record, self._max_record), job.info.request_id.encode())
        self._metrics.pairs.labels(cand.name).inc()
