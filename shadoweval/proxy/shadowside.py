"""The shadow side of a process, assembled, reloaded and torn down in one place.

Three processes run parts of it: the proxy alone runs all of it (sink, probes, dispatcher
pairing in process); the shadow worker runs the dispatcher, which hands finished shadows to
its pairing process (``finish``); the pairing process runs the sink, the probes and the
pairing. :meth:`ShadowSide.build` builds any of these shapes, :meth:`ShadowSide.apply`
applies a reloaded configuration to it, :meth:`ShadowSide.close` stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from shadoweval import sinks
from shadoweval.config import Config
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.proxy.candidate import AttemptHook, CandidateClient
from shadoweval.proxy.pairing import FinishFn, ObserveFn, Pairing
from shadoweval.proxy.shadow import ShadowDispatcher
from shadoweval.types import Json

if TYPE_CHECKING:
    from shadoweval.probes.scheduler import ProbeScheduler
    from shadoweval.sinks import Sink

log = logging.getLogger(__name__)


def shadow_metrics(cfg: Config) -> Metrics:
    """The metrics of a process on the shadow side (the worker, its pairing process), every
    candidate's series present from the start."""
    m = Metrics(model_label_limit=cfg.metrics.model_label_limit)
    m.init_candidates(cfg.candidates)
    return m


class NoSink:
    """The worker's dispatcher hands finished shadows to its pairing process, never to a
    sink."""

    name = "none"

    async def start(self) -> None:
        pass

    def put(self, record: Json, key: bytes | None = None) -> bool:  # pragma: no cover
        raise AssertionError("the shadow worker writes no records itself")

    async def close(self, timeout: float) -> None:
        pass


class SinkSwitch:
    """The sink every writer holds: records go to ``current``. A reload that changes the
    sink section starts the new sink, switches, then closes the old one with the shutdown
    grace, so a record is written by one of them and none is lost in between."""

    def __init__(self, sink: Sink) -> None:
        self.current = sink
        self.name = sink.name

    async def start(self) -> None:
        await self.current.start()

    def put(self, record: Json, key: bytes | None = None) -> bool:
        return self.current.put(record, key)

    async def close(self, timeout: float) -> None:
        await self.current.close(timeout)

    def switch(self, sink: Sink) -> Sink:
        old, self.current, self.name = self.current, sink, sink.name
        return old


class ShadowSide:
    """One process's share of the shadow side (see the module's docstring)."""

    def __init__(
        self,
        cfg: Config,
        metrics: Metrics,
        prices: PriceTable,
        sink: SinkSwitch | None,
        probes: ProbeScheduler | None,
        dispatcher: ShadowDispatcher | None,
        pairing: Pairing | None,
        observe: ObserveFn | None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.prices = prices
        self.sink = sink
        self.probes = probes
        self.dispatcher = dispatcher
        # The pairing process's own pairing (the dispatcher holds its own otherwise).
        self.pairing = pairing
        self._observe = observe
        self._probes_started = False
        # Old sinks and probe schedulers finishing in the background after a reload.
        self._retiring: set[asyncio.Task[None]] = set()

    @classmethod
    async def build(
        cls,
        cfg: Config,
        metrics: Metrics,
        prices: PriceTable,
        *,
        dispatch: bool,
        record: bool,
        sink: Sink | None = None,
        on_attempt: AttemptHook | None = None,
        observe: ObserveFn | None = None,
        finish: FinishFn | None = None,
    ) -> ShadowSide:
        """Build and start the parts this process runs: ``dispatch`` the candidates'
        queues and I/O, ``record`` the sink, the probes and the pairing (without it,
        ``finish`` takes each finished shadow). ``sink``: one to use instead of the
        configured one (tests). The probes start with :meth:`start_probes`, once the proxy
        is listening. A bad suite or sink is a ConfigError here, before any port is bound."""
        switch = probes = dispatcher = pairing = None
        if record:
            switch = SinkSwitch(sink if sink is not None else sinks.build(cfg.sink, metrics))
            probes = _probes(cfg, switch, metrics)
            await switch.start()
            if not dispatch:
                pairing = Pairing.from_config(cfg, switch, metrics, prices, observe)
        if dispatch:
            dispatcher = ShadowDispatcher.from_config(
                cfg,
                switch if switch is not None else NoSink(),
                metrics,
                prices,
                on_attempt=on_attempt,
                observe=observe,
                finish=finish,
            )
            await dispatcher.start()
        return cls(cfg, metrics, prices, switch, probes, dispatcher, pairing, observe)

    def start_probes(self) -> None:
        if self.probes is not None:
            self.probes.start()  # own connections; never through the proxy port
        self._probes_started = True

    def apply(self, cfg: Config, prices: PriceTable) -> Awaitable[None]:
        """Apply a reloaded configuration. What decides where offers and finished shadows
        go (candidates, sampling, redaction, pricing) is switched before this returns, so
        a frame read next already sees it; the returned awaitable finishes the rest (a new
        sink started and switched to, the old one and old probes closed in the
        background)."""
        old, self.cfg, self.prices = self.cfg, cfg, prices
        sink = self.sink
        if self.dispatcher is not None:
            self.dispatcher.reconfigure(cfg, prices, sink if sink is not None else NoSink())
        if self.pairing is not None and sink is not None:
            self.pairing = Pairing.from_config(cfg, sink, self.metrics, prices, self._observe)
        if sink is not None and (
            cfg.probes != old.probes
            or cfg.candidates != old.candidates
            or cfg.primary != old.primary
        ):
            self._retire(self.probes.stop(cfg.shutdown.shadow_grace_s) if self.probes else None)
            self.probes = _probes(cfg, sink, self.metrics)
            if self._probes_started and self.probes is not None:
                self.probes.start()
        if sink is not None and cfg.sink != old.sink:
            return self._switch_sink(sink, sinks.build(cfg.sink, self.metrics))
        return asyncio.sleep(0)

    async def _switch_sink(self, switch: SinkSwitch, new: Sink) -> None:
        await new.start()
        old = switch.switch(new)
        self._retire(old.close(self.cfg.shutdown.grace_s))
        log.info("sink: now %s", new.name)

    def _retire(self, closing: Awaitable[None] | None) -> None:
        if closing is None:
            return

        async def run() -> None:
            await closing

        task = asyncio.get_running_loop().create_task(run())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @property
    def clients(self) -> list[CandidateClient]:
        return list(self.dispatcher.clients) if self.dispatcher is not None else []

    async def close_shadows(self, grace_s: float) -> None:
        """Probes and shadows share the grace (their records reach the sink first)."""
        await asyncio.gather(
            self.probes.stop(grace_s) if self.probes is not None else asyncio.sleep(0),
            self.dispatcher.close(grace_s) if self.dispatcher is not None else asyncio.sleep(0),
        )

    async def close_sink(self, timeout_s: float) -> None:
        """Flush the sink (and any a reload retired) within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self._retiring:
            await asyncio.wait(set(self._retiring), timeout=timeout_s)
        if self.sink is not None:
            await self.sink.close(max(deadline - time.monotonic(), 1.0))

    async def close(self, grace_s: float, flush_s: float) -> None:
        await self.close_shadows(grace_s)
        await self.close_sink(flush_s)


def _probes(cfg: Config, sink: Sink, metrics: Metrics) -> ProbeScheduler | None:
    if not cfg.probes.enabled:
        return None
    # Suites are loaded now, so a bad one is a ConfigError before any port is bound.
    from shadoweval.probes.scheduler import ProbeScheduler

    return ProbeScheduler.from_config(cfg, sink, metrics)
