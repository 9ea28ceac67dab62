"""``shadoweval score``: read pairs, run the configured scorers, publish scores, commit.

One loop: poll a batch -> score every pair (cheap scorers inline, expensive ones awaited
together under their own bounds) -> publish the batch's score records (retried until they
are durable) -> commit the batch's position. A crash anywhere before the commit re-scores
the batch; score ids make that harmless. Prometheus metrics and health are served on the
scorer's own admin port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import FilePairSource, ScorerConfig, ScorerSpec
from shadoweval.console import Column, Progress, table_lines
from shadoweval.metrics import LabelCap, ScoreMetrics
from shadoweval.records import PAIR_SCHEMA
from shadoweval.score import registry
from shadoweval.score.base import Pair, Score, ScorerContext
from shadoweval.score.consumer import FileSource, KafkaSource, PairSource
from shadoweval.score.record import build_score
from shadoweval.score.sinks import ScoreSink
from shadoweval.score.sinks import build as build_sink
from shadoweval.types import Json

if TYPE_CHECKING:
    from shadoweval.score.alarm import Alarm

log = logging.getLogger(__name__)

_SOURCES = ("traffic", "probe", "replay")
_LOG_EVERY_S = 10.0


@dataclass
class Tally:
    """Running totals for the end-of-run summary (``--once``)."""

    pairs: int = 0
    skipped: int = 0
    failed: int = 0
    records: int = 0
    # (upstream, role, scorer, side) -> [count of values, sum of values, unscored, flags]
    cells: dict[tuple[str, str, str, str], list[float]] = field(default_factory=dict)

    def add(
        self, upstream: str, role: str, scorer: str, side: str, value: float | None, flag: bool
    ) -> None:
        cell = self.cells.setdefault((upstream, role, scorer, side), [0, 0.0, 0, 0])
        if value is None:
            cell[2] += 1
        else:
            cell[0] += 1
            cell[1] += value
        if flag:
            cell[3] += 1


def _alarm(cfg: ScorerConfig, metrics: ScoreMetrics) -> Alarm | None:
    if not cfg.regression.enabled:
        return None
    try:
        from shadoweval.score.alarm import Alarm
    except ImportError as exc:  # shadoweval.stats needs numpy (the extra "score")
        raise ConfigError(
            "regression: the alarm needs numpy: pip install 'shadoweval[score]' "
            "(or set regression.enabled: false)"
        ) from exc
    return Alarm(cfg.regression, metrics)


class ScoreRunner:
    def __init__(
        self,
        cfg: ScorerConfig,
        *,
        once: bool = False,
        metrics: ScoreMetrics | None = None,
        source: PairSource | None = None,
        sink: ScoreSink | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.cfg = cfg
        self.once = once
        self._progress = progress  # (bytes read, file size) after each batch of a file
        self.metrics = metrics or ScoreMetrics()
        self.source = source
        self.sink = sink
        self.tally = Tally()
        self.ready = False
        self.admin_url = ""
        self._stopping = asyncio.Event()
        self._ctx = ScorerContext(cfg, self.metrics)
        self._sets: dict[str, list[registry.BuiltScorer]] = {}
        self._safety: list[registry.BuiltScorer] = []
        self._resolved: dict[tuple[str | None, str], list[registry.BuiltScorer]] = {}
        self._upstream = LabelCap(cfg.upstream_label_limit)
        self._alarm = _alarm(cfg, self.metrics)
        self._admin: web.AppRunner | None = None
        self._last_log = 0.0
        self._errors_unlogged = 0
        # Labelled metric children, looked up once: .labels() costs more than observe().
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- set-up ---------------------------------------------------------------------------

    def _build_sets(self) -> None:
        """Every scorer of every set, built once (the same spec in two sets is one instance)."""
        cfg = self.cfg
        built: dict[bytes, registry.BuiltScorer] = {}
        # (name, registered name, info) of every scorer, in config order
        uses: list[tuple[str, str, registry.ScorerInfo]] = []

        def one(spec: ScorerSpec, where: str) -> registry.BuiltScorer:
            key = orjson.dumps(spec.model_dump(), option=orjson.OPT_SORT_KEYS)
            if key not in built:
                built[key] = registry.build(spec, self._ctx, where)
                uses.append((built[key].name, spec.use, built[key].info))
            return built[key]

        self._sets["default"] = [
            one(s, f"scorers.default[{i}]") for i, s in enumerate(cfg.scorers.default)
        ]
        for route, specs in cfg.scorers.routes.items():
            self._sets[f"route:{route}"] = [
                one(s, f"scorers.routes.{route}[{i}]") for i, s in enumerate(specs)
            ]
        for task, specs in cfg.scorers.tasks.items():
            self._sets[f"task:{task}"] = [
                one(s, f"scorers.tasks.{task}[{i}]") for i, s in enumerate(specs)
            ]
        if cfg.safety.enabled:
            self._safety = [
                one(s, f"safety.detectors[{i}]") for i, s in enumerate(cfg.safety.detectors)
            ]
        families = {b.family for b in built.values() if b.family}
        missing = cfg.missing_credentials({f for f in families if f})
        if missing:
            raise ConfigError("cannot start:\n  " + "\n  ".join(missing))
        if self._alarm is not None:
            from shadoweval.score.alarm import Configured  # loaded with the alarm (numpy)

            self._alarm.watch(Configured(*u) for u in uses)
            reg = cfg.regression
            log.info(
                "regression alarm: %s per candidate, max_drop %g (relative), alpha %g over "
                "%d monitors (regression.candidates %d)",
                ", ".join(self._alarm.watched) or "no quality scorer",
                reg.max_drop,
                reg.alpha,
                self._alarm.family,
                reg.candidates,
            )

    def scorers_for(self, pair: Pair) -> list[registry.BuiltScorer]:
        """The pair's task set, else its route's, else the default; plus the safety
        detectors (a detector the set already lists runs once; none for embeddings)."""
        key = (pair.task, pair.route)
        found = self._resolved.get(key)
        if found is None:
            chosen = self._sets.get(f"task:{pair.task}") if pair.task is not None else None
            if chosen is None:
                chosen = self._sets.get(f"route:{pair.route}", self._sets["default"])
            names = {b.name for b in chosen}
            # Embeddings have no text to check; every other route gets the detectors.
            safety = self._safety if pair.route != "embeddings" else []
            found = [*chosen, *(d for d in safety if d.name not in names)]
            if len(self._resolved) < 10_000:  # tasks come from callers: bound the cache
                self._resolved[key] = found
        return found

    async def start(self) -> None:
        self._build_sets()
        if self.sink is None:
            self.sink = build_sink(self.cfg.sink)
        if self.source is None:
            src = self.cfg.source
            if isinstance(src, FilePairSource):
                path = self.cfg.offsets_path
                assert path is not None
                self.source = FileSource(src, path, once=self.once)
            else:
                self.source = KafkaSource(src, self.metrics)
        if not self.once:
            await self._start_admin()
        await self.sink.start()
        await self.source.start()
        for stage in ("read", "publish", "commit"):
            self.metrics.io_errors.labels(stage)
        self.ready = True
        names = sorted(
            {b.name for s in self._sets.values() for b in s} | {b.name for b in self._safety}
        )
        log.info(
            "scorer ready: %s -> %s; scorers: %s",
            self.source.name,
            self.sink.name,
            ", ".join(names),
        )

    async def _start_admin(self) -> None:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(_: web.Request) -> web.Response:
            if self.ready and not self._stopping.is_set():
                return web.json_response({"status": "ready"})
            return web.json_response({"status": "not ready"}, status=503)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", make_aiohttp_handler(self.metrics.registry))
        self._admin = web.AppRunner(app, access_log=None)
        await self._admin.setup()
        await web.TCPSite(self._admin, self.cfg.admin.host, self.cfg.admin.port).start()
        host, port = self._admin.addresses[0][:2]
        self.admin_url = f"http://{host}:{port}"
        log.info("scorer admin on %s (/metrics, /healthz, /readyz)", self.admin_url)

    # -- the loop -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Score until stopped (or, with ``once``, until the source is exhausted)."""
        assert self.source is not None
        while not self._stopping.is_set():
            try:
                batch = await self.source.poll()
            except Exception as exc:
                if self.once:
                    raise
                # A broker hiccup or an unreadable file: keep the process, count, retry.
                self.metrics.io_errors.labels("read").inc()
                log.warning("reading pairs failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
            if batch is None:
                self._observe_lag()
                if self.once and self.source.exhausted:
                    break
                continue
            records = await self.score_messages(batch.messages)
            if not await self._publish(records):
                break  # stopping before the scores were durable: do not commit
            await self.source.commit(batch)
            self._observe_lag()
            if self._progress is not None and isinstance(self.source, FileSource):
                self._progress(*self.source.position())

    async def score_messages(self, messages: list[bytes]) -> list[Json]:
        """Score a batch of raw pair records; returns the score records."""
        scored_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        out: list[Json] = []
        pending: list[tuple[Pair, registry.BuiltScorer, Awaitable[list[Score]], float]] = []
        m = self.metrics
        pairs: list[Pair] = []
        for raw in messages:
            pair = self._parse(raw)
            if pair is None:
                continue
            pairs.append(pair)
            for built in self.scorers_for(pair):
                if not built.sampled(pair.pair_id):
                    continue
                started = time.perf_counter()
                try:
                    result = built.fn(pair)
                except Exception as exc:
                    self._scorer_failed(built, pair, exc)
                    continue
                if not isinstance(result, list):
                    pending.append((pair, built, result, started))
                    continue
                self._child(m.scorer_duration, built.name).observe(time.perf_counter() - started)
                self._emit(pair, built, result, scored_at, out)
        if pending:
            results = await asyncio.gather(
                *(self._timed(p[1], p[2], p[3]) for p in pending), return_exceptions=True
            )
            for (pair, built, _, _), outcome in zip(pending, results, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    self._scorer_failed(built, pair, outcome)
                else:
                    self._emit(pair, built, outcome, scored_at, out)
        self.tally.records += len(out)
        # A pair no scorer applied to (e.g. embeddings) counts as skipped, not scored.
        with_scores = {r["pair_id"] for r in out}
        for pair in pairs:
            verdict = "scored" if pair.pair_id in with_scores else "skipped"
            m.pairs.labels(self._upstream(str(pair.candidate.get("upstream") or "")), verdict).inc()
            if verdict == "scored":
                self.tally.pairs += 1
            else:
                self.tally.skipped += 1
        return out

    async def _timed(
        self, built: registry.BuiltScorer, result: Awaitable[list[Score]], started: float
    ) -> list[Score]:
        try:
            return await result
        finally:
            elapsed = time.perf_counter() - started
            self._child(self.metrics.scorer_duration, built.name).observe(elapsed)

    def _parse(self, raw: bytes) -> Pair | None:
        m = self.metrics
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            m.pairs.labels("unknown", "failed").inc()
            self.tally.failed += 1
            self._log_error("not JSON (%s): %r", exc, raw[:120])
            return None
        if not isinstance(rec, dict) or rec.get("schema") != PAIR_SCHEMA:
            m.pairs.labels("unknown", "skipped").inc()
            self.tally.skipped += 1
            return None
        try:
            pair = Pair(rec)
            self._upstream(str(pair.candidate.get("upstream") or ""))
        except (KeyError, TypeError, AttributeError) as exc:
            m.pairs.labels("unknown", "failed").inc()
            self.tally.failed += 1
            self._log_error("malformed pair record (missing %s)", exc)
            return None
        return pair

    def _emit(
        self,
        pair: Pair,
        built: registry.BuiltScorer,
        scores: list[Score],
        scored_at: str,
        out: list[Json],
    ) -> None:
        m = self.metrics
        upstream = self._upstream(str(pair.candidate.get("upstream") or ""))
        role = "control" if pair.candidate.get("role") == "control" else "candidate"
        source = pair.record.get("source")
        source = source if source in _SOURCES else "traffic"
        for score in scores:
            out.append(build_score(pair, built.name, score, scored_at, built.info))
            flag = built.family == "safety" and score.value == 1.0
            if score.value is not None:
                self._child(m.score, upstream, role, built.name, score.side).observe(score.value)
            if flag:
                m.safety_flags.labels(upstream, role, score.side, built.name, source).inc()
            if score.cost_usd:
                m.judge_cost.labels(built.name).inc(score.cost_usd)
            self.tally.add(upstream, role, built.name, score.side, score.value, flag)
            live = pair.record.get("source", "traffic") == "traffic"
            if self._alarm is not None and built.info.kind == "quality" and live:
                self._alarm.observe(
                    pair_id=pair.pair_id,
                    request_id=str(pair.record.get("request_id", "")),
                    upstream=upstream,
                    role=role,
                    scorer=built.name,
                    side=score.side,
                    value=score.value,
                )

    def _scorer_failed(self, built: registry.BuiltScorer, pair: Pair, exc: Exception) -> None:
        # No record: a later successful re-score would not replace an error under another id.
        self.metrics.scorer_errors.labels(built.name).inc()
        self._log_error(
            "scorer %s failed on pair %s: %s: %s", built.name, pair.pair_id, type(exc).__name__, exc
        )

    def _log_error(self, msg: str, *args: object) -> None:
        """At most one error line per 10 s (with a count of the ones not shown)."""
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            suffix = (
                f" (+{self._errors_unlogged} similar errors not logged)"
                if self._errors_unlogged
                else ""
            )
            log.error(msg + suffix, *args)
            self._last_log = now
            self._errors_unlogged = 0
        else:
            self._errors_unlogged += 1

    async def _publish(self, records: list[Json]) -> bool:
        """Retries until the sink has the records; False if asked to stop first."""
        assert self.sink is not None
        delay = 0.5
        while True:
            try:
                await self.sink.write(records)
                return True
            except Exception as exc:
                self.metrics.io_errors.labels("publish").inc()
                log.warning(
                    "publishing %d scores failed (%s); retrying in %.1fs", len(records), exc, delay
                )
            if self._stopping.is_set():
                return False
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, 10.0)

    def _observe_lag(self) -> None:
        assert self.source is not None
        for partition, lag in self.source.lag().items():
            self.metrics.consumer_lag.labels(partition).set(lag)

    async def stop(self) -> None:
        self.ready = False
        self._stopping.set()
        if self.source is not None:
            await self.source.close()
        if self.sink is not None:
            await self.sink.close()
        for close in self._ctx.closers:
            try:
                await close()
            except Exception as exc:
                log.warning("closing a scorer client failed: %s", exc)
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None


def summary_lines(tally: Tally) -> list[str]:
    """A small table of the run for the terminal (``shadoweval report`` is the real view)."""
    lines = [
        f"scored {tally.pairs} pairs ({tally.skipped} skipped, {tally.failed} unreadable)"
        f" -> {tally.records} score records"
    ]
    if not tally.cells:
        return lines
    columns = [
        Column("upstream"),
        Column("scorer"),
        Column("side"),
        *(Column(name, right=True) for name in ("n", "mean", "flags", "unscored")),
    ]
    rows = [
        (upstream, scorer, side, int(n), f"{total / n:.3f}" if n else "-", int(flags), int(none))
        for (upstream, _role, scorer, side), (n, total, none, flags) in sorted(tally.cells.items())
    ]
    return [*lines, "", *table_lines(columns, rows)]


async def run_scorer(
    cfg: ScorerConfig,
    *,
    once: bool,
    install_signals: bool = True,
    progress: Progress | None = None,
) -> ScoreRunner:
    """Start, run until done or signalled, stop; returns the runner (for its tally)."""
    import signal

    runner = ScoreRunner(cfg, once=once, progress=progress)
    try:
        await runner.start()
        if install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.request_stop)
        await runner.run()
    finally:
        await runner.stop()
    return runner
