"""The shadow worker's idle child: parsing, pairing, redaction, the sink and probes.

The worker process sends the shadows and reads their answers at the normal scheduling
priority, so a candidate's send and receive times are taken when its bytes move, not when
an idle process next gets CPU (under SCHED_IDLE beside CPU-bound work that was seconds).
Everything CPU-heavy after the last byte runs here, at ``shadow_worker.scheduling``. The
hand-off is bounded: while this process is behind by ``shadow_worker.max_pending_bytes``
(or restarting), finished shadows are dropped and counted
(``shadoweval_shadow_unrecorded_total``), never buffered without bound. Each record carries
``parse_wait_s``, how long its answer waited for this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from shadoweval.config.proxy import Candidate, Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import Child, ForkedProcess, configured, frame
from shadoweval.types import Capture, Json

if TYPE_CHECKING:
    from shadoweval.proxy.shadow import ShadowJob
    from shadoweval.tracing import Tracer

log = logging.getLogger(__name__)

# Jobs kept for their other candidates' answers (one parse of the request and the primary's
# answer, one redaction of the shared parts); older ones are parsed again if they come.
_JOBS_KEPT = 256


class PairingHandoff:
    """The worker's handle on its idle child; ``send`` is the dispatcher's ``finish``."""

    def __init__(self, cfg: Config, metrics: Metrics, forked: ForkedProcess | None) -> None:
        self._max_pending = cfg.shadow_worker.max_pending_bytes
        self._unrecorded = {c.name: metrics.unrecorded.labels(c.name) for c in cfg.candidates}
        self.process = Child(
            "shadow pairing process",
            "shadow-pairing",
            cfg.for_children(),
            cfg.shadow_worker.start_timeout_s,
            forked,
            on_death=metrics.restarts.labels("shadow_pairing").inc,
        )

    def send(
        self,
        cand: Candidate,
        job: ShadowJob,
        payload: Json,
        capture: Capture,
        sent_at: float,
        rebuilt: bool,
    ) -> None:
        channel = self.process.channel if self.process.ready else None
        transport = channel.transport if channel is not None else None
        if (
            channel is None
            or transport is None
            or transport.get_write_buffer_size() > self._max_pending
        ):
            self._unrecorded[cand.name].inc()
            return
        primary = job.primary.result()  # the dispatcher waited for it
        finished = (cand.name, job.info, job.body, primary, payload, capture, job.queued_at)
        channel.write(frame(("offer", (*finished, sent_at, job.link, rebuilt))))


def run_pairing(fd: int) -> int:
    """``shadoweval shadow-pairing --fd N``: started by the shadow worker, never by hand."""
    from shadoweval import loop as event_loop

    return event_loop.run(_pairing_main(fd))


async def _pairing_main(fd: int) -> int:
    from shadoweval import sinks
    from shadoweval.pricing import PriceTable
    from shadoweval.proxy.pairing import Pairing
    from shadoweval.proxy.shadow import ShadowJob
    from shadoweval.proxy.worker import shadow_metrics
    from shadoweval.records import record_limit
    from shadoweval.redaction import Redactor
    from shadoweval.telemetry import Recorder

    parent, cfg = await configured(fd, "shadow-pairing")
    if cfg is None:
        return 2
    with contextlib.suppress(OSError, AttributeError):  # SCHED_IDLE: Linux only
        if cfg.shadow_worker.scheduling == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        os.nice(cfg.shadow_worker.nice)
    try:
        m = shadow_metrics(cfg)
        prices = PriceTable(cfg.pricing)
        sink = sinks.build(cfg.sink, m)
        probes = None
        if cfg.probes.enabled:
            from shadoweval.probes.scheduler import ProbeScheduler

            probes = ProbeScheduler.from_config(cfg, sink, m)
        await sink.start()
        recorder = Recorder(m, cfg.primary.name, prices)
        pairing = Pairing(
            sink,
            Redactor(cfg.redaction),
            m,
            cfg.primary.name,
            prices,
            recorder.outcome,
            record_limit(cfg),
        )
        tracer: Tracer | None = None
        if cfg.tracing.enabled:
            from shadoweval.tracing import LinkedTrace, Tracer

            tracer = Tracer.build(cfg, prices)
    except Exception as exc:
        parent.reply(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    candidates = {c.name: c for c in cfg.candidates}
    jobs: OrderedDict[str, ShadowJob] = OrderedDict()
    if probes is not None:
        probes.start()
    parent.reply(("ready",))

    def finished(message: tuple[Any, ...]) -> None:
        name, info, body, primary, payload, capture, queued_at, sent_at, link, rebuilt = message[1]
        job = jobs.get(info.request_id)
        if job is None:
            trace = LinkedTrace(tracer, link, info.route) if tracer is not None and link else None
            job = ShadowJob(info, info.route, body, (), trace)
            job.queued_at = queued_at
            job.primary_done(primary)
            jobs[info.request_id] = job
            if len(jobs) > _JOBS_KEPT:
                jobs.popitem(last=False)
        try:
            pairing.record(candidates[name], job, payload, capture, sent_at, rebuilt=rebuilt)
        except Exception:  # a pairing bug is logged and counted, never propagated
            log.exception("pairing the answer of %s failed unexpectedly", name)
            m.errors.labels(candidates[name].role, name, "internal").inc()

    parent.on_offer = finished
    parent.collect = m.registry.collect
    grace = await parent.stop  # the worker sends what it has first: nothing is in flight
    if grace is None:
        grace = cfg.shutdown.shadow_grace_s
    flush_s = parent.flush_s if parent.flush_s is not None else cfg.shutdown.grace_s
    started = time.monotonic()
    if probes is not None:
        await probes.stop(grace)
    await sink.close(flush_s)
    if tracer is not None:
        await tracer.close()
    log.info("stopped in %.2fs", time.monotonic() - started)
    await parent.close()
    return 0


async def families(handoff: PairingHandoff, own: list[Metric]) -> list[Metric]:
    """The worker's families and its idle child's, as one list for the proxy's merge."""
    from shadoweval.proxy.children import merge_families

    return merge_families(own, await handoff.process.families(1.0))
