"""The shadow worker: the shadow dispatcher, candidates and sink in a child process at a
lower scheduling priority (``shadow_worker.enabled``).

In one process, every shadow's CPU (sending, parsing, pairing, redaction, the sink) runs
on the loop that relays the callers' answers, so it shows in their latency tail, and a
misbehaving candidate or a dead Kafka costs the primary path CPU. With the worker, the
proxy process only relays, measures the primary and hands each finished request to the
worker in one buffered write; the kernel's scheduler then gives the relay the CPU first.

The proxy's end is in this module, the worker's main in :mod:`shadoweval.processes`; the
channel and the child's life are :mod:`shadoweval.proxy.children`. The proxy's
``/metrics`` merges the worker's families with its own, so the exposition is the same as in
one process. If the worker dies, the
proxy keeps relaying, counts the shadows it cannot hand over, and starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric

from shadoweval.campaign import Match, request_model
from shadoweval.config.proxy import Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import (
    OFFER,
    Child,
    ForkedProcess,
    frame,
    unframe,
)
from shadoweval.proxy.http import Request, decode_headers
from shadoweval.records import TASK_HEADER
from shadoweval.sampling import Sampler
from shadoweval.types import Capture, Route

if TYPE_CHECKING:  # imported only when tracing is on (it loads OpenTelemetry)
    from shadoweval.proxy.children import Channel
    from shadoweval.tracing import RequestTrace

log = logging.getLogger(__name__)


# -- the proxy's side -------------------------------------------------------------------


class Handoff:
    """Hands finished requests over towards the worker: the global sampling decision,
    one buffered write per loop iteration, and counting what cannot cross. The proxy's
    :class:`ShadowWorker` writes to the worker; an extra relay process writes to the proxy
    process, which passes the frames on (``listen.processes``)."""

    def __init__(self, cfg: Config, metrics: Metrics) -> None:
        self._max_pending = cfg.shadow_worker.max_pending_bytes
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._closing = False
        self._metrics = metrics
        # The global sampling decision is taken here, so only mirrored requests cross.
        self._sampler = Sampler(cfg.sampling)
        self.reconfigure(cfg)

    def reconfigure(self, cfg: Config) -> None:
        """The candidates and sampling of a reloaded configuration (the sampler, and its
        token bucket, kept while its section is unchanged)."""
        metrics = self._metrics
        self._cfg = cfg
        if cfg.sampling != self._sampler.cfg:
            self._sampler = Sampler(cfg.sampling)
        self._candidates = [
            (
                c.name,
                c.sample_rate,
                metrics.sampled.labels(c.name, "in"),
                metrics.sampled.labels(c.name, "out"),
                metrics.dropped.labels(c.name, "worker_unavailable"),
                Match(c.match),
                metrics.sampled.labels(c.name, "unmatched"),
            )
            for c in cfg.candidates
        ]
        self._match_models = any(c.match.models for c in cfg.candidates)
        self._sampled_out = [metrics.sampled.labels(c.name, "out") for c in cfg.candidates]

    @property
    def accepting(self) -> bool:
        return bool(self._cfg.candidates) and not self._closing

    def _channel(self) -> Channel | None:
        """The channel frames go to, when it is up."""
        raise NotImplementedError

    async def close(self, grace_s: float, flush_s: float | None = None) -> None:
        """Shadows get ``grace_s``, then the sink ``flush_s`` (default its grace_s)."""
        raise NotImplementedError

    def _open(self) -> Channel | None:
        """The channel, if a frame can be queued on it now."""
        channel = self._channel()
        transport = channel.transport if channel is not None else None
        # Not keeping up (starved of CPU by the proxy's own traffic): shed shadows, never
        # the proxy's memory.
        if transport is None or transport.get_write_buffer_size() > self._max_pending:
            return None
        return channel

    def send(
        self, route: Route, request: Request, capture: Capture, trace: RequestTrace | None
    ) -> None:
        """Hand over one finished request (called off the caller's path, after the answer)."""
        sampler = self._sampler
        key = sampler.key(request.headers, request.body) if sampler.keyed else None
        if not sampler.mirrored(key):
            for counter in self._sampled_out:
                counter.inc()
            return
        if self._open() is None:
            self._lose(key, route, request.headers, request.body)
            return
        link = trace.link() if trace is not None else None
        handed_at = time.perf_counter()  # the origin of the record's queue_wait_s
        offer = (
            route,
            request.raw_path,
            request.raw_headers,
            request.body,
            capture,
            link,
            handed_at,
        )
        self._queue(frame(("offer", offer), OFFER))

    def _lose(
        self, key: bytes | None, route: Route, headers: Mapping[str, str], body: bytes
    ) -> None:
        """Counted as the dispatcher would have: matched and sampled for a candidate, then
        dropped."""
        model = request_model(body)[1] if self._match_models else None
        task = headers.get(TASK_HEADER)
        for name, rate, sampled_in, sampled_out, lost, match, unmatched in self._candidates:
            if not match(route, model, task, headers):
                unmatched.inc()
            elif self._sampler.candidate_in(key, name, rate):
                sampled_in.inc()
                lost.inc()
            else:
                sampled_out.inc()

    def _queue(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        channel = self._channel()
        if channel is not None and pending:
            channel.write(b"".join(pending))


class ShadowWorker(Handoff):
    """The proxy's handle on its worker process."""

    def __init__(self, cfg: Config, metrics: Metrics, forked: ForkedProcess | None = None) -> None:
        """``forked``: a worker :func:`fork_worker` started before the event loop (it
        shares the proxy's memory pages); replacements are started afresh."""
        self.process = Child(
            "shadow worker",
            "shadow-worker",
            cfg.for_children(),
            cfg.shadow_worker.start_timeout_s,
            forked,
            on_death=metrics.restarts.labels("shadow_worker").inc,
        )
        super().__init__(cfg, metrics)

    def reload(self, cfg: Config) -> Awaitable[str | None]:
        """Send the worker a reloaded configuration (it passes it on to its pairing
        process); the awaitable gives its error, or None once applied."""
        self.reconfigure(cfg)
        return self.process.reconfigure(cfg.for_children())

    def _channel(self) -> Channel | None:
        return self.process.channel if self.process.ready else None

    async def start(self) -> None:
        await self.process.start()

    async def families(self) -> list[Metric]:
        return await self.process.families()

    def forward(self, data: bytes) -> None:
        """Pass on an offer frame from an extra relay process (its sampling decision is
        taken); counted as lost, as the relay would have, when the worker cannot take it."""
        if self._open() is not None:
            self._queue(data)
            return
        _, (route, _, raw_headers, body, *_) = unframe(data)
        sampler = self._sampler
        headers = decode_headers(raw_headers)
        self._lose(sampler.key(headers, body) if sampler.keyed else None, route, headers, body)

    async def close(self, grace_s: float, flush_s: float | None = None) -> None:
        """The worker finishes its shadows within ``grace_s``, flushes its sink within
        ``flush_s`` (what it cannot write is counted there) and exits; it is killed only
        if it is still there well after both (a worker that does not answer)."""
        self._closing = True
        self._flush()
        lift_priority(self.process.pid)
        self.process.tell_close(grace_s, flush_s)
        flush = self._cfg.shutdown.grace_s if flush_s is None else flush_s
        await self.process.wait_closed(grace_s + flush + 5.0)


def lift_priority(pid: int | None) -> None:
    """At shutdown the worker's remaining work has the proxy's deadline: under SCHED_IDLE a
    saturated machine starves it past the grace (beside two CPU-burning processes the proxy
    did not exit in time). Best effort: an unprivileged process may not be allowed to."""
    if pid is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # Linux only; EPERM without RLIMIT_NICE
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


# sched_setattr(2) by machine: Python has no binding for it.
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_SLICE_NS = 500_000


def short_slice() -> None:
    """Ask for a 0.5 ms scheduler slice (Linux 6.12+ EEVDF reads a fair task's
    ``sched_runtime`` as its slice): the policy and weight stay normal, but this process's
    wake-ups, when a candidate's bytes arrive, preempt CPU-bound work sooner, so their
    timestamps are closer to the wire. Best effort: older kernels ignore it."""
    number = _SCHED_SETATTR.get(os.uname().machine)
    if number is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        # struct sched_attr: size, policy, flags, nice, priority, runtime, deadline, period
        attr = struct.pack(
            "IIQiIQQQ",
            48,
            os.SCHED_OTHER,
            0,
            os.getpriority(os.PRIO_PROCESS, 0),
            0,
            _SLICE_NS,
            0,
            0,
        )
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(number, 0, ctypes.create_string_buffer(attr, len(attr)), 0)
