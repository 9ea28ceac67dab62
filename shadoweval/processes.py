"""The proxy's process entry points, together: ``serve`` (the leader, alone or with its
children) and the mains of the children it starts (the shadow worker, the worker's pairing
process, extra relay processes). Each main configures itself over its channel
(:func:`shadoweval.proxy.children.configured`) and builds its part of the shadow side with
:class:`shadoweval.proxy.shadowside.ShadowSide`, so nothing is assembled twice, and
importing this module is the only way the process modules meet (no import cycles).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shadoweval.config import Config
from shadoweval.pricing import PriceTable
from shadoweval.proxy.children import ForkedProcess, configured, fork_child, merge_families
from shadoweval.proxy.shadowside import ShadowSide, shadow_metrics

if TYPE_CHECKING:
    from shadoweval.config.proxy import Candidate
    from shadoweval.proxy.pairing import Pairing
    from shadoweval.proxy.shadow import ShadowJob
    from shadoweval.tracing import Tracer

log = logging.getLogger(__name__)


# -- the leader -------------------------------------------------------------------------


async def serve(
    cfg: Config,
    forked_worker: ForkedProcess | None = None,
    forked_relays: list[ForkedProcess] | None = None,
    config_path: str | Path | None = None,
    reload_poll_s: float = 2.0,
) -> None:
    """Run the proxy until SIGTERM or SIGINT. With ``config_path``, SIGHUP and a change of
    that file (polled every ``reload_poll_s`` seconds; 0: SIGHUP only) reload it."""
    from shadoweval.proxy.reload import Reloader
    from shadoweval.server import ProxyServer

    server = ProxyServer(cfg, forked_worker=forked_worker, forked_relays=forked_relays)
    await server.start()
    reloader = None
    if config_path is not None:
        reloader = Reloader(config_path, cfg, server.reload, server.metrics, reload_poll_s)
        reloader.start()
    # Everything built so far lives as long as the process: moved out of the collector's
    # reach, it is no longer scanned by every full collection (tens of ms on the loop).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received, draining")
    if reloader is not None:
        await reloader.stop()
    await server.stop()


# -- the shadow worker ------------------------------------------------------------------


def fork_worker() -> ForkedProcess | None:
    """Fork the shadow worker before the event loop starts (it then shares the proxy's
    pages). None where fork is not available; the proxy then starts the worker afresh."""
    if not hasattr(os, "fork"):  # pragma: no cover - not on Windows
        return None
    return fork_child(run_worker)


def run_worker(fd: int) -> int:
    """``shadoweval shadow-worker --fd N``: started by the proxy, never by hand. Its idle
    child (parsing, pairing, the sink) is forked first, before the event loop."""
    from shadoweval import loop as event_loop

    def pairing(child_fd: int) -> int:
        os.close(fd)  # the worker's channel to the proxy has two ends only
        return run_pairing(child_fd)

    forked = fork_child(pairing) if hasattr(os, "fork") else None
    return event_loop.run(_worker_main(fd, forked))


async def _worker_main(fd: int, forked: ForkedProcess | None = None) -> int:
    from shadoweval.proxy.http import decode_headers
    from shadoweval.proxy.pairing_child import PairingHandoff, families
    from shadoweval.proxy.worker import lift_priority, short_slice
    from shadoweval.telemetry import Heartbeat, Recorder

    parent, cfg = await configured(fd, "shadow-worker")
    reply = parent.reply
    if cfg is None:
        if forked is not None:
            forked.kill()
        return 2
    # This process only sends, reads and timestamps, at the normal priority: its times are
    # the wire's. The CPU-heavy rest runs in the idle child (shadow_worker.scheduling).
    short_slice()
    try:
        m = shadow_metrics(cfg)
        prices = PriceTable(cfg.pricing)
        pairing = PairingHandoff(cfg, m, forked)
        await pairing.process.start()
        recorder = Recorder(m, cfg.primary.name, prices)
        side = await ShadowSide.build(
            cfg,
            m,
            prices,
            dispatch=True,
            record=False,
            on_attempt=recorder.attempt,
            finish=pairing.send,
        )
    except Exception as exc:
        if forked is not None:
            forked.kill()
        reply(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    dispatcher = side.dispatcher
    assert dispatcher is not None
    loop = asyncio.get_running_loop()
    m.loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))

    def connections() -> dict[tuple[str, str], int]:
        return {("outbound", c.name): c.pool.open_connections for c in side.clients}

    heartbeat = Heartbeat(m, cfg.metrics.loop_lag_interval_s, prices, _roles(cfg), connections)
    heartbeat.start()
    reply(("ready",))

    def offer(message: tuple[Any, ...]) -> None:
        route, path, raw_headers, body, capture, link, handed_at = message[1]
        headers = decode_headers(raw_headers)
        job = dispatcher.offer(route, path, headers, body, None, mirrored=True)
        if job is not None:
            job.queued_at = handed_at
            if link is not None:  # the spans are the idle child's: it has the tracer
                job.link = link
                job.info = dataclasses.replace(job.info, trace_id=f"{link[0]:032x}")
            job.primary_done(capture)

    def reload(config: dict[str, Any]) -> asyncio.Future[None]:
        new = Config.model_validate(config)
        prices = PriceTable(new.pricing)
        m.init_candidates(new.candidates)
        pairing.reconfigure(new)
        # Written to the pairing process before any finished shadow of a new candidate.
        forwarded = pairing.process.reconfigure(config)
        side.apply(new, prices)
        recorder.reprice(prices)
        heartbeat.reconfigure(prices, _roles(new))

        async def done() -> None:
            error = await forwarded
            if error is not None:
                raise RuntimeError(error)

        return asyncio.ensure_future(done())

    parent.on_offer = offer
    parent.on_reload = reload
    parent.gather = lambda: families(pairing, list(m.registry.collect()))
    grace = await parent.stop
    cfg = side.cfg  # the configuration in force now
    if grace is None:
        grace = cfg.shutdown.shadow_grace_s
    flush_s = parent.flush_s if parent.flush_s is not None else cfg.shutdown.grace_s

    started = time.monotonic()
    lift_priority(pairing.process.pid)  # its flush has the proxy's deadline too
    await side.close_shadows(grace)
    # Everything handed over is in its socket before this: it pairs that, then flushes.
    pairing.process.tell_close(0.0, flush_s)
    await pairing.process.wait_closed(flush_s + 5.0)
    await heartbeat.stop()
    for client in side.clients:
        await client.pool.close()
    parent.gather = None
    final = pairing.process.final or []
    parent.collect = lambda: merge_families(m.registry.collect(), final)
    counts = m.totals(parent.collect())
    totals = " ".join(f"{k}={v:g}" for k, v in counts.items())
    log.info("stopped in %.2fs; final counts: %s", time.monotonic() - started, totals)
    await parent.close()
    return 0


def _roles(cfg: Config) -> dict[str, str]:
    return {c.name: c.role for c in cfg.candidates}


# -- the shadow worker's pairing process ------------------------------------------------

# Jobs kept for their other candidates' answers (one parse of the request and the primary's
# answer, one redaction of the shared parts); older ones are parsed again if they come.
_JOBS_KEPT = 256
# Configurations whose pairing is kept for answers offered under them (a reload's shadows
# still in flight); an answer of an older one is recorded under the configuration in force.
_CONFIGS_KEPT = 16


def run_pairing(fd: int) -> int:
    """``shadoweval shadow-pairing --fd N``: started by the shadow worker, never by hand."""
    from shadoweval import loop as event_loop

    return event_loop.run(_pairing_main(fd))


async def _pairing_main(fd: int) -> int:
    import contextlib

    from shadoweval.proxy.shadow import ShadowJob
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
        recorder = Recorder(m, cfg.primary.name, prices)
        side = await ShadowSide.build(
            cfg, m, prices, dispatch=False, record=True, observe=recorder.outcome
        )
        tracer: Tracer | None = None
        if cfg.tracing.enabled:
            from shadoweval.tracing import LinkedTrace, Tracer

            tracer = Tracer.build(cfg, prices)
    except Exception as exc:
        parent.reply(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    # A removed candidate's last answers may still come: its settings are kept.
    candidates = {c.name: c for c in cfg.candidates}
    assert side.pairing is not None
    # digest -> the pairing and candidates of a configuration: each answer is recorded with
    # the redaction, prices and candidate settings its shadow was offered under.
    configs: OrderedDict[str, tuple[Pairing, dict[str, Candidate]]] = OrderedDict()
    configs[cfg.digest()] = (side.pairing, dict(candidates))
    jobs: OrderedDict[str, ShadowJob] = OrderedDict()
    side.start_probes()
    parent.reply(("ready",))

    def finished(message: tuple[Any, ...]) -> None:
        name, info, body, primary, payload, capture, queued_at, sent_at, link, rebuilt, digest = (
            message[1]
        )
        job = jobs.get(info.request_id)
        if job is None:
            trace = LinkedTrace(tracer, link, info.route) if tracer is not None and link else None
            job = ShadowJob(info, info.route, body, (), trace)
            job.queued_at = queued_at
            job.primary_done(primary)
            jobs[info.request_id] = job
            if len(jobs) > _JOBS_KEPT:
                jobs.popitem(last=False)
        assert side.pairing is not None
        pairing, offered = configs.get(digest) or (side.pairing, candidates)
        cand = offered.get(name) or candidates[name]
        try:
            pairing.record(cand, job, payload, capture, sent_at, rebuilt=rebuilt)
        except Exception:  # a pairing bug is logged and counted, never propagated
            log.exception("pairing the answer of %s failed unexpectedly", name)
            m.errors.labels(candidates[name].role, name, "internal").inc()

    def reload(config: dict[str, Any]) -> Any:
        new = Config.model_validate(config)
        prices = PriceTable(new.pricing)
        m.init_candidates(new.candidates)
        candidates.update((c.name, c) for c in new.candidates)
        recorder.reprice(prices)
        applying = side.apply(new, prices)
        assert side.pairing is not None
        configs[new.digest()] = (side.pairing, {c.name: c for c in new.candidates})
        configs.move_to_end(new.digest())
        while len(configs) > _CONFIGS_KEPT:
            configs.popitem(last=False)
        return applying

    parent.on_offer = finished
    parent.on_reload = reload
    parent.collect = m.registry.collect
    grace = await parent.stop  # the worker sends what it has first: nothing is in flight
    cfg = side.cfg
    if grace is None:
        grace = cfg.shutdown.shadow_grace_s
    flush_s = parent.flush_s if parent.flush_s is not None else cfg.shutdown.grace_s
    started = time.monotonic()
    await side.close(grace, flush_s)
    if tracer is not None:
        await tracer.close()
    log.info("stopped in %.2fs", time.monotonic() - started)
    await parent.close()
    return 0


# -- extra relay processes --------------------------------------------------------------


def fork_relays(count: int, inherited: list[socket.socket]) -> list[ForkedProcess]:
    """Fork ``count`` relays before the event loop starts (they share the leader's pages).
    Each closes the channels of the children forked before it."""
    if not hasattr(os, "fork"):  # pragma: no cover - not on Windows
        return []
    forked: list[ForkedProcess] = []
    for _ in range(count):
        forked.append(fork_child(run_relay, [*inherited, *(f.sock for f in forked)]))
    return forked


def run_relay(fd: int) -> int:
    """``shadoweval relay --fd N``: started by the proxy, never by hand."""
    from shadoweval import loop as event_loop

    return event_loop.run(_relay_main(fd))


async def _relay_main(fd: int) -> int:
    from shadoweval.server import ProxyServer

    parent, cfg = await configured(fd, f"relay {os.getpid()}")
    if cfg is None:
        return 2
    server = ProxyServer(cfg, relay=parent)
    try:
        await server.start()
    except Exception as exc:
        parent.reply(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    parent.collect = server.metrics.registry.collect

    def reload(config: dict[str, Any]) -> Any:
        return server.reload(Config.model_validate(config))

    parent.on_reload = reload
    parent.reply(("ready",))
    gc.collect()
    gc.freeze()  # as in the leader: start-up objects out of every collection's way
    await parent.stop
    await server.stop()
    await parent.close()  # after the last hand-over is written
    return 0
