"""Assembles the proxy from config and runs it: proxy port, admin port, lifecycle, reload.
The process entry points (``serve`` and the children's mains) are
:mod:`shadoweval.processes`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from shadoweval import sinks
from shadoweval.admin import admin_token as resolve_admin_token
from shadoweval.admin import bearer_auth
from shadoweval.campaign import candidates_view
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Config
from shadoweval.metrics import REFUSED_REASONS, Metrics
from shadoweval.pricing import PriceTable
from shadoweval.proxy.app import ProxyHandler
from shadoweval.proxy.children import ForkedProcess, Parent, merge_families
from shadoweval.proxy.forward import Forwarder
from shadoweval.proxy.http import HttpServer, max_connections
from shadoweval.proxy.loops import hop_header, hop_id, self_loops
from shadoweval.proxy.relays import LeaderLink, Relays
from shadoweval.proxy.shadow import ShadowDispatcher
from shadoweval.proxy.shadowside import ShadowSide
from shadoweval.proxy.upstream import UpstreamPool
from shadoweval.proxy.worker import Handoff, ShadowWorker
from shadoweval.telemetry import Heartbeat, Recorder
from shadoweval.tls import client_context

if TYPE_CHECKING:  # OpenTelemetry is the optional extra "tracing"
    from opentelemetry.trace import TracerProvider

    from shadoweval.probes.scheduler import ProbeScheduler
    from shadoweval.tracing import Tracer

log = logging.getLogger(__name__)


class ProxyServer:
    """The running proxy. ``start`` binds both ports; ``stop`` drains in order."""

    def __init__(
        self,
        cfg: Config,
        metrics: Metrics | None = None,
        sink: sinks.Sink | None = None,
        tracer_provider: TracerProvider | None = None,
        forked_worker: ForkedProcess | None = None,
        forked_relays: list[ForkedProcess] | None = None,
        relay: Parent | None = None,
    ) -> None:
        """``tracer_provider`` replaces the OTLP one when ``tracing.enabled`` (tests).
        ``forked_*``: children ``serve`` forked before the event loop. ``relay``: this is
        an extra relay process (``listen.processes``) on its channel to the leader: no
        admin port, and its shadows go to the leader."""
        self.cfg = cfg
        self._tracer_provider = tracer_provider
        self.tracer: Tracer | None = None
        known = tuple(c.model for c in cfg.candidates if c.model)
        self.metrics = metrics or Metrics(
            model_label_limit=cfg.metrics.model_label_limit, known_models=known
        )
        self._sink = sink
        # The shadow side, when it runs in this process (no shadow worker).
        self.shadows: ShadowSide | None = None
        self._handler: ProxyHandler | None = None
        self._recorder: Recorder | None = None
        self.ready = False
        self._listener: asyncio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._pools: dict[str, UpstreamPool] = {}
        self._http: HttpServer | None = None
        self._heartbeat: Heartbeat | None = None
        self._handoff: Handoff | None = None
        self.worker: ShadowWorker | None = None
        self._forked_worker = forked_worker
        self.relays: Relays | None = None
        self._forked_relays = forked_relays
        self._relay = relay
        self.proxy_url = ""
        self.admin_url = ""

    async def start(self) -> None:
        cfg = self.cfg
        m = self.metrics
        prices = PriceTable(cfg.pricing)
        # Secrets and certificates are loaded first: a missing one is a ConfigError before
        # anything starts (and never an admin port left open).
        admin_token = resolve_admin_token(cfg.admin)
        loops = self_loops(cfg)
        if loops:
            raise ConfigError("; ".join(loops))
        primary_tls = client_context(cfg.primary.tls, cfg.primary.url, "primary")
        for cand in cfg.candidates:
            client_context(cand.tls, cand.url, f"candidates[{cand.name}]")
        if cfg.tracing.enabled:
            # Imported only now: a ConfigError if OpenTelemetry is not installed, before any
            # port is bound. With tracing off OpenTelemetry is never loaded.
            from shadoweval.tracing import Tracer

            self.tracer = Tracer.build(cfg, prices, self._tracer_provider)
        m.init_upstream("primary", cfg.primary.name)
        m.init_candidates(cfg.candidates)
        recorder = self._recorder = Recorder(m, cfg.primary.name, prices)
        primary_pool = UpstreamPool(
            cfg.primary.url,
            limit=cfg.primary.max_connections,
            connect_timeout_s=cfg.primary.connect_timeout_s,
            ssl_context=primary_tls,
            on_stale=m.stale_hook("primary", cfg.primary.name),
        )
        self._pools[cfg.primary.name] = primary_pool
        handoff: Handoff | None = None
        if self._relay is not None:
            handoff = LeaderLink(cfg, m, self._relay)
        elif cfg.shadow_worker.enabled:
            handoff = self.worker = ShadowWorker(cfg, m, self._forked_worker)
            await self.worker.start()  # candidates, sink and probes live in the worker
        else:  # candidates, sink and probes in this process
            self.shadows = await ShadowSide.build(
                cfg,
                m,
                prices,
                dispatch=True,
                record=True,
                sink=self._sink,
                on_attempt=recorder.attempt,
                observe=recorder.outcome,
            )
        self._handoff = handoff
        forwarder = Forwarder(
            cfg.primary,
            cfg.limits,
            primary_pool,
            on_attempt=recorder.attempt_of,
            hop=hop_header(cfg.listen),
        )
        handler = self._handler = ProxyHandler(
            forwarder,
            self.dispatcher,
            worker=handoff,
            observe=recorder.primary,
            tracer=self.tracer,
            shadows_with_request=cfg.sampling.send_shadows == "with_request",
        )
        refused = {reason: m.refused.labels(reason) for reason in REFUSED_REASONS}
        self._http = HttpServer(
            handler,
            cfg.limits,
            lambda r: refused[r].inc(),
            max_connections=max_connections(cfg),
            hop_id=hop_id(cfg.listen),
        )
        loop = asyncio.get_running_loop()
        # A deep accept queue: bursts of new connections queue rather than get refused.
        # Several processes: each its own socket on the port; the kernel spreads connections.
        self._listener = await loop.create_server(
            self._http,
            cfg.listen.host,
            cfg.listen.port,
            backlog=4096,
            reuse_port=cfg.listen.processes > 1 or None,
        )
        host, port = self._listener.sockets[0].getsockname()[:2]
        self.proxy_url = f"http://{host}:{port}"
        m.loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))  # read when scraped
        # Fixed hourly costs are counted once, by the leader.
        roles: dict[str, str] = {}
        if self._relay is None:
            if self.worker is not None and cfg.listen.processes > 1:
                self.relays = Relays(cfg, self.worker, m, self._forked_relays)
                await self.relays.start(port)
            self._admin = web.AppRunner(self._admin_app(admin_token), access_log=None)
            await self._admin.setup()
            await web.TCPSite(self._admin, cfg.admin.host, cfg.admin.port).start()
            host, port = self._admin.addresses[0][:2]
            self.admin_url = f"http://{host}:{port}"
            roles = {cfg.primary.name: "primary", **{c.name: c.role for c in cfg.candidates}}
        self._heartbeat = Heartbeat(
            m, cfg.metrics.loop_lag_interval_s, prices, roles, self._connection_counts
        )
        self._heartbeat.start()
        if self.shadows is not None:
            self.shadows.start_probes()
        self.ready = True
        if self._relay is None:  # the leader's readiness is the pod's
            m.ready.set(1)
        log.info("proxy on %s -> %s; admin on %s", self.proxy_url, cfg.primary.url, self.admin_url)

    @property
    def dispatcher(self) -> ShadowDispatcher | None:
        return self.shadows.dispatcher if self.shadows is not None else None

    @property
    def probes(self) -> ProbeScheduler | None:
        return self.shadows.probes if self.shadows is not None else None

    @property
    def sink(self) -> sinks.Sink | None:
        """The sink records are written to now (a reload may have replaced it)."""
        if self.shadows is not None and self.shadows.sink is not None:
            return self.shadows.sink.current
        return self._sink

    async def reload(self, cfg: Config) -> None:
        """Apply a reloaded configuration that :mod:`shadoweval.proxy.reload` has checked
        (valid, no restart-only key changed): the shadow side here, in the shadow worker
        and in every relay. Requests in flight are not touched; shadows already offered
        finish with the settings they were offered under."""
        prices = PriceTable(cfg.pricing)
        m = self.metrics
        m.init_candidates(cfg.candidates)  # a new candidate's model a label value too
        waits: list[Awaitable[str | None]] = []
        if self.worker is not None:
            waits.append(self.worker.reload(cfg))
        elif isinstance(self._handoff, LeaderLink):
            self._handoff.reconfigure(cfg)
        if self.relays is not None:
            waits += self.relays.reload(cfg)
        pending = self.shadows.apply(cfg, prices) if self.shadows is not None else None
        if self._handler is not None:
            self._handler.reconfigure(cfg.sampling.send_shadows == "with_request")
        if self._recorder is not None:
            self._recorder.reprice(prices)
        if self._heartbeat is not None and self._relay is None:
            roles = {cfg.primary.name: "primary", **{c.name: c.role for c in cfg.candidates}}
            self._heartbeat.reconfigure(prices, roles)
        self.cfg = cfg
        if pending is not None:
            await pending
        errors = [e for e in await asyncio.gather(*waits) if e is not None]
        if errors:
            raise RuntimeError("; ".join(errors))

    def _connection_counts(self) -> dict[tuple[str, str], int]:
        inbound = len(self._http.connections) if self._http else 0
        counts = {("inbound", "callers"): inbound}
        for name, pool in self._pools.items():
            counts[("outbound", name)] = pool.open_connections
        for client in self.shadows.clients if self.shadows is not None else ():
            counts[("outbound", client.name)] = client.pool.open_connections
        return counts

    def _admin_app(self, token: str | None = None) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(_: web.Request) -> web.Response:
            if self.ready:
                return web.json_response({"status": "ready"})
            return web.json_response({"status": "not ready"}, status=503)

        app = web.Application(middlewares=[bearer_auth(token)] if token else [])
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        if self.worker is None and self.relays is None:
            app.router.add_get("/metrics", make_aiohttp_handler(self.metrics.registry))
        else:
            app.router.add_get("/metrics", self._merged_metrics)
        app.router.add_get("/candidates", self._candidates)
        return app

    async def _families(self) -> list[Metric]:
        """This process's metric families, merged with the relays' and the shadow worker's."""
        if self.worker is None:
            return list(self.metrics.registry.collect())
        relays = self.relays.families() if self.relays is not None else asyncio.sleep(0, [])
        theirs, worker = await asyncio.gather(relays, self.worker.families())
        return merge_families(self.metrics.registry.collect(), *theirs, worker)

    async def _candidates(self, _: web.Request) -> web.Response:
        """Each candidate's campaign state (docs/campaigns.md), read from the same families
        as /metrics, so it works with the shadow worker alike."""
        return web.json_response(candidates_view(self.cfg.candidates, await self._families()))

    async def _merged_metrics(self, request: web.Request) -> web.Response:
        """This process's metrics, the relays' and the shadow worker's, as one exposition."""
        families = await self._families()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(_Families(families))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def stop(self) -> None:
        """Stop accepting, finish in-flight primaries, give shadows a bounded time, flush:
        all within ``shutdown.grace_s + shadow_grace_s`` (the callers' drain, then the
        shadows' grace; the sink flushes in what is left, at least 1 s, and counts what it
        could not write)."""
        started = time.monotonic()
        grace, shadow_grace = self.cfg.shutdown.grace_s, self.cfg.shutdown.shadow_grace_s
        deadline = started + grace + shadow_grace
        self.ready = False
        self.metrics.ready.set(0)
        if self._listener is not None:
            self._listener.close()  # no new connections
        if self.relays is not None:
            self.relays.tell_close(grace)  # they drain alongside
        if self._http is not None:
            await self._http.shutdown(grace)  # in-flight ones finish
        if self.relays is not None:  # their last shadows pass through here to the worker
            await self.relays.wait_closed(grace)
        # Probes and shadows share the grace, before the sink closes (their records flushed).
        if self.shadows is not None:
            await self.shadows.close_shadows(shadow_grace)
        if self._handoff is not None:  # the worker flushes its own sink, logs its own counts
            flush_s = max(deadline - time.monotonic() - shadow_grace, 1.0)
            await self._handoff.close(shadow_grace, flush_s)
        if self.shadows is not None:
            await self.shadows.close_sink(max(deadline - time.monotonic(), 1.0))
        if self.tracer is not None:
            await self.tracer.close()  # after the shadows, so their spans are exported too
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        for pool in self._pools.values():
            await pool.close()
        for client in self.shadows.clients if self.shadows is not None else ():
            await client.pool.close()
        if self._admin is not None:
            await self._admin.cleanup()
        # Every shadow is a pair, a drop or an internal error; every pair is written,
        # dropped, failed or spilled by the sink: the final counts show nothing went missing.
        # They are the whole process group's: the worker's and the relays' added to ours.
        totals = " ".join(f"{k}={v:g}" for k, v in self._final_totals().items())
        log.info("stopped in %.2fs; final counts: %s", time.monotonic() - started, totals)

    def _final_totals(self) -> dict[str, float]:
        children = list(self.relays.children) if self.relays is not None else []
        if self.worker is not None:
            children.append(self.worker.process)
        if not children:
            return self.metrics.totals()
        for child in children:
            if child.final is None:  # killed, or never started: its counts are lost
                log.warning("the %s sent no final counts; they are missing below", child.name)
        finals = [child.final for child in children if child.final is not None]
        return self.metrics.totals(merge_families(self.metrics.registry.collect(), *finals))


class _Families:
    """What the exposition encoders read: anything with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families
