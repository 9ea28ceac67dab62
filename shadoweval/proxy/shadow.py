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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shadoweval.campaign import Campaign, Clock, request_model
from shadoweval.campaign_store import CampaignStore
from shadoweval.config.proxy import RECORD_HEADER_MAX_CHARS, CampaignState, Candidate, Config
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.protocols.openai import InvalidRequest, parse_answer, parse_request
from shadoweval.proxy.breaker import Breaker
from shadoweval.proxy.candidate import AttemptHook, CallerAuth, CandidateClient
from shadoweval.proxy.conversations import ConversationStore
from shadoweval.proxy.loops import hop_header
from shadoweval.proxy.pairing import FinishFn, ObserveFn, Pairing
from shadoweval.records import TASK_HEADER, RequestInfo, record_limit, utf8
from shadoweval.redaction import Redactor
from shadoweval.routes import credential_headers, deployment_of, refers_to_state
from shadoweval.sampling import Sampler
from shadoweval.sinks import Sink
from shadoweval.types import Capture, Json, Outcome, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import TraceLink

log = logging.getLogger(__name__)

__all__ = ["ObserveFn", "ParsedOnce", "ShadowDispatcher", "ShadowJob"]


class ParsedOnce:
    """A request and its primary's answer, each parsed at most once, whoever asks first:
    the candidates of a shadow job, or the metrics and spans of a request no job holds."""

    __slots__ = ("_primary_outcome", "_request", "body", "deployment", "route")

    def __init__(self, route: Route, body: bytes, deployment: str | None = None) -> None:
        self.route = route
        self.body = body
        # An Azure OpenAI deployment path names the model: the request's model if it has none.
        self.deployment = deployment
        self._request: Json | InvalidRequest | None = None
        self._primary_outcome: Outcome | None = None

    def _primary_capture(self) -> Capture:
        raise NotImplementedError

    def parsed(self, request: Json) -> None:
        """The request, already parsed by whoever needed it first."""
        if self.deployment is not None and "model" not in request:
            request["model"] = self.deployment
        self._request = request

    def request(self) -> Json:
        """The parsed request body; raises InvalidRequest (every time) if it is not one."""
        if self._request is None:
            try:
                self._request = parse_request(self.body)
            except InvalidRequest as exc:
                self._request = exc
            else:
                if self.deployment is not None and "model" not in self._request:
                    self._request["model"] = self.deployment
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

    __slots__ = (
        "caller_auth",
        "config_digest",
        "info",
        "link",
        "pairing",
        "primary",
        "query",
        "queued_at",
        "rebuilt",
        "record_parts",
        "trace",
    )

    def __init__(
        self,
        info: RequestInfo,
        route: Route,
        body: bytes,
        caller_auth: CallerAuth,
        trace: TraceLink | None = None,
        query: str = "",
    ) -> None:
        super().__init__(route, body, info.deployment)
        self.info = info
        self.caller_auth = caller_auth
        self.trace = trace
        self.query = query  # the caller's query string, passed on to candidates
        # The whole conversation of a stateful request (stateful: rebuild), built once for
        # every candidate; False: tried and not resolvable.
        self.rebuilt: Json | bool | None = None
        self.primary: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        # time.perf_counter() when it was handed over (the proxy's, in worker mode): the
        # origin of the record's queue_wait_s.
        self.queued_at = time.perf_counter()
        # The shadow worker's: the SERVER span's context, for the idle child's spans.
        self.link: tuple[int, int, int] | None = None
        # The redacted request and primary side, built once for all candidates' records.
        self.record_parts: dict[str, Any] = {}
        # The pairing (redaction, prices, sink) of the configuration it was offered under,
        # and that configuration's digest (the pairing process picks its pairing by it).
        self.pairing: Pairing | None = None
        self.config_digest = ""

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

    def __init__(self, client: CandidateClient, metrics: Metrics, clock: Clock) -> None:
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
        self.stateful = client.cfg.stateful
        breaker = client.cfg.circuit_breaker
        self.breaker = (
            Breaker(name, breaker, metrics.circuit_open.labels(name)) if breaker.enabled else None
        )
        self.err_full = metrics.errors.labels(client.role, name, "dropped_queue_full")
        self.err_rate = metrics.errors.labels(client.role, name, "dropped_rate_limit")
        self.err_shutdown = metrics.errors.labels(client.role, name, "dropped_shutdown")
        self.unmatched = metrics.sampled.labels(name, "unmatched")
        self.drop_budget = metrics.dropped.labels(name, "budget")
        self.drop_schedule = metrics.dropped.labels(name, "schedule")
        lane_breaker = self.breaker
        self.campaign = Campaign(
            client.cfg,
            metrics,
            clock,
            circuit=(lambda: lane_breaker.state != "closed") if lane_breaker else None,
        )


def recorded_headers(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str] | None:
    """The values of the ``record.headers`` a request carried (valid UTF-8, each cut to
    RECORD_HEADER_MAX_CHARS); None when none are configured."""
    if not names:
        return None
    return {
        name: (utf8(value) or "")[:RECORD_HEADER_MAX_CHARS]
        for name in names
        if (value := headers.get(name)) is not None
    }


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
        clock: Clock = time.time,
        conversations: ConversationStore | None = None,
        finish: FinishFn | None = None,
        record_headers: Sequence[str] = (),
        state: CampaignState | None = None,
    ) -> None:
        """``clock``: unix seconds for the campaigns' schedules and days (tests fake it).
        ``finish``: where finished shadows go instead of being paired here (the shadow
        worker hands them to its idle child)."""
        self.prices = prices
        # Kept Responses turns, when a candidate rebuilds stateful conversations.
        self._conversations = conversations
        self._clock = clock
        self._lanes = [_Lane(c, metrics, clock) for c in clients]
        # Lanes a reload removed or replaced: finishing what they hold with their settings.
        self._retiring: dict[_Lane, asyncio.Task[None]] = {}
        self._observe = observe
        # Builds a candidate's client (a reload's new candidates); set by from_config.
        self.make_client: Callable[[Candidate], CandidateClient] | None = None
        # Only a model match needs the request body parsed in ``offer``.
        self._match_models = any(lane.campaign.match.needs_model for lane in self._lanes)
        self._sampler = sampler
        self._metrics = metrics
        self._primary_name = primary_name
        self._pairing = Pairing(
            sink, redactor, metrics, primary_name, prices, observe, max_record_bytes
        )
        self._finish = finish
        # A candidate may finish long before the primary; wait for it, but not forever.
        self._primary_wait = primary_timeout_s + 5.0
        self._keeps_caller_auth = any(c.cfg.forward_caller_auth for c in clients)
        self._record_headers = tuple(record_headers)
        # The digest of the configuration in force (from_config and reconfigure set it).
        self.config_digest = ""
        self._store = (
            CampaignStore(state.path, self._campaigns, state.interval_s)
            if state is not None and state.path is not None
            else None
        )
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
        clock: Clock = time.time,
        finish: FinishFn | None = None,
    ) -> ShadowDispatcher:
        """The candidates' clients and their dispatcher, as the proxy or its shadow worker
        runs them."""
        hop = hop_header(cfg.listen)

        def make_client(c: Candidate) -> CandidateClient:
            return CandidateClient(
                c,
                cfg.limits.capture_max_bytes,
                on_attempt=on_attempt,
                hop=hop,
                on_stale=metrics.stale_hook(c.role, c.name),
            )

        dispatcher = cls(
            [make_client(c) for c in cfg.candidates],
            Sampler(cfg.sampling),
            sink,
            Redactor(cfg.redaction),
            metrics,
            primary_name=cfg.primary.name,
            primary_timeout_s=cfg.primary.timeout_s,
            prices=prices,
            observe=observe,
            max_record_bytes=record_limit(cfg),
            conversations=(
                ConversationStore(cfg.conversations.max_turns, cfg.conversations.max_bytes, metrics)
                if any(c.stateful == "rebuild" for c in cfg.candidates)
                else None
            ),
            clock=clock,
            finish=finish,
            record_headers=cfg.record.headers,
            state=cfg.campaign_state,
        )
        dispatcher.make_client = make_client
        dispatcher.config_digest = cfg.digest()
        return dispatcher

    def reconfigure(self, cfg: Config, prices: PriceTable, sink: Sink) -> None:
        """A reloaded configuration, applied at once (no await: the next offer sees it).
        A candidate whose settings are unchanged keeps its lane: queue, workers, breaker,
        campaign and counters. A new one gets a lane; a removed or changed one stops being
        offered shadows, finishes what it holds with its old settings, then closes (a
        changed one's campaign counters carry over to its new lane). Sampling state is
        kept unless its section changed; redaction, pricing and the sink apply to shadows
        offered from now on."""
        assert self.make_client is not None, "built by from_config"
        m = self._metrics
        old = {lane.client.name: lane for lane in self._lanes}
        lanes: list[_Lane] = []
        for cand in cfg.candidates:
            lane = old.pop(cand.name, None)
            if lane is not None and lane.client.cfg == cand:
                lanes.append(lane)
                continue
            if lane is not None:
                Campaign.unexport(m, cand.name)  # the new limits export their own series
                self._retire(lane)
            new = _Lane(self.make_client(cand), m, self._clock)
            if lane is not None:
                new.campaign.adopt(lane.campaign)
            self._start_lane(new)
            lanes.append(new)
        for name, lane in old.items():
            Campaign.unexport(m, name)
            self._retire(lane)
        self._lanes = lanes
        self._match_models = any(lane.campaign.match.needs_model for lane in lanes)
        self._keeps_caller_auth = any(lane.client.cfg.forward_caller_auth for lane in lanes)
        self._record_headers = tuple(cfg.record.headers)
        if cfg.sampling != self._sampler.cfg:
            self._sampler = Sampler(cfg.sampling)
        if self._conversations is None and any(c.stateful == "rebuild" for c in cfg.candidates):
            self._conversations = ConversationStore(
                cfg.conversations.max_turns, cfg.conversations.max_bytes, m
            )
        self.prices = prices
        self.config_digest = cfg.digest()
        self._pairing = Pairing.from_config(cfg, sink, m, prices, self._observe)

    def _retire(self, lane: _Lane) -> None:
        self._retiring[lane] = asyncio.get_running_loop().create_task(self._drain(lane))

    async def _drain(self, lane: _Lane) -> None:
        """A lane a reload took away: its queued and in-flight shadows finish, then its
        workers and connections go."""
        await lane.queue.join()
        for task in lane.workers:
            task.cancel()
        for task in lane.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lane.workers.clear()
        await lane.client.pool.close()
        self._retiring.pop(lane, None)

    @property
    def clients(self) -> list[CandidateClient]:
        return [lane.client for lane in self._lanes]

    @property
    def campaigns(self) -> dict[str, Campaign]:
        """Each candidate's campaign state (what a reload carries over)."""
        return {lane.client.name: lane.campaign for lane in self._lanes}

    # -- called on the hot path -------------------------------------------------------

    def offer(
        self,
        route: Route,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        trace: TraceLink | None = None,
        mirrored: bool = False,
    ) -> ShadowJob | None:
        """Sample and enqueue; returns the job to complete with the primary's capture.
        ``target``: the request's path and query. ``mirrored``: the global sampling decision
        was already taken (the shadow worker's proxy takes it, so unsampled requests never
        cross to the worker)."""
        if self._closing or not self._lanes:
            return None
        key = self._sampler.key(headers, body)
        if not mirrored and not self._sampler.mirrored(key):
            for lane in self._lanes:
                lane.sampled_out.inc()
            return None
        job: ShadowJob | None = None
        task = headers.get(TASK_HEADER)
        # Parsed once for match.models, then the job's.
        request, model = request_model(body) if self._match_models else (None, None)
        if self._match_models and model is None:  # an Azure deployment path names it
            model = deployment_of(target.partition("?")[0])
        for lane in self._lanes:
            campaign = lane.campaign
            if not campaign.admits(route, model, task, headers):
                lane.unmatched.inc()
                continue
            if not self._sampler.candidate_in(key, lane.client.name, lane.client.cfg.sample_rate):
                lane.sampled_out.inc()
                continue
            lane.sampled_in.inc()
            if (why := campaign.refusal()) is not None:
                (lane.drop_budget if why == "budget" else lane.drop_schedule).inc()
                continue
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
                job = self._new_job(route, target, headers, key, body, trace)
                if request is not None:
                    job.parsed(request)
            lane.queue.put_nowait(job)
            lane.depth.inc()
        if job is None and self._conversations is not None and route == "responses":
            # No candidate takes this turn, but a later one may continue it.
            job = self._new_job(route, target, headers, key, body, trace)
        return job

    def _new_job(
        self,
        route: Route,
        target: str,
        headers: Mapping[str, str],
        key: bytes | None,
        body: bytes,
        trace: TraceLink | None,
    ) -> ShadowJob:
        path, _, query = target.partition("?")
        info = RequestInfo(
            request_id=self._ids.next(),
            received_at=time.time(),
            route=route,
            path=path,
            task=headers.get(TASK_HEADER),
            sampling_key=hashlib.blake2b(key, digest_size=8).hexdigest() if key else None,
            trace_id=trace.trace_id if trace is not None else None,
            deployment=deployment_of(path),
            headers=recorded_headers(headers, self._record_headers),
        )
        auth: CallerAuth = ()
        if self._keeps_caller_auth:
            auth = tuple(
                (name, value) for name in credential_headers(path) if (value := headers.get(name))
            )
        job = ShadowJob(info, route, body, auth, trace, query)
        job.pairing = self._pairing
        job.config_digest = self.config_digest
        if self._conversations is not None and route == "responses":
            job.primary.add_done_callback(lambda _: self._remember(job))
        return job

    def _remember(self, job: ShadowJob) -> None:
        """Keep the turn the primary's answer ended, for requests that continue it."""
        assert self._conversations is not None
        try:
            self._conversations.remember(job.request(), job.primary.result())
        except InvalidRequest:
            return
        except Exception:  # a shadow-side bug is logged and counted, never propagated
            log.exception("keeping a Responses turn failed")
            self._metrics.errors.labels("primary", self._primary_name, "internal").inc()

    @property
    def accepting(self) -> bool:
        """Whether ``offer`` may queue anything (callers skip building its arguments)."""
        return bool(self._lanes) and not self._closing

    # -- the candidates' side --------------------------------------------------------

    def _campaigns(self) -> list[Campaign]:
        return [lane.campaign for lane in self._lanes]

    async def start(self) -> None:
        if self._store is not None:
            self._store.restore()
            self._store.start()
        for lane in self._lanes:
            self._start_lane(lane)

    def _start_lane(self, lane: _Lane) -> None:
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
        rebuilt = False
        if lane.stateful != "send" and refers_to_state(job.route, request):
            conversation = self._rebuilt(job) if lane.stateful == "rebuild" else None
            if conversation is None:
                lane.drop_stateful.inc()  # it would answer without the conversation it continues
                return
            request, rebuilt = conversation, True
        campaign = lane.campaign
        if (why := campaign.begin()) is not None:  # queued before a cap or the window closed
            (lane.drop_budget if why == "budget" else lane.drop_schedule).inc()
            return
        spent: list[float | None] = [None]  # the answer's price, once known
        paired: bool | None = False
        try:
            paired = await self._send(lane, job, request, rebuilt, spent)
        finally:
            if paired is None:  # not sent after all
                campaign.cancel()
            else:
                campaign.end(spent[0], paired)

    async def _send(
        self,
        lane: _Lane,
        job: ShadowJob,
        request: Json,
        rebuilt: bool,
        spent: list[float | None],
    ) -> bool | None:
        """Send, pair and emit; whether a pair was recorded, None if nothing was sent (the
        price goes in ``spent`` as soon as the answer is parsed, so a pair that never forms
        is still paid for)."""
        client = lane.client
        breaker = lane.breaker
        payload = client.transform(job.route, request)
        ticket = None
        if breaker is not None:
            ticket = breaker.begin()
            if ticket is None:  # half-open, and its one trial call is under way
                lane.drop_circuit.inc()
                return None
        span = job.trace.shadow(client.cfg, job.info.request_id, payload) if job.trace else None
        sent_at = time.perf_counter()
        try:
            capture = await client.send(job.info.path, payload, job.caller_auth, job.query)
        except BaseException:
            if breaker is not None and ticket is not None:
                breaker.abort(ticket)
            raise
        if breaker is not None and ticket is not None:
            breaker.end(ticket, capture.error_type)
        outcome = None
        if lane.campaign.prices_answers:
            # A USD budget needs the price where the budget is kept (in worker mode, the
            # I/O process): parsed here, and again where the pair is made.
            outcome = parse_answer(
                job.route, payload, capture, upstream=client.name, role=client.role
            )
            spent[0] = self.prices.annotate(outcome, payload.get("model")).cost_usd
        if not job.primary.done():
            try:
                async with asyncio.timeout(self._primary_wait):
                    await asyncio.shield(job.primary)
            except TimeoutError:
                log.warning("primary answer for %s never completed", job.info.request_id)
                if span is not None:
                    outcome = outcome or parse_answer(
                        job.route, payload, capture, upstream=client.name, role=client.role
                    )
                    span.finish(capture, outcome)
                return False
        if self._finish is not None:
            self._finish(client.cfg, job, payload, capture, sent_at, rebuilt)
        else:
            pairing = job.pairing or self._pairing
            pairing.record(client.cfg, job, payload, capture, sent_at, span, rebuilt)
        return True

    def _rebuilt(self, job: ShadowJob) -> Json | None:
        if job.rebuilt is None:
            store = self._conversations
            found = store.rebuild(job.request()) if store is not None else None
            job.rebuilt = found if found is not None else False
        return job.rebuilt if isinstance(job.rebuilt, dict) else None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return sum(lane.queue.qsize() + lane.active for lane in self._all_lanes)

    @property
    def _all_lanes(self) -> list[_Lane]:
        return [*self._lanes, *self._retiring]

    async def close(self, grace_s: float) -> None:
        """Stop taking jobs, let queued and in-flight shadows finish within ``grace_s``."""
        self._closing = True
        deadline = time.monotonic() + grace_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._retiring.values():
            task.cancel()
        lanes = self._all_lanes
        for lane in lanes:
            while not lane.queue.empty():
                lane.queue.get_nowait()
                lane.queue.task_done()
                lane.depth.dec()
                lane.drop_shutdown.inc()
                lane.err_shutdown.inc()
            for task in lane.workers:
                task.cancel()
        for lane in lanes:
            for task in lane.workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            lane.workers.clear()
        for lane in list(self._retiring):  # the current lanes' pools are their owner's
            await lane.client.pool.close()
        self._retiring.clear()
        if self._store is not None:  # after the last answer is counted
            await self._store.close()
