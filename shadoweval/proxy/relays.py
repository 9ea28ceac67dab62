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
import logging
from collections.abc import Awaitable
from typing import Any

from prometheus_client.metrics_core import Metric

from shadoweval.config.proxy import Config
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import (
    Channel,
    Child,
    ForkedProcess,
    Parent,
)
from shadoweval.proxy.worker import Handoff, ShadowWorker

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
        self._port = cfg.listen.port

    def reload(self, cfg: Config) -> list[Awaitable[str | None]]:
        """Send every relay a reloaded configuration (its handler's sampling and
        candidates); one awaitable per relay gives its error, or None once applied."""
        self._cfg = cfg
        config = self._config(cfg)
        return [child.reconfigure(config) for child in self.children]

    def _config(self, cfg: Config) -> dict[str, Any]:
        """What a relay is sent: the leader's port (bound, so a configured port 0 is known)."""
        listen = cfg.listen.model_copy(update={"port": self._port})
        return cfg.model_copy(update={"listen": listen}).for_children()

    async def start(self, port: int) -> None:
        """Start the relays on the leader's port."""
        cfg = self._cfg
        self._port = port
        config = self._config(cfg)
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
