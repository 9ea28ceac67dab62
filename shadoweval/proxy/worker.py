"""The shadow worker: the shadow dispatcher, candidates and sink in a child process at a
lower scheduling priority (``shadow_worker.enabled``).

In one process, every shadow's CPU (sending, parsing, pairing, redaction, the sink) runs
on the loop that relays the callers' answers, so it shows in their latency tail, and a
misbehaving candidate or a dead Kafka costs the primary path CPU. With the worker, the
proxy process only relays, measures the primary and hands each finished request to the
worker in one buffered write; the kernel's scheduler then gives the relay the CPU first.

Both ends are in this module. The channel is a private socket pair between the proxy and
the child it started, carrying length-prefixed pickles (never anything from the network:
the proxy builds every frame). The proxy's ``/metrics`` merges the worker's families with
its own, so the exposition is the same as in one process. If the worker dies, the proxy
keeps relaying, counts the shadows it cannot hand over, and starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from shadoweval.config import Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.http import Request, decode_headers
from shadoweval.sampling import Sampler
from shadoweval.types import Capture, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.tracing import RequestTrace, Tracer

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")


def _frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


class _Channel(asyncio.Protocol):
    """Length-prefixed messages over a stream socket, in both directions."""

    def __init__(self, on_message: Any, on_lost: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._on_message = on_message
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        start = 0
        while len(buf) - start >= 4:
            (size,) = _LEN.unpack_from(buf, start)
            if len(buf) - start - 4 < size:
                break
            message = pickle.loads(buf[start + 4 : start + 4 + size])
            start += 4 + size
            self._on_message(message)
        if start:
            del buf[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost()


# -- the proxy's side -------------------------------------------------------------------


class ShadowWorker:
    """The proxy's handle on its worker process."""

    def __init__(self, cfg: Config, metrics: Metrics, forked: ForkedWorker | None = None) -> None:
        """``forked``: a worker :func:`fork_worker` started before the event loop (it
        shares the proxy's memory pages); replacements are started afresh."""
        self._cfg = cfg
        self._wcfg = cfg.shadow_worker
        self._proc: asyncio.subprocess.Process | ForkedWorker | None = None
        self._forked = forked
        self._channel: _Channel | None = None
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[None] | None = None
        self._closing = False
        self._restarts = 0
        self._restart_task: asyncio.Task[None] | None = None
        # The global sampling decision is taken here, so only mirrored requests cross.
        self._sampler = Sampler(cfg.sampling)
        self._candidates = [
            (
                c.name,
                c.sample_rate,
                metrics.sampled.labels(c.name, "in"),
                metrics.sampled.labels(c.name, "out"),
                metrics.dropped.labels(c.name, "worker_unavailable"),
            )
            for c in cfg.candidates
        ]
        self._sampled_out = [metrics.sampled.labels(c.name, "out") for c in cfg.candidates]

    @property
    def accepting(self) -> bool:
        return bool(self._cfg.candidates) and not self._closing

    async def start(self) -> None:
        """Start the worker and wait until it is ready (a ConfigError-like failure of the
        worker, such as a candidate's missing certificate, fails the proxy's start too)."""
        loop = asyncio.get_running_loop()
        if self._forked is not None:
            self._proc, ours = self._forked, self._forked.sock
            self._forked = None
        else:
            ours, theirs = _socket_pair()
            fd = theirs.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shadoweval", "shadow-worker", "--fd", str(fd), pass_fds=(fd,)
            )
            theirs.close()
        self._ready = loop.create_future()
        _, self._channel = await loop.create_unix_connection(
            lambda: _Channel(self._on_message, self._on_lost), sock=ours
        )
        assert self._channel.transport is not None
        self._channel.transport.write(_frame(("config", self._cfg.model_dump(mode="json"))))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self._wcfg.start_timeout_s)
        except TimeoutError:
            await self._kill()
            raise RuntimeError(
                f"the shadow worker did not start within {self._wcfg.start_timeout_s}s"
            ) from None

    def send(
        self, route: Route, request: Request, capture: Capture, trace: RequestTrace | None
    ) -> None:
        """Hand over one finished request (called off the caller's path, after the answer).
        Frames are written once per loop iteration, so a busy proxy makes few writes."""
        sampler = self._sampler
        key = sampler.key(request.headers, request.body) if sampler.keyed else None
        if not sampler.mirrored(key):
            for counter in self._sampled_out:
                counter.inc()
            return
        channel = self._channel
        transport = channel.transport if channel is not None else None
        if (
            transport is None
            or self._ready is None
            or not self._ready.done()
            # Not keeping up (starved of CPU by the proxy's own traffic): shed shadows,
            # never the proxy's memory.
            or transport.get_write_buffer_size() > self._wcfg.max_pending_bytes
        ):
            # Counted as the dispatcher would have: sampled for a candidate, then dropped.
            for name, rate, sampled_in, sampled_out, lost in self._candidates:
                if sampler.candidate_in(key, name, rate):
                    sampled_in.inc()
                    lost.inc()
                else:
                    sampled_out.inc()
            return
        link = trace.link() if trace is not None else None
        frame = (route, request.path, request.raw_headers, request.body, capture, link)
        self._pending.append(_frame(("offer", frame)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        channel = self._channel
        if channel is not None and channel.transport is not None:
            channel.transport.write(b"".join(pending))

    async def families(self, timeout_s: float = 2.0) -> list[Metric]:
        """The worker's metric families, for the proxy's /metrics (empty if it is down)."""
        channel = self._channel
        if channel is None or channel.transport is None:
            return []
        rid = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[rid] = reply
        channel.transport.write(_frame(("metrics", rid)))
        try:
            return list(await asyncio.wait_for(reply, timeout_s))
        except TimeoutError:
            log.warning("the shadow worker did not answer a metrics request in %.1fs", timeout_s)
            return []
        finally:
            self._replies.pop(rid, None)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "metrics":
            reply = self._replies.get(message[1])
            if reply is not None and not reply.done():
                reply.set_result(message[2])
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif kind == "failed" and self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                RuntimeError(f"the shadow worker failed to start: {message[1]}")
            )

    def _on_lost(self) -> None:
        self._channel = None
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result([])
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("the shadow worker exited while starting"))
            return
        if not self._closing:
            code = self._proc.returncode if self._proc is not None else None
            log.error("the shadow worker exited (code %s); starting a new one", code)
            self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        self._restarts += 1
        await asyncio.sleep(min(2.0 ** min(self._restarts, 5), 30.0))
        if self._closing:
            return
        try:
            await self.start()
        except Exception as exc:
            log.error("could not restart the shadow worker: %s", exc)
            if not self._closing:
                self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    async def close(self, grace_s: float) -> None:
        """The worker finishes its shadows within ``grace_s``, flushes its sink and exits."""
        self._closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        self._flush()
        channel = self._channel
        if channel is not None and channel.transport is not None:
            channel.transport.write(_frame(("close", grace_s)))
        proc = self._proc
        if proc is None:
            return
        # The worker's own sink may need its full grace to flush after the shadows.
        try:
            await asyncio.wait_for(proc.wait(), grace_s + self._cfg.shutdown.grace_s + 5.0)
        except TimeoutError:
            log.error("the shadow worker did not stop in time; killing it")
            await self._kill()
        if channel is not None and channel.transport is not None:
            channel.transport.close()

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)


# Facts about one process that do not add up: the proxy process's are shown.
_FIRST_ONLY = frozenset({"process_start_time_seconds", "process_max_fds", "python_info"})


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return ours, theirs


class ForkedWorker:
    """A worker forked from the proxy before its event loop started (the same interface as
    the asyncio process of a spawned one: ``pid``, ``returncode``, ``wait``, ``kill``)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self._code: int | None = None

    @property
    def returncode(self) -> int | None:
        if self._code is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._code = os.waitstatus_to_exitcode(status)
        return self._code

    async def wait(self) -> int:
        while self.returncode is None:
            await asyncio.sleep(0.05)
        assert self._code is not None
        return self._code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def fork_worker() -> ForkedWorker | None:
    """Fork the shadow worker now, before any event loop or thread exists: the child shares
    every module and object the proxy has loaded (copy-on-write; frozen out of the garbage
    collector's reach first, so collections do not copy them), instead of loading its own.
    None where fork is not available; the proxy then starts the worker afresh."""
    if not hasattr(os, "fork"):  # pragma: no cover - not on Windows
        return None
    gc.collect()
    gc.freeze()
    ours, theirs = _socket_pair()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the proxy's code
        code = 1
        try:
            ours.close()
            code = run_worker(theirs.detach())
        finally:
            os._exit(code)
    theirs.close()
    return ForkedWorker(pid, ours)


def merge_families(*groups: Iterable[Metric]) -> list[Metric]:
    """One exposition from several processes' families: samples with the same name and
    labels are added (counters, histogram buckets and gauges alike: each series is
    written by one process, the other's is zero; memory, CPU and open files become the
    total of both processes)."""
    merged: dict[str, Metric] = {}
    index: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for n, families in enumerate(groups):
        for family in families:
            if n and family.name in _FIRST_ONLY:
                continue
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = copy.copy(family)
                into.samples = list(family.samples)
                index[family.name] = {
                    (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(into.samples)
                }
                continue
            positions = index[family.name]
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                i = positions.get(key)
                if i is None:
                    positions[key] = len(into.samples)
                    into.samples.append(s)
                else:
                    old = into.samples[i]
                    into.samples[i] = old._replace(value=old.value + s.value)
    return list(merged.values())


# -- the worker's side ------------------------------------------------------------------


def run_worker(fd: int) -> int:
    """``shadoweval shadow-worker --fd N``: started by the proxy, never by hand."""
    from shadoweval import loop as event_loop

    return event_loop.run(_worker_main(fd))


async def _worker_main(fd: int) -> int:
    from shadoweval import sinks
    from shadoweval.pricing import PriceTable
    from shadoweval.proxy.shadow import ShadowDispatcher
    from shadoweval.telemetry import Heartbeat, Recorder

    # SIGINT/SIGTERM go to the whole process group (a terminal, a container runtime): the
    # proxy decides when this worker stops, after its in-flight requests.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop = asyncio.get_running_loop()
    first_message: asyncio.Future[tuple[Any, ...] | None] = loop.create_future()
    stop: asyncio.Future[float | None] = loop.create_future()
    handlers: dict[str, Any] = {}

    def on_message(message: tuple[Any, ...]) -> None:
        # Handled as it is read (offer is synchronous and bounded by the candidates'
        # queues), so nothing piles up in this process between reads.
        if not first_message.done():
            first_message.set_result(message)
        elif message[0] == "close":
            if not stop.done():
                stop.set_result(message[1])
        elif (handler := handlers.get(message[0])) is not None:
            handler(message)

    def on_lost() -> None:  # the proxy is gone: finish what is queued, then stop
        if not first_message.done():
            first_message.set_result(None)
        if not stop.done():
            stop.set_result(None)

    sock = socket.socket(fileno=fd)
    _, channel = await loop.create_unix_connection(lambda: _Channel(on_message, on_lost), sock=sock)

    def reply(message: tuple[Any, ...]) -> None:
        if channel.transport is not None:
            channel.transport.write(_frame(message))

    first = await first_message
    if first is None or first[0] != "config":
        return 2
    cfg = Config.model_validate(first[1])
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[shadow-worker]: %(message)s",
        stream=sys.stderr,
        force=True,  # a forked worker inherits the proxy's handlers
    )
    with contextlib.suppress(OSError, AttributeError):  # SCHED_IDLE: Linux only
        if cfg.shadow_worker.scheduling == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        os.nice(cfg.shadow_worker.nice)
    try:
        known = tuple(c.model for c in cfg.candidates if c.model)
        m = Metrics(model_label_limit=cfg.metrics.model_label_limit, known_models=known)
        for cand in cfg.candidates:
            m.init_upstream(cand.role, cand.name)
        prices = PriceTable(cfg.pricing)
        sink = sinks.build(cfg.sink, m)
        probes = None
        if cfg.probes.enabled:
            from shadoweval.probes.scheduler import ProbeScheduler

            probes = ProbeScheduler.from_config(cfg, sink, m)
        await sink.start()
        recorder = Recorder(m, cfg.primary.name, prices)
        dispatcher = ShadowDispatcher.from_config(
            cfg, sink, m, prices, on_attempt=recorder.attempt, observe=recorder.outcome
        )
        clients = dispatcher.clients
        await dispatcher.start()
        tracer: Tracer | None = None
        if cfg.tracing.enabled:
            from shadoweval.tracing import LinkedTrace, Tracer

            tracer = Tracer.build(cfg, prices)
    except Exception as exc:
        reply(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    m.loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
    roles: dict[str, str] = {c.name: c.role for c in cfg.candidates}

    def connections() -> dict[tuple[str, str], int]:
        return {("outbound", c.name): c.pool.open_connections for c in clients}

    heartbeat = Heartbeat(m, cfg.metrics.loop_lag_interval_s, prices, roles, connections)
    heartbeat.start()
    if probes is not None:
        probes.start()
    reply(("ready",))

    def offer(message: tuple[Any, ...]) -> None:
        route, path, raw_headers, body, capture, link = message[1]
        headers = decode_headers(raw_headers)
        trace = LinkedTrace(tracer, link, route) if tracer is not None and link else None
        job = dispatcher.offer(route, path, headers, body, trace, mirrored=True)
        if job is not None:
            job.primary_done(capture)

    handlers["offer"] = offer
    handlers["metrics"] = lambda message: reply(("metrics", message[1], list(m.registry.collect())))
    grace = await stop
    if grace is None:
        grace = cfg.shutdown.shadow_grace_s

    started = time.monotonic()
    if probes is not None:
        await probes.stop(grace)
    await dispatcher.close(grace)
    await sink.close(cfg.shutdown.grace_s)
    await heartbeat.stop()
    if tracer is not None:  # after the shadows, so their spans are exported too
        await tracer.close()
    for client in clients:
        await client.pool.close()
    totals = " ".join(f"{k}={v:g}" for k, v in m.totals().items())
    log.info("stopped in %.2fs; final counts: %s", time.monotonic() - started, totals)
    if channel.transport is not None:
        channel.transport.close()
    return 0
