"""The proxy's background probes: ``probes.rate_per_minute`` probes a minute, off the hot path.

Started and stopped by :class:`~shadoweval.server.ProxyServer` when ``probes.enabled``. It
has its own HTTP session and never goes through the proxy port, the shadow dispatcher or the
user-traffic metrics; its records go to the proxy's sink with ``source: "probe"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator, Sequence

from shadoweval.config.proxy import Config
from shadoweval.metrics import Metrics
from shadoweval.probes.runner import ProbeResult, ProbeRunner
from shadoweval.probes.suite import Probe, build
from shadoweval.sinks import Sink

log = logging.getLogger(__name__)


class ProbeScheduler:
    """One probe every ``60 / rate_per_minute`` seconds, cycling through every probe in a
    seeded shuffled order (a new order each cycle). At most ``concurrency`` are in flight: a
    tick that finds them all busy skips its probe and counts it (outcome ``skipped``), so a
    slow target can never pile up work."""

    def __init__(
        self,
        probes: Sequence[Probe],
        *,
        rate_per_minute: float,
        concurrency: int,
        seed: int,
        cfg: Config,
        sink: Sink | None,
        metrics: Metrics | None,
    ) -> None:
        if not probes:
            raise ValueError("no probes to schedule")
        self.probes = list(probes)
        self._interval = 60.0 / rate_per_minute
        self._concurrency = concurrency
        self._seed = seed
        self._cfg = cfg
        self._sink = sink
        self._metrics = metrics
        self._runner: ProbeRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.skipped = 0
        # The last result per probe id (bounded by the number of probes): for /metrics-free
        # inspection in tests and debugging.
        self.results: dict[str, ProbeResult] = {}

    @classmethod
    def from_config(cls, cfg: Config, sink: Sink | None, metrics: Metrics | None) -> ProbeScheduler:
        """Loads and validates the suites now: a bad suite is a ConfigError at start-up."""
        p = cfg.probes
        return cls(
            build(p),
            rate_per_minute=p.rate_per_minute,
            concurrency=p.concurrency,
            seed=p.seed,
            cfg=cfg,
            sink=sink,
            metrics=metrics,
        )

    def start(self) -> None:
        self._runner = ProbeRunner(
            self._cfg, self._sink, self._metrics, concurrency=self._concurrency
        )
        self._runner.init_metrics(p.category for p in self.probes)
        self._task = asyncio.create_task(self._run(), name="shadoweval-probes")
        log.info(
            "probes: %d probes, one every %.1fs to %s",
            len(self.probes),
            self._interval,
            ", ".join(self._runner.upstreams),
        )

    async def stop(self, grace_s: float) -> None:
        """Stop starting probes, give those in flight ``grace_s``, cancel the rest."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.close()

    def _order(self) -> Iterator[Probe]:
        cycle = 0
        while True:
            order = list(self.probes)
            random.Random(f"{self._seed}:{cycle}").shuffle(order)
            yield from order
            cycle += 1

    async def _run(self) -> None:
        assert self._runner is not None
        runner = self._runner
        started = time.monotonic()
        for tick, probe in enumerate(self._order()):
            # Ticks on a fixed grid: a late wake-up does not shift every later probe.
            delay = started + tick * self._interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(self._in_flight) >= self._concurrency:
                self.skipped += 1
                runner.skipped(probe)
                continue
            task = asyncio.create_task(self._one(runner, probe), name=f"probe {probe.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            self.sent += 1

    async def _one(self, runner: ProbeRunner, probe: Probe) -> None:
        # A bug here must cost one probe, never the proxy.
        try:
            self.results[probe.id] = await runner.run(probe)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe %s failed", probe.id)
