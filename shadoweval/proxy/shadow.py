"""The shadow dispatcher: sampling, one bounded queue and a fixed worker pool per candidate,
pairing each candidate answer with the primary's, and handing records to the sink.

Nothing here can delay or fail the caller: ``offer`` is synchronous and O(candidates), and
every later step runs in the candidates' own tasks. A full queue drops and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shadoweval.config import Config
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.proxy.breaker import Breaker
from shadoweval.proxy.candidate import AttemptHook, CandidateClient
from shadoweval.proxy.loops import hop_header
from shadoweval.proxy.openai import InvalidRequest, parse_answer, parse_request
from shadoweval.records import TASK_HEADER, RequestInfo, build_pair, fit, record_limit
from shadoweval.redaction import Redactor
from shadoweval.routes import refers_to_state
from shadoweval.sampling import Sampler
from shadoweval.sinks import Sink
from shadoweval.types import Capture, Json, Outcome, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import TraceLink

log = logging.getLogger(__name__)

# Called with every parsed upstream outcome (metrics hook).
ObserveFn = Callable[[Outcome, Route], None]


class ParsedOnce:
    """A request and its primary's answer, each parsed at most once, whoever asks first:
    the candidates of a shadow job, or the metrics and spans of a request no job holds."""

    __slots__ = ("_primary_outcome", "_request", "body", "route")

    def __init__(self, route: Route, body: bytes) -> None:
        self.route = route
        self.body = body
        self._request: Json | InvalidRequest | None = None
        self._primary_outcome: Outcome | None = None

    def _primary_capture(self) -> Capture:
        raise NotImplementedError

    def request(self) -> Json:
        """The parsed request body; raises InvalidRequest (every time) if it is not one."""
        if self._request is None:
            try:
                self._request = parse_request(self.body)
            except InvalidRequest as exc:
                self._request = exc
        if isinstance(self._request, InvalidRequest):
            raise self._request
        return self._request

    def primary_outcome(self, upstream: str, prices: PriceTable) -> Outcome:
        """The primary's parsed and priced answer."""
        if self._primary_outcome is None:
            request = self.request()
            outcome = parse_answer(
                self.route, request, self._primary_capture(), upstream=upstream, role="primary"
            )
            self._primary_outcome = prices.annotate(outcome, request.get("model"))
        return self._primary_outcome


class ShadowJob(ParsedOnce):
    """One sampled request, shared by every candidate it was queued for."""

    __slots__ = ("caller_auth", "info", "primary", "record_parts", "trace")

    def __init__(
        self,
        info: RequestInfo,
        route: Route,
        body: bytes,
        caller_auth: str | None,
        trace: TraceLink | None = None,
    ) -> None:
        super().__init__(route, body)
        self.info = info
        self.caller_auth = caller_auth
        self.trace = trace
        self.primary: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        # The redacted request and primary side, built once for all candidates' records.
        self.record_parts: dict[str, Any] = {}

    def _primary_capture(self) -> Capture:
        return self.primary.result()

    def primary_done(self, capture: Capture) -> None:
        if not self.primary.done():
            self.primary.set_result(capture)


class RequestIds:
    """Unique request ids: a random per-process prefix and a counter (uuid4 costs a
    system call for randomness on every request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class _Lane:
    """A candidate's queue and workers."""

    def __init__(self, client: CandidateClient, metrics: Metrics) -> None:
        self.client = client
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(client.cfg.queue_size)
        self.workers: list[asyncio.Task[None]] = []
        self.active = 0
        name = client.name
        self.depth = metrics.queue_depth.labels(name)
        self.in_flight = metrics.in_flight.labels(name)
        self.sampled_in = metrics.sampled.labels(name, "in")
        self.sampled_out = metrics.sampled.labels(name, "out")
        self.drop_full = metrics.dropped.labels(name, "queue_full")
        self.drop_rate = metrics.dropped.labels(name, "rate_limit")
        self.drop_shutdown = metrics.dropped.labels(name, "shutdown")
        self.drop_invalid = metrics.dropped.labels(name, "invalid_request")
        self.drop_circuit = metrics.dropped.labels(name, "circuit_open")
        self.drop_stateful = metrics.dropped.labels(name, "stateful")
        breaker = client.cfg.circuit_breaker
        self.breaker = (
            Breaker(name, breaker, metrics.circuit_open.labels(name)) if breaker.enabled else None
        )
        self.err_full = metrics.errors.labels(client.role, name, "dropped_queue_full")
        self.err_rate = metrics.errors.labels(client.role, name, "dropped_rate_limit")
        self.err_shutdown = metrics.errors.labels(client.role, name, "dropped_shutdown")
        self.pairs = metrics.pairs.labels(name)


class ShadowDispatcher:
    def __init__(
        self,
        clients: list[CandidateClient],
        sampler: Sampler,
        sink: Sink,
        redactor: Redactor,
        metrics: Metrics,
        primary_name: str,
        primary_timeout_s: float,
        prices: PriceTable,
        observe: ObserveFn | None = None,
        max_record_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.prices = prices
        self._max_record = max_record_bytes
        self._lanes = [_Lane(c, metrics) for c in clients]
        self._sampler = sampler
        self._sink = sink
        self._redactor = redactor
        self._metrics = metrics
        self._primary_name = primary_name
        # A candidate may finish long before the primary; wait for it, but not forever.
        self._primary_wait = primary_timeout_s + 5.0
        self._observe = observe
        self._keeps_caller_auth = any(c.cfg.forward_caller_auth for c in clients)
        self._closing = False
        self._ids = RequestIds()

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        sink: Sink,
        metrics: Metrics,
        prices: PriceTable,
        on_attempt: AttemptHook | None = None,
        observe: ObserveFn | None = None,
    ) -> ShadowDispatcher:
        """The candidates' clients and their dispatcher, as the proxy or its shadow worker
        runs them."""
        hop = hop_header(cfg.listen)
        clients = [
            CandidateClient(
                c,
                cfg.limits.capture_max_bytes,
                on_attempt=on_attempt,
                hop=hop,
                on_stale=metrics.stale_hook(c.role, c.name),
            )
            for c in cfg.candidates
        ]
        return cls(
            clients,
            Sampler(cfg.sampling),
            sink,
            Redactor(cfg.redaction),
            metrics,
            primary_name=cfg.primary.name,
            primary_timeout_s=cfg.primary.timeout_s,
            prices=prices,
            observe=observe,
            max_record_bytes=record_limit(cfg),
        )

    @property
    def clients(self) -> list[CandidateClient]:
        return [lane.client for lane in self._lanes]

    # -- called on the hot path -------------------------------------------------------

    def offer(
        self,
        route: Route,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        trace: TraceLink | None = None,
        mirrored: bool = False,
    ) -> ShadowJob | None:
        """Sample and enqueue; returns the job to complete with the primary's capture.
        ``mirrored``: the global sampling decision was already taken (the shadow worker's
        proxy takes it, so unsampled requests never cross to the worker)."""
        if self._closing or not self._lanes:
            return None
        key = self._sampler.key(headers, body)
        if not mirrored and not self._sampler.mirrored(key):
            for lane in self._lanes:
                lane.sampled_out.inc()
            return None
        job: ShadowJob | None = None
        for lane in self._lanes:
            if not self._sampler.candidate_in(key, lane.client.name, lane.client.cfg.sample_rate):
                lane.sampled_out.inc()
                continue
            lane.sampled_in.inc()
            if lane.breaker is not None and not lane.breaker.allow():
                lane.drop_circuit.inc()
                continue
            if not self._sampler.take_budget():
                lane.drop_rate.inc()
                lane.err_rate.inc()
                continue
            if lane.queue.full():
                lane.drop_full.inc()
                lane.err_full.inc()
                continue
            if job is None:
                job = self._new_job(route, path, headers, key, body, trace)
            lane.queue.put_nowait(job)
            lane.depth.inc()
        return job

    def _new_job(
        self,
        route: Route,
        path: str,
        headers: Mapping[str, str],
        key: bytes | None,
        body: bytes,
        trace: TraceLink | None,
    ) -> ShadowJob:
        info = RequestInfo(
            request_id=self._ids.next(),
            received_at=time.time(),
            route=route,
            path=path,
            task=headers.get(TASK_HEADER),
            sampling_key=hashlib.blake2b(key, digest_size=8).hexdigest() if key else None,
            trace_id=trace.trace_id if trace is not None else None,
        )
        auth = headers.get("Authorization") if self._keeps_caller_auth else None
        return ShadowJob(info, route, body, auth, trace)

    @property
    def accepting(self) -> bool:
        """Whether ``offer`` may queue anything (callers skip building its arguments)."""
        return bool(self._lanes) and not self._closing

    # -- the candidates' side --------------------------------------------------------

    async def start(self) -> None:
        for lane in self._lanes:
            for i in range(lane.client.cfg.concurrency):
                lane.workers.append(
                    asyncio.create_task(self._work(lane), name=f"shadow-{lane.client.name}-{i}")
                )

    async def _work(self, lane: _Lane) -> None:
        while True:
            job = await lane.queue.get()
            lane.depth.dec()
            lane.active += 1
            lane.in_flight.inc()
            try:
                await self._run(lane, job)
            except asyncio.CancelledError:
                lane.drop_shutdown.inc()
                lane.err_shutdown.inc()
                raise
            except Exception:  # a shadow bug is logged and counted, never propagated
                log.exception("shadow request to %s failed unexpectedly", lane.client.name)
                self._metrics.errors.labels(lane.client.role, lane.client.name, "internal").inc()
            finally:
                lane.active -= 1
                lane.in_flight.dec()
                lane.queue.task_done()

    async def _run(self, lane: _Lane, job: ShadowJob) -> None:
        client = lane.client
        breaker = lane.breaker
        if breaker is not None and not breaker.allow():  # queued before the circuit opened
            lane.drop_circuit.inc()
            return
        try:
            request = job.request()
        except InvalidRequest:
            lane.drop_invalid.inc()
            self._metrics.errors.labels(client.role, client.name, "invalid_request").inc()
            return
        if client.cfg.stateful == "skip" and refers_to_state(job.route, request):
            lane.drop_stateful.inc()  # it would answer without the conversation it continues
            return
        payload = client.transform(job.route, request)
        ticket = None
        if breaker is not None:
            ticket = breaker.begin()
            if ticket is None:  # half-open, and its one trial call is under way
                lane.drop_circuit.inc()
                return
        span = job.trace.shadow(client, job.info.request_id, payload) if job.trace else None
        try:
            capture = await client.send(job.info.path, payload, job.caller_auth)
        except BaseException:
            if breaker is not None and ticket is not None:
                breaker.abort(ticket)
            raise
        if breaker is not None and ticket is not None:
            breaker.end(ticket, capture.error_type)
        outcome = parse_answer(job.route, payload, capture, upstream=client.name, role=client.role)
        self.prices.annotate(outcome, payload.get("model"))
        if span is not None:
            span.finish(capture, outcome)
        if self._observe is not None:
            self._observe(outcome, job.route)
        if not job.primary.done():
            try:
                async with asyncio.timeout(self._primary_wait):
                    await asyncio.shield(job.primary)
            except TimeoutError:
                log.warning("primary answer for %s never completed", job.info.request_id)
                return
        self._emit(lane, job, outcome)

    def _emit(self, lane: _Lane, job: ShadowJob, candidate: Outcome) -> None:
        primary = job.primary_outcome(self._primary_name, self.prices)
        record = build_pair(
            job.info, job.request(), primary, candidate, self._redactor, job.record_parts
        )
        self._sink.put(fit(record, self._max_record), job.info.request_id.encode())
        lane.pairs.inc()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return sum(lane.queue.qsize() + lane.active for lane in self._lanes)

    async def close(self, grace_s: float) -> None:
        """Stop taking jobs, let queued and in-flight shadows finish within ``grace_s``."""
        self._closing = True
        deadline = time.monotonic() + grace_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for lane in self._lanes:
            while not lane.queue.empty():
                lane.queue.get_nowait()
                lane.queue.task_done()
                lane.depth.dec()
                lane.drop_shutdown.inc()
                lane.err_shutdown.inc()
            for task in lane.workers:
                task.cancel()
        for lane in self._lanes:
            for task in lane.workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            lane.workers.clear()
