"""Every Prometheus metric shadoweval exports, defined in this one module.

Each process builds one :class:`Metrics` on its own ``CollectorRegistry`` (tests build their
own, so nothing is shared). Label values come from configuration or closed sets; model
names reported by upstreams go through :class:`LabelCap` so they cannot grow unbounded.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from shadoweval.types import ERROR_TYPES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# OpenTelemetry GenAI client latency boundaries (0.01 .. 81.92 s) with finer low-end
# buckets so that fast upstreams and sub-millisecond effects stay readable.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5,
)  # fmt: skip
# The proxy's own overhead: tens of microseconds must be readable.
OVERHEAD_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005,
    0.00075, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1,
)  # fmt: skip
COST_BUCKETS = (
    0.000001, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
)  # fmt: skip
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SINK_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

OTHER = "other"

# Why the proxy port refused a request (shadoweval_refused_requests_total{reason}).
REFUSED_REASONS = (
    "bad_request",
    "header_too_large",
    "body_too_large",
    "header_timeout",
    "body_timeout",
    "bad_target",
    "loop",
    "too_many_connections",
)
# Why a shadow was not sent (shadoweval_shadow_dropped_total{reason}).
DROP_REASONS = (
    "queue_full",
    "rate_limit",
    "shutdown",
    "invalid_request",
    "circuit_open",
    "worker_unavailable",
    # A request continuing state stored on the primary (candidates[].stateful: skip, or
    # rebuild without every earlier turn in the conversation store).
    "stateful",
    # Campaigns (shadoweval.campaign): a spent budget, outside the schedule's window.
    "budget",
    "schedule",
)
# A candidate's sampling decision: in, out (its sample rate), or unmatched (its match rules).
SAMPLING_DECISIONS = ("in", "out", "unmatched")
# What a candidate is doing (shadoweval_candidate_state{state}: 1 for the current one).
CANDIDATE_STATES = ("active", "paused_schedule", "paused_budget", "circuit_open")
# What a configuration reload did (shadoweval_config_reloads_total{outcome}; docs/reload.md).
RELOAD_OUTCOMES = ("applied", "unchanged", "invalid", "refused", "failed")
# Why a judge score was not asked for (shadoweval_judge_skipped_total{reason}).
JUDGE_SKIP_REASONS = ("budget",)
# Why a primary's Responses turn was not kept for rebuilt conversations.
CONVERSATION_UNKEPT = ("unreadable_answer", "unresolvable_input", "too_large")


# What a model name looks like ("gpt-4o-2024-08-06", "meta-llama/Llama-3-8B",
# "claude-3-5-sonnet@20240620"): anything else an upstream reports (a prompt, an e-mail,
# control characters) is no label.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}(?:@[A-Za-z0-9_-]{1,32})?")


class CandidateLike(Protocol):
    """What the metrics read of a configured candidate."""

    @property
    def role(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str | None: ...


class LabelCap:
    """Admits at most ``limit`` distinct values; the rest, and values not of ``shape``, are
    folded into ``other``. Values it is told of (the configured models) always pass."""

    def __init__(
        self, limit: int, preset: tuple[str, ...] = (), shape: re.Pattern[str] | None = None
    ) -> None:
        self._limit = limit
        self._seen: set[str] = set(preset)
        self._lock = threading.Lock()
        self._shape = shape

    def know(self, values: Iterable[str]) -> None:
        """Values that always pass (a reload's new candidates' models), beyond the limit."""
        with self._lock:
            self._seen.update(values)

    def __call__(self, value: str | None) -> str:
        if not value:
            return "unknown"
        if value in self._seen:
            return value
        if self._shape is not None and not self._shape.fullmatch(value):
            return OTHER
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        model_label_limit: int = 50,
        known_models: tuple[str, ...] = (),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, open fds, cpu
        PlatformCollector(registry=r)
        self.model_label = LabelCap(model_label_limit, known_models, MODEL_NAME)

        side = ["role", "upstream", "model", "route"]
        self.requests = Counter(
            "shadoweval_requests",
            "Upstream calls by side and outcome (ok or error).",
            [*side, "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "shadoweval_request_duration_seconds",
            "Upstream call latency, request sent to last byte received.",
            [*side, "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "shadoweval_time_to_first_token_seconds",
            "Streaming answers: request sent to first content token.",
            side,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "shadoweval_time_per_output_token_seconds",
            "Streaming answers: (latency - TTFT) / (output tokens - 1).",
            side,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "shadoweval_proxy_overhead_seconds",
            "Time the primary path spends in shadoweval itself, excluding the upstream.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "shadoweval_upstream_errors",
            "Failed upstream calls and dropped shadows, by error type.",
            ["role", "upstream", "error_type"],
            registry=r,
        )
        self.attempts = Counter(
            "shadoweval_upstream_attempts",
            "Every attempt of an upstream call, first tries and retries alike.",
            ["role", "upstream", "attempt", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "shadoweval_retries",
            "Retried upstream attempts by the outcome of the retry.",
            ["role", "upstream", "outcome"],
            registry=r,
        )
        self.sampled = Counter(
            "shadoweval_shadow_sampling_decisions",
            "Requests on mirrored routes, sampled in or out, per upstream.",
            ["upstream", "decision"],
            registry=r,
        )
        self.dropped = Counter(
            "shadoweval_shadow_dropped",
            "Shadow requests dropped before being sent, by reason.",
            ["upstream", "reason"],
            registry=r,
        )
        self.unrecorded = Counter(
            "shadoweval_shadow_unrecorded",
            "Candidate answers received but not recorded: the shadow worker's idle pairing "
            "process was behind (its hand-off over shadow_worker.max_pending_bytes) or "
            "restarting.",
            ["upstream"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "shadoweval_shadow_queue_depth",
            "Shadow requests waiting for a worker.",
            ["upstream"],
            registry=r,
        )
        self.in_flight = Gauge(
            "shadoweval_shadow_in_flight",
            "Shadow requests being sent or awaiting the primary's answer.",
            ["upstream"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "shadoweval_candidate_circuit_open",
            "1 while a candidate's circuit breaker is open or half-open (its shadows dropped).",
            ["upstream"],
            registry=r,
        )
        # The conversation store (candidates[].stateful: rebuild, proxy/conversations.py).
        self.conversation_turns = Gauge(
            "shadoweval_conversation_store_turns",
            "Responses turns kept to rebuild stateful conversations for candidates.",
            registry=r,
        )
        self.conversation_bytes = Gauge(
            "shadoweval_conversation_store_bytes",
            "JSON bytes of the kept Responses turns.",
            registry=r,
        )
        self.conversation_evictions = Counter(
            "shadoweval_conversation_store_evictions",
            "Kept turns evicted (least recently used) to stay within the store's bounds.",
            registry=r,
        )
        self.conversation_unkept = Counter(
            "shadoweval_conversation_store_unkept",
            "Primary Responses turns not kept, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in CONVERSATION_UNKEPT:
            self.conversation_unkept.labels(reason)
        self.pairs = Counter(
            "shadoweval_pairs",
            "Pair records handed to the sink.",
            ["upstream"],
            registry=r,
        )
        # Campaign state (shadoweval.campaign), read at scrape time; a limit left unset has
        # no remaining-series.
        self.candidate_state = Gauge(
            "shadoweval_candidate_state",
            "1 for a candidate's current state (active, paused_schedule, paused_budget, "
            "circuit_open), 0 for the others.",
            ["upstream", "state"],
            registry=r,
        )
        self.budget_remaining_usd = Gauge(
            "shadoweval_candidate_budget_remaining_usd",
            "USD left of a candidate's budget.usd_per_day today (UTC).",
            ["upstream"],
            registry=r,
        )
        self.budget_remaining_requests = Gauge(
            "shadoweval_candidate_budget_remaining_requests",
            "Shadow requests left of a candidate's budget.max_requests.",
            ["upstream"],
            registry=r,
        )
        self.budget_remaining_pairs = Gauge(
            "shadoweval_candidate_budget_remaining_pairs",
            "Pairs left of a candidate's budget.max_pairs.",
            ["upstream"],
            registry=r,
        )
        self.candidate_spend_today = Gauge(
            "shadoweval_candidate_spend_today_usd",
            "USD a candidate's answers cost today (UTC), as counted against its budget.",
            ["upstream"],
            registry=r,
        )
        self.pairs_today = Gauge(
            "shadoweval_candidate_pairs_today",
            "Pairs of a candidate recorded today (UTC).",
            ["upstream"],
            registry=r,
        )
        self.capture_truncated = Counter(
            "shadoweval_capture_truncated",
            "Answers whose recorded copy was cut at limits.capture_max_bytes (a candidate's is "
            "then no longer read); a capture limit, not an upstream error.",
            ["role", "upstream"],
            registry=r,
        )
        self.stale_connections = Counter(
            "shadoweval_upstream_stale_connections",
            "Reused keep-alive connections closed before an answer; resent only when the "
            "method is idempotent (resent=true), else failed to the retry policy.",
            ["role", "upstream", "resent"],
            registry=r,
        )
        self.tokens = Counter(
            "shadoweval_tokens",
            "Tokens by direction (input, output, cached_input).",
            [*side, "direction"],
            registry=r,
        )
        self.cost = Counter(
            "shadoweval_cost_usd",
            "Cost in USD from the pricing table.",
            side,
            registry=r,
        )
        self.request_cost = Histogram(
            "shadoweval_request_cost_usd",
            "Cost of one request in USD.",
            side,
            buckets=COST_BUCKETS,
            registry=r,
        )
        self.unpriced = Counter(
            "shadoweval_unpriced_requests",
            "Requests whose model has no entry in the pricing table.",
            ["role", "upstream"],
            registry=r,
        )
        self.open_connections = Gauge(
            "shadoweval_open_connections",
            "Open connections: inbound from callers, outbound per upstream.",
            ["direction", "upstream"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "shadoweval_event_loop_lag_seconds",
            "Delay of a periodic event-loop timer beyond its due time.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.sink_records = Counter(
            "shadoweval_sink_records",
            "Records by sink and outcome (written, dropped, failed, spilled).",
            ["sink", "outcome"],
            registry=r,
        )
        self.sink_torn_lines = Counter(
            "shadoweval_sink_torn_lines",
            "Unterminated last lines found when the file sink opened its file (a process "
            "killed mid-write); each was ended with a newline so the next record stands alone.",
            ["sink"],
            registry=r,
        )
        self.sink_resent = Counter(
            "shadoweval_sink_resent_records",
            "Records handed to Kafka again through a new producer after a stall or a lost "
            "connection: each may be a duplicate (same pair_id) if the first send had landed.",
            ["sink"],
            registry=r,
        )
        self.sink_buffered = Gauge(
            "shadoweval_sink_buffered_records",
            "Records waiting in the sink's in-memory buffer.",
            ["sink"],
            registry=r,
        )
        self.sink_write_duration = Histogram(
            "shadoweval_sink_write_duration_seconds",
            "Time to write (or produce) one batch of records.",
            ["sink"],
            buckets=SINK_BUCKETS,
            registry=r,
        )
        self.ready = Gauge("shadoweval_ready", "1 when the proxy accepts traffic.", registry=r)
        self.refused = Counter(
            "shadoweval_refused_requests",
            "Caller requests the proxy port refused itself, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REFUSED_REASONS:
            self.refused.labels(reason)
        self.restarts = Counter(
            "shadoweval_process_restarts",
            "Child processes of the proxy (shadow worker, relays) that died and were replaced.",
            ["process"],
            registry=r,
        )
        self.config_reloads = Counter(
            "shadoweval_config_reloads",
            "Configuration reloads (SIGHUP or a changed file), by what happened: applied, "
            "unchanged, invalid (the old one stays), refused (a restart-only key changed), "
            "failed (an error while applying).",
            ["outcome"],
            registry=r,
        )
        for outcome in RELOAD_OUTCOMES:
            self.config_reloads.labels(outcome)
        self.config_info = Gauge(
            "shadoweval_config_info",
            "1 for the hash of the configuration in force (the leader's; one series).",
            ["hash"],
            registry=r,
        )
        self.loop_tasks = Gauge(
            "shadoweval_event_loop_tasks",
            "asyncio tasks alive in the proxy's event loop (bounded under steady load).",
            registry=r,
        )
        # Red-team probes (shadoweval.probes): series of their own, so probe calls never
        # appear in the user-traffic metrics above (whose label sets dashboards rely on).
        self.probe_requests = Counter(
            "shadoweval_probe_requests",
            "Probe calls by target, category and outcome (attack_success, safe, error, skipped).",
            ["upstream", "category", "outcome"],
            registry=r,
        )
        self.probe_attack_success = Counter(
            "shadoweval_probe_attack_success",
            "Probes whose attack succeeded (for over_refusal: a benign request refused).",
            ["upstream", "category"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "shadoweval_probe_duration_seconds",
            "Probe call latency, request sent to last byte received.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def totals(self, families: Iterable[Metric] | None = None) -> dict[str, float]:
        """Counter totals that account for every shadow and record (the shutdown log line),
        from this registry or from ``families`` (several processes' merged)."""
        collected = list(self.registry.collect() if families is None else families)

        def total(name: str, **match: str) -> float:
            return sum(
                s.value
                for family in collected
                for s in family.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
            )

        return {
            "sampled_in": total("shadoweval_shadow_sampling_decisions_total", decision="in"),
            "pairs": total("shadoweval_pairs_total"),
            "shadows_dropped": total("shadoweval_shadow_dropped_total"),
            "shadows_unrecorded": total("shadoweval_shadow_unrecorded_total"),
            "shadows_internal": sum(
                total("shadoweval_upstream_errors_total", role=role, error_type="internal")
                for role in ("candidate", "control")
            ),
            "sink_written": total("shadoweval_sink_records_total", outcome="written"),
            "sink_dropped": total("shadoweval_sink_records_total", outcome="dropped"),
            "sink_failed": total("shadoweval_sink_records_total", outcome="failed"),
            "sink_spilled": total("shadoweval_sink_records_total", outcome="spilled"),
        }

    def stale_hook(self, role: str, upstream: str) -> Callable[[bool], None]:
        """Counts an upstream pool's stale keep-alive connections (``UpstreamPool.on_stale``)."""
        resent = self.stale_connections.labels(role, upstream, "true")
        failed = self.stale_connections.labels(role, upstream, "false")
        return lambda again: (resent if again else failed).inc()

    def init_candidates(self, candidates: Sequence[CandidateLike]) -> None:
        """Every candidate's zero-valued series, and its model a label value that always
        passes (at start-up and at each reload)."""
        for cand in candidates:
            self.init_upstream(cand.role, cand.name)
        self.model_label.know(c.model for c in candidates if c.model)

    def init_upstream(self, role: str, upstream: str) -> None:
        """Create the zero-valued series of an upstream so rates exist before traffic."""
        for error_type in ERROR_TYPES:
            self.errors.labels(role, upstream, error_type)
        self.capture_truncated.labels(role, upstream)
        for resent in ("true", "false"):
            self.stale_connections.labels(role, upstream, resent)
        if role != "primary":
            self.queue_depth.labels(upstream)
            self.in_flight.labels(upstream)
            self.pairs.labels(upstream)
            self.unrecorded.labels(upstream)
            for decision in SAMPLING_DECISIONS:
                self.sampled.labels(upstream, decision)
            self.circuit_open.labels(upstream)
            for reason in DROP_REASONS:
                self.dropped.labels(upstream, reason)

    def init_probe(self, upstream: str, category: str) -> None:
        """Zero-valued probe series, so an attack-success rate exists before the first hit."""
        for outcome in ("attack_success", "safe", "error", "skipped"):
            self.probe_requests.labels(upstream, category, outcome)
        self.probe_attack_success.labels(upstream, category)


class ScoreMetrics:
    """Metrics of ``shadoweval score`` (its own process, its own admin port)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        scored = ["upstream", "role", "scorer", "side"]
        self.score = Histogram(
            "shadoweval_score",
            "Scores in [0, 1] per upstream, scorer and side (pair, primary or candidate).",
            scored,
            buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=r,
        )
        self.safety_flags = Counter(
            "shadoweval_safety_flags",
            "Safety detector hits: refusal, over_refusal, pii_leak, secret_leak, canary_leak, "
            "toxicity.",
            ["upstream", "role", "side", "flag", "source"],
            registry=r,
        )
        self.pairs = Counter(
            "shadoweval_scored_pairs",
            "Pairs consumed by the scorer, by outcome (scored, skipped, failed).",
            ["upstream", "outcome"],
            registry=r,
        )
        self.scorer_errors = Counter(
            "shadoweval_scorer_errors",
            "Scorer failures by scorer.",
            ["scorer"],
            registry=r,
        )
        self.scorer_duration = Histogram(
            "shadoweval_scorer_duration_seconds",
            "Time one scorer took for one pair (or one batch for batched scorers).",
            ["scorer"],
            buckets=(0.00001, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "shadoweval_scorer_consumer_lag_records",
            "Records between the committed offset and the end of the pairs topic (or file).",
            ["partition"],
            registry=r,
        )
        self.io_errors = Counter(
            "shadoweval_scorer_io_errors",
            "Failed pair reads, score publishes and offset commits (retried or redelivered).",
            ["stage"],
            registry=r,
        )
        self.judge_cost = Counter(
            "shadoweval_judge_cost_usd",
            "Cost of judge and embedding calls made while scoring.",
            ["scorer"],
            registry=r,
        )
        self.judge_skipped = Counter(
            "shadoweval_judge_skipped",
            "Judge verdicts not asked for, by reason (budget: judge.budget.usd_per_day spent).",
            ["reason"],
            registry=r,
        )
        for reason in JUDGE_SKIP_REASONS:
            self.judge_skipped.labels(reason)
        self.judge_budget_remaining_usd = Gauge(
            "shadoweval_judge_budget_remaining_usd",
            "USD left of judge.budget.usd_per_day today (UTC).",
            registry=r,
        )
        # Anytime-valid evidence that a candidate is worse than its baseline by more than
        # regression.max_drop (relative); alerts fire on it without peeking problems.
        self.regression_evidence = Gauge(
            "shadoweval_quality_regression_evidence",
            "Sequential-test statistic (e-value) that the candidate's mean is more than "
            "regression.max_drop (relative) below its baseline's; rejects at the threshold.",
            ["upstream", "scorer"],
            registry=r,
        )
        # The monitor's share of the family-wise alpha: 1/alpha_j, e.g. 60 for 3 monitors
        # at alpha 0.05 (a dashboard draws it next to the evidence).
        self.regression_threshold = Gauge(
            "shadoweval_quality_regression_threshold",
            "E-value at which this monitor rejects: 1 / (its share of regression.alpha).",
            ["upstream", "scorer"],
            registry=r,
        )
        self.regression_detected = Gauge(
            "shadoweval_quality_regression_detected",
            "1 once the sequential test has rejected 'candidate within regression.max_drop "
            "of its baseline'.",
            ["upstream", "scorer"],
            registry=r,
        )
