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

import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter
from prometheus_client.metrics_core import Metric

from shadoweval.config.proxy import Candidate, Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import Child, ForkedProcess, frame
from shadoweval.types import Capture, Json

if TYPE_CHECKING:
    from shadoweval.proxy.shadow import ShadowJob

log = logging.getLogger(__name__)

# Jobs kept for their other candidates' answers (one parse of the request and the primary's
# answer, one redaction of the shared parts); older ones are parsed again if they come.
_JOBS_KEPT = 256


class PairingHandoff:
    """The worker's handle on its idle child; ``send`` is the dispatcher's ``finish``."""

    def __init__(self, cfg: Config, metrics: Metrics, forked: ForkedProcess | None) -> None:
        self._max_pending = cfg.shadow_worker.max_pending_bytes
        self._metrics = metrics
        self._unrecorded: dict[str, Counter] = {}
        self.reconfigure(cfg)
        self.process = Child(
            "shadow pairing process",
            "shadow-pairing",
            cfg.for_children(),
            cfg.shadow_worker.start_timeout_s,
            forked,
            on_death=metrics.restarts.labels("shadow_pairing").inc,
        )

    def reconfigure(self, cfg: Config) -> None:
        """A reload's candidates (a removed one's last answers are still counted)."""
        for c in cfg.candidates:
            self._unrecorded[c.name] = self._metrics.unrecorded.labels(c.name)

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
        tail = (sent_at, job.link, rebuilt, job.config_digest)
        channel.write(frame(("offer", (*finished, *tail))))


async def families(handoff: PairingHandoff, own: list[Metric]) -> list[Metric]:
    """The worker's families and its idle child's, as one list for the proxy's merge."""
    from shadoweval.proxy.children import merge_families

    return merge_families(own, await handoff.process.families(1.0))
