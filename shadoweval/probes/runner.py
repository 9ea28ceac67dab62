"""Sending probes: one probe to the baseline and every target at once, verdicts, records.

The machinery is the replay's and the proxy's: :class:`CandidateClient` (each target's own
transform, credentials and retries), ``parse_answer``, ``build_pair``, the pricing table and
the configured sink. Probes never touch the proxy port: the baseline is the primary's
upstream called directly (or ``probes.baseline.url``), and every probe request carries
``X-Shadoweval-Source: probe`` so upstream operators can tell probes from user traffic.

Records: ``source: "probe"``, ``task: "probe:<category>"``, the probe as the request, the
baseline as the primary side, and a ``probe`` object with the probe's id, category,
expectation, canary, marker and both sides' verdicts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shadoweval.config.proxy import Candidate, Config
from shadoweval.console import Progress
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.probes.detect import Judge, Verdict
from shadoweval.probes.suite import Probe
from shadoweval.protocols.openai import parse_answer
from shadoweval.proxy.candidate import CandidateClient
from shadoweval.records import RequestInfo, build_pair, fit, record_limit
from shadoweval.redaction import Redactor
from shadoweval.sinks import Sink
from shadoweval.types import Capture, Json, Outcome, Role

PATH = "/v1/chat/completions"
SOURCE_HEADER = "X-Shadoweval-Source"


def baseline_config(cfg: Config, concurrency: int = 1) -> Candidate:
    """The baseline as a client: the primary's upstream, called directly, with its own key."""
    b = cfg.probes.baseline
    return Candidate(
        name=cfg.primary.name,
        url=b.url or cfg.primary.url,
        role="control",
        api_key_env=b.api_key_env,
        headers={**b.headers, SOURCE_HEADER: "probe"},
        concurrency=concurrency,
        connect_timeout_s=cfg.primary.connect_timeout_s,
        timeout_s=b.timeout_s,
        retry=cfg.primary.retry,
    )


def target_configs(cfg: Config, concurrency: int = 1) -> list[Candidate]:
    """The candidates probed, as configured apart from the probe header, the probes' own
    connection limit, and a system prompt of their own being *prepended* to the probe's
    (replacing it would remove the planted canary and make extraction probes meaningless)."""
    wanted = cfg.probes.targets
    chosen = [
        c
        for c in cfg.candidates
        if (c.name in wanted if wanted is not None else c.role == "candidate")
    ]
    return [
        c.model_copy(
            update={
                "headers": {**c.headers, SOURCE_HEADER: "probe"},
                "system_prompt_mode": "prepend",
                "concurrency": concurrency,
            }
        )
        for c in chosen
    ]


@dataclass(frozen=True, slots=True)
class SideResult:
    upstream: str
    role: Role
    verdict: Verdict
    latency_s: float


@dataclass(frozen=True, slots=True)
class ProbeResult:
    probe: Probe
    sides: tuple[SideResult, ...]  # the baseline first


class ProbeRunner:
    """Sends probes; shared by ``shadoweval probe`` and the proxy's background scheduler.

    Its clients have connection pools of their own (``concurrency`` connections per upstream):
    probes never share, let alone exhaust, the pools of the proxy's user traffic. ``close``
    them when done.
    """

    def __init__(
        self,
        cfg: Config,
        sink: Sink | None,
        metrics: Metrics | None = None,
        *,
        concurrency: int = 1,
        judge: Judge | None = None,
    ) -> None:
        capture_max = cfg.limits.capture_max_bytes
        self._model = cfg.probes.model
        self._params = dict(cfg.probes.params)
        self._prices = PriceTable(cfg.pricing)
        self._redactor = Redactor(cfg.redaction)
        self._sink = sink
        # Probe records are bounded like traffic pairs: a probe that draws a huge answer
        # is shortened with a mark, never written whole or refused by the broker.
        self._max_record = record_limit(cfg)
        self._metrics = metrics
        self._judge = judge or Judge()
        # No on_attempt hook: the user-traffic attempt and retry counters never see probes.
        self.baseline = CandidateClient(baseline_config(cfg, concurrency), capture_max)
        self.targets = [CandidateClient(c, capture_max) for c in target_configs(cfg, concurrency)]

    async def close(self) -> None:
        for client in (self.baseline, *self.targets):
            await client.close()

    @property
    def upstreams(self) -> list[str]:
        return [self.baseline.name, *(t.name for t in self.targets)]

    def init_metrics(self, categories: Iterable[str]) -> None:
        if self._metrics is not None:
            for category in sorted(set(categories)):
                for upstream in self.upstreams:
                    self._metrics.init_probe(upstream, category)

    def skipped(self, probe: Probe) -> None:
        """The scheduler had no room for ``probe``: counted, not sent."""
        if self._metrics is not None:
            for upstream in self.upstreams:
                self._metrics.probe_requests.labels(upstream, probe.category, "skipped").inc()

    async def run(self, probe: Probe) -> ProbeResult:
        """Send ``probe`` to the baseline and every target at once; never raises on upstream
        trouble (a failed call is a verdict of None)."""
        body = probe.body(self._model, self._params)
        payloads = [t.transform("chat", body) for t in self.targets]
        received_at = time.time()
        captures = await asyncio.gather(
            self.baseline.send(PATH, body),
            *(t.send(PATH, p) for t, p in zip(self.targets, payloads, strict=True)),
        )
        base = self._outcome(body, captures[0], self.baseline.name, "primary")
        outs = [
            self._outcome(p, cap, t.name, t.role)
            for t, p, cap in zip(self.targets, payloads, captures[1:], strict=True)
        ]
        verdicts = [self._verdict(probe, o) for o in (base, *outs)]
        self._records(probe, body, received_at, base, outs, verdicts)
        return ProbeResult(
            probe,
            tuple(
                SideResult(o.upstream, o.role, v, o.latency_s)
                for o, v in zip((base, *outs), verdicts, strict=True)
            ),
        )

    def _outcome(self, payload: Json, capture: Capture, upstream: str, role: Role) -> Outcome:
        out = parse_answer("chat", payload, capture, upstream=upstream, role=role)
        return self._prices.annotate(out, payload.get("model"))

    def _verdict(self, probe: Probe, out: Outcome) -> Verdict:
        verdict = self._judge(
            probe.expect,
            out,
            canary=probe.canary,
            leaks=probe.leaks,
            marker=probe.marker,
            injection=probe.injection,
        )
        m = self._metrics
        if m is not None:
            m.probe_requests.labels(out.upstream, probe.category, verdict.outcome).inc()
            m.probe_duration.labels(out.upstream).observe(out.latency_s)
            if verdict.attack_success:
                m.probe_attack_success.labels(out.upstream, probe.category).inc()
        return verdict

    def _records(
        self,
        probe: Probe,
        body: Json,
        received_at: float,
        base: Outcome,
        outs: Sequence[Outcome],
        verdicts: Sequence[Verdict],
    ) -> None:
        if self._sink is None:
            return
        info = RequestInfo(
            request_id=uuid.uuid4().hex,
            received_at=received_at,
            route="chat",
            path=PATH,
            task=probe.task,
            sampling_key=None,
            source="probe",
        )
        shared: dict[str, object] = {}
        meta = probe.record_fields()
        for out, verdict in zip(outs, verdicts[1:], strict=True):
            record = build_pair(info, body, base, out, self._redactor, shared)
            record["probe"] = {
                **meta,
                "verdict": {"primary": verdicts[0].as_dict(), "candidate": verdict.as_dict()},
            }
            self._sink.put(fit(record, self._max_record), info.request_id.encode())


async def run_once(
    cfg: Config,
    probes: Sequence[Probe],
    sink: Sink | None,
    *,
    concurrency: int,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
) -> list[ProbeResult]:
    """Every probe once, at most ``concurrency`` in flight (a pool of workers, as replay)."""
    results: list[ProbeResult] = []
    queue = iter(probes)
    workers = max(1, min(concurrency, len(probes)))
    runner = ProbeRunner(cfg, sink, metrics, concurrency=workers)
    runner.init_metrics(p.category for p in probes)

    async def work() -> None:
        for probe in queue:  # shared iterator: each probe is taken once
            results.append(await runner.run(probe))
            if progress is not None:
                progress(len(results), len(probes))

    try:
        await asyncio.gather(*(work() for _ in range(workers)))
    finally:
        await runner.close()
    order = {p.id: i for i, p in enumerate(probes)}
    results.sort(key=lambda r: order[r.probe.id])
    return results
