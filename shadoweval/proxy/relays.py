"""Extra relay processes on the proxy port (``listen.processes``).

One Python process relays on one core. With N processes, each binds the proxy port with
``SO_REUSEPORT`` and the kernel spreads new connections across them. The process ``serve``
started leads: it relays too, and holds the admin port, the shadow worker and a handle on
each other relay. A relay takes the global sampling decision for its own requests and
hands the mirrored ones to the leader, which passes the frames to the worker unopened, so
the candidates, their budgets, the probes and the sink stay single. The leader's
``/metrics`` merges every process's families. A relay that dies is replaced; a leader
that dies takes its relays with it (they see their channel close, answer the requests
they hold and exit).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric

from shadoweval.config.proxy import Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import (
    Channel,
    Child,
    ForkedProcess,
    Parent,
    configured,
    fork_child,
)
from shadoweval.proxy.worker import Handoff, ShadowWorker

if TYPE_CHECKING:
    import socket

log = logging.getLogger(__name__)


class LeaderLink(Handoff):
    """A relay's hand-over: its mirrored requests go to the leader, bound for the worker
    (counted as lost, like the leader's own, when the channel is full or gone)."""

    def __init__(self, cfg: Config, metrics: Metrics, parent: Parent) -> None:
        super().__init__(cfg, metrics)
        self._parent = parent

    def _channel(self) -> Channel | None:
        return self._parent.channel

    async def close(self, grace_s: float, flush_s: float | None = None) -> None:
        self._closing = True
        self._flush()


class Relays:
    """The leader's handles on the other relay processes."""

    def __init__(
        self,
        cfg: Config,
        worker: ShadowWorker,
        metrics: Metrics,
        forked: list[ForkedProcess] | None = None,
    ) -> None:
        self._cfg = cfg
        self._worker = worker
        self._died = metrics.restarts.labels("relay").inc
        self._forked = list(forked or ())
        self.children: list[Child] = []

    async def start(self, port: int) -> None:
        """Start the relays on the leader's port (bound, so a configured port 0 is known)."""
        cfg = self._cfg
        listen = cfg.listen.model_copy(update={"port": port})
        config = cfg.model_copy(update={"listen": listen}).for_children()
        for i in range(cfg.listen.processes - 1):
            self.children.append(
                Child(
                    f"relay process {i + 1}",
                    "relay",
                    config,
                    cfg.shadow_worker.start_timeout_s,
                    self._forked[i] if i < len(self._forked) else None,
                    on_offer=self._worker.forward,
                    on_death=self._died,
                )
            )
        await asyncio.gather(*(child.start() for child in self.children))

    async def families(self) -> list[list[Metric]]:
        return list(await asyncio.gather(*(child.families() for child in self.children)))

    def tell_close(self, grace_s: float) -> None:
        """Each relay stops accepting and answers the requests it holds."""
        for child in self.children:
            child.tell_close(grace_s)

    async def wait_closed(self, grace_s: float) -> None:
        await asyncio.gather(*(child.wait_closed(grace_s + 5.0) for child in self.children))


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
    parent.reply(("ready",))
    gc.collect()
    gc.freeze()  # as in the leader: start-up objects out of every collection's way
    await parent.stop
    await server.stop()
    await parent.close()  # after the last hand-over is written
    return 0
