"""Kafka sink: pair records to a topic through aiokafka, without ever making the proxy wait.

``put`` only serialises and appends to a bounded deque. One background task owns the
producer: it connects (retrying while Kafka is down), hands records to aiokafka in chunks and
awaits their delivery futures. Records stay in the deque until Kafka acknowledged them, so an
outage fills the buffer, and only then are new records dropped (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.kafka_client import client_options
from shadoweval.metrics import Metrics
from shadoweval.types import Json

try:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.codec import has_lz4, has_snappy, has_zstd
    from aiokafka.errors import (
        CorruptRecordException,
        InvalidTimestampError,
        KafkaConnectionError,
        KafkaError,
        KafkaTimeoutError,
        MessageSizeTooLargeError,
        ProducerClosed,
        RecordListTooLargeError,
        RecordTooLargeError,
        RequestTimedOutError,
        TopicAlreadyExistsError,
    )
    from aiokafka.errors import for_code as kafka_error_for_code
except ImportError as exc:  # aiokafka is the optional extra "kafka"
    raise ConfigError(
        "sink kind 'kafka' needs the aiokafka package: pip install 'shadoweval[kafka]'"
    ) from exc

log = logging.getLogger(__name__)

# Errors that are about the record itself: retrying cannot help, so it is counted as failed.
_RECORD_ERRORS = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
# A record whose delivery ended in one of these (or never ended) may have been written: if
# so, sending it again writes it twice (see _send_chunk).
_MAYBE_WRITTEN = (KafkaTimeoutError, RequestTimedOutError)
# One pass of the drain loop hands at most this much to the producer before awaiting acks.
_CHUNK_RECORDS = 2000
_CHUNK_BYTES = 8 * 1024 * 1024
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 2.0
_POLL_S = 0.25
_LEADERLESS_STALL_S = 1.0
_LOG_EVERY_S = 10.0
_JSON = b"application/json"


@dataclass(slots=True)
class _Item:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def resolve_compression(requested: str) -> str | None:
    """The codec to hand aiokafka; zstd/lz4/snappy fall back to gzip without cramjam."""
    if requested == "none":
        return None
    available = {"gzip": lambda: True, "zstd": has_zstd, "lz4": has_lz4, "snappy": has_snappy}
    if available[requested]():
        return requested
    log.warning(
        "kafka sink: %s compression needs the cramjam package "
        "(pip install 'shadoweval[kafka]'); using gzip instead",
        requested,
    )
    return "gzip"


class KafkaSink:
    def __init__(self, cfg: KafkaSinkConfig, metrics: Metrics) -> None:
        self.name = "kafka"
        self._cfg = cfg
        self._buffer: deque[_Item] = deque()
        # The chunk handed to the producer and not yet settled; counts against the buffer.
        self._inflight: list[tuple[_Item, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._options: dict[str, Any] = {}
        self._closing = False
        self._headers: dict[str, list[tuple[str, bytes]]] = {}
        self._use_sampling_key = cfg.key == "sampling_key"
        self._drops_unlogged = 0
        self._drops_logged_at = time.monotonic()
        self._warned_at = -_LOG_EVERY_S
        self._failing = False
        # Set when the producer's metadata refresh reached no broker at all (see _watch).
        self._unreachable = False
        self._written = metrics.sink_records.labels(self.name, "written")
        self._dropped = metrics.sink_records.labels(self.name, "dropped")
        self._failed = metrics.sink_records.labels(self.name, "failed")
        self._spilled = metrics.sink_records.labels(self.name, "spilled")
        self._resent = metrics.sink_resent.labels(self.name)
        self._buffered = metrics.sink_buffered.labels(self.name)
        self._write_time = metrics.sink_write_duration.labels(self.name)

    @property
    def pending(self) -> int:
        """Records accepted and not yet acknowledged by Kafka (buffered or in flight)."""
        return len(self._buffer) + len(self._inflight)

    # -- the proxy's side: never blocks, never raises --------------------------------------

    def put(self, record: Json, key: bytes | None = None) -> bool:
        if self._closing or self.pending >= self._cfg.buffer_records:
            self._dropped.inc()
            self._drops_unlogged += 1
            self._log_drops()
            return False
        try:
            value = orjson.dumps(record)
        except TypeError as exc:  # orjson.JSONEncodeError: a bug upstream, not a Kafka issue
            self._failed.inc()
            log.error("kafka sink: record not serialisable: %s", exc)
            return False
        if self._use_sampling_key and record.get("sampling_key"):
            key = str(record["sampling_key"]).encode()
        elif key is None and record.get("request_id"):
            key = str(record["request_id"]).encode()
        schema = str(record.get("schema", ""))
        headers = self._headers.get(schema)
        if headers is None:
            headers = self._headers[schema] = [("schema", schema.encode()), ("content-type", _JSON)]
        self._buffer.append(_Item(key, value, headers))
        self._buffered.set(self.pending)
        self._wake.set()
        return True

    def _log_drops(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._drops_unlogged and (force or now - self._drops_logged_at >= _LOG_EVERY_S):
            log.warning(
                "kafka sink: dropped %d records in the last %.0fs (buffer of %d records full; "
                "Kafka unreachable or slower than the traffic)",
                self._drops_unlogged,
                now - self._drops_logged_at,
                self._cfg.buffer_records,
            )
            self._drops_unlogged = 0
            self._drops_logged_at = now

    def _warn(self, msg: str, *args: object) -> None:
        """Kafka trouble is logged at most every 10 s: an outage must not flood the logs."""
        self._failing = True
        now = time.monotonic()
        if now - self._warned_at >= _LOG_EVERY_S:
            self._warned_at = now
            log.warning(msg, *args)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Validates credentials and starts the drain task; never waits for Kafka."""
        self._options = client_options(self._cfg, "sink")
        compression = resolve_compression(self._cfg.compression)
        self._options.update(
            acks=self._cfg.acks,
            enable_idempotence=self._cfg.enable_idempotence,
            compression_type=compression,
            linger_ms=self._cfg.linger_ms,
            max_batch_size=self._cfg.max_batch_size,
            max_request_size=self._cfg.max_request_size,
        )
        log.info(
            "kafka sink: topic %s on %s (acks=%s, idempotence=%s, compression=%s)",
            self._cfg.topic,
            ",".join(self._cfg.bootstrap_servers),
            self._cfg.acks,
            self._cfg.enable_idempotence,
            compression or "none",
        )
        self._task = asyncio.create_task(self._run(), name="shadoweval-kafka-sink")

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        while True:
            if self._producer is None:
                if self._closing and not self._buffer:
                    return
                if not await self._connect():
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
            if not self._buffer:
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                self._wake.clear()
                self._log_drops()
                continue
            if await self._send_chunk():
                backoff = _BACKOFF_MIN_S
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(**self._options)
        self._producer = producer  # set first, so close() can stop a half-started producer
        self._unreachable = False
        self._watch(producer)
        try:
            # With idempotence, start() also waits for a producer id: bound it.
            async with asyncio.timeout(self._cfg.request_timeout_ms / 1000):
                await producer.start()
        except Exception as exc:  # any failure here means "retry later", never crash the proxy
            self._producer = None
            await self._stop_producer(producer, graceful=False)
            self._warn(
                "kafka sink: cannot connect to %s (%s); retrying, %d records buffered",
                ",".join(self._cfg.bootstrap_servers),
                _describe(exc),
                len(self._buffer),
            )
            return False
        log.info("kafka sink: connected to %s", ",".join(self._cfg.bootstrap_servers))
        return True

    def _watch(self, producer: Any) -> None:
        """Notice at once when a connected producer can reach no broker.

        When the broker goes away, aiokafka's sender asks for a metadata refresh on every
        pass while a partition's leader is unknown, without any pause: thousands of failed
        connects (and two ERROR log lines each) a second, on the proxy's event loop, until
        the sink gives up on the producer. A failed refresh (no broker answered) now marks
        the producer unreachable, so the drain loop closes it within one poll and reconnects
        with backoff, and the refresh pauses for a poll interval so it cannot spin meanwhile.
        """
        client: Any = getattr(producer, "client", None)
        update = getattr(client, "_metadata_update", None)
        if update is None:  # another aiokafka: fall back to the stall limits alone
            return

        async def metadata_update(*args: Any, **kwargs: Any) -> Any:
            ok = await update(*args, **kwargs)
            if self._producer is producer:
                self._unreachable = not ok
            if not ok:
                await asyncio.sleep(_POLL_S)
            return ok

        client._metadata_update = metadata_update

    async def _send_chunk(self) -> bool:
        """Hands one chunk of the buffer to the producer and waits for Kafka's acks.

        On any failure the producer is closed (the drain loop reconnects with backoff) and the
        records Kafka did not acknowledge go back to the head of the buffer, in order.

        Those whose fate is unknown (no answer before the stall limit, or a timeout) may
        already be in the topic. They are sent again through a new producer, whose new
        producer id idempotence cannot match with the old one's: a possible duplicate, counted
        as resent (same ``pair_id``, so readers can drop it; docs/reliability.md). aiokafka has
        no way to carry a producer id and its sequence numbers over to a new producer, and
        its own retries, which do keep them, end when a batch expires after
        ``request_timeout_ms``.
        """
        producer = self._producer
        topic = self._cfg.topic
        chunk: list[tuple[_Item, asyncio.Future[Any]]] = []
        self._inflight = chunk
        size = 0
        error: BaseException | None = None
        started = time.perf_counter()
        while self._buffer and len(chunk) < _CHUNK_RECORDS and size < _CHUNK_BYTES:
            item = self._buffer[0]
            try:
                # Returns once the record is in aiokafka's batch; may wait for batch space.
                fut = await producer.send(topic, item.value, key=item.key, headers=item.headers)
            except _RECORD_ERRORS as exc:
                self._buffer.popleft()
                self._failed.inc()
                log.error("kafka sink: record rejected (%d bytes): %s", len(item.value), exc)
                continue
            except Exception as exc:
                error = exc  # the item stays at the head of the buffer
                break
            self._buffer.popleft()
            chunk.append((item, fut))
            size += len(item.value)

        pending = {fut for _, fut in chunk}
        progress = time.monotonic()
        while pending:
            done, pending = await asyncio.wait(pending, timeout=_POLL_S)
            self._log_drops()
            now = time.monotonic()
            if done:
                progress = now
            elif self._unreachable:
                error = error or KafkaConnectionError("no broker reachable (metadata refresh)")
                break
            elif now - progress >= self._stall_limit(producer):
                error = error or KafkaTimeoutError(f"no acknowledgement for {now - progress:.0f}s")
                break
        if error is not None:
            # Kafka is unreachable or the producer is unusable: aiokafka would retry in its
            # own loop (a tight one while a leader is unknown); reconnecting with our backoff
            # is cheaper. Records whose future is still pending are requeued below.
            self._producer = None
            await self._stop_producer(producer, graceful=False)

        retry: list[_Item] = []
        written = unknown = 0
        for item, fut in chunk:
            settled = fut.done() and not fut.cancelled()
            err = fut.exception() if settled else ProducerClosed()
            if err is None:
                written += 1
            elif isinstance(err, _RECORD_ERRORS):
                self._failed.inc()
                log.error("kafka sink: record rejected (%d bytes): %s", len(item.value), err)
            else:
                retry.append(item)
                unknown += not settled or isinstance(err, _MAYBE_WRITTEN)
                error = error or err
        self._buffer.extendleft(reversed(retry))
        if unknown:
            self._resent.inc(unknown)
        self._inflight = []
        self._buffered.set(len(self._buffer))
        if written:
            self._written.inc(written)
            self._write_time.observe(time.perf_counter() - started)
        if error is None:
            if self._failing:
                self._failing = False
                log.info("kafka sink: producing again (%d records buffered)", len(self._buffer))
            return True
        if self._producer is not None:  # a delivery failed although the producer looked fine
            self._producer = None
            await self._stop_producer(producer, graceful=False)
        self._warn(
            "kafka sink: producing to %s failed (%s); reconnecting, %d records kept (%d of them "
            "may already be written and will be sent again: duplicates share a pair_id)",
            topic,
            _describe(error),
            len(self._buffer),
            unknown,
        )
        return False

    def _stall_limit(self, producer: Any) -> float:
        """How long to wait for acks without any progress before giving up on the producer."""
        cluster = producer.client.cluster
        known = cluster.partitions_for_topic(self._cfg.topic) or set()
        led = cluster.available_partitions_for_topic(self._cfg.topic) or set()
        if len(led) < len(known):
            # A partition without a leader (a broker shutting down): aiokafka refreshes the
            # metadata in a tight loop until the batch expires; a second is enough.
            return _LEADERLESS_STALL_S
        return self._cfg.request_timeout_ms / 1000

    async def _stop_producer(
        self, producer: Any, graceful: bool, timeout: float | None = None
    ) -> None:
        """``graceful`` lets aiokafka flush; otherwise the producer is abandoned at once."""
        if producer is None:
            return
        limit = self._cfg.request_timeout_ms / 1000 if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                if graceful:
                    await producer.stop()
                    return
                # aiokafka has no "close now" (stop() waits until every batch is delivered,
                # and failing its batches from outside trips its bookkeeping). So: stop the
                # sender, which lets in-flight requests end, and close the connections. The
                # delivery futures stay pending; we requeue or spill their records.
                sender = producer._sender.sender_task
                if sender is not None and not sender.done():
                    sender.cancel()
                    await asyncio.wait([sender])
                producer._closed = True  # what stop() sets; no "Unclosed producer" warning
                await producer.client.close()
        except Exception as exc:
            log.warning("kafka sink: producer did not close cleanly: %s", _describe(exc))

    async def close(self, timeout: float) -> None:
        """Flush within ``timeout``; what Kafka did not acknowledge is spilled or dropped."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(max(timeout, 0.1)):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                await asyncio.wait([self._task])
            if self._task.done() and not self._task.cancelled() and self._task.exception():
                log.error("kafka sink: drain task failed", exc_info=self._task.exception())
        producer, self._producer = self._producer, None
        # Past the grace period already if the drain was cut short: a short bounded stop.
        graceful = not self._inflight and not self._buffer
        await self._stop_producer(producer, graceful, timeout=2.0)

        unsent: list[_Item] = []
        for item, fut in self._inflight:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._written.inc()
            else:
                unsent.append(item)
        unsent.extend(self._buffer)
        self._inflight = []
        self._buffer.clear()
        self._buffered.set(0)
        self._log_drops(force=True)
        if not unsent:
            return
        if self._cfg.spill_path:
            try:
                await asyncio.to_thread(_append_lines, Path(self._cfg.spill_path), unsent)
            except OSError as exc:
                log.error(
                    "kafka sink: %d records lost, spill to %s failed: %s",
                    len(unsent),
                    self._cfg.spill_path,
                    exc,
                )
            else:
                self._spilled.inc(len(unsent))
                log.warning(
                    "kafka sink: %d records not acknowledged by Kafka within %.1fs; appended to %s",
                    len(unsent),
                    timeout,
                    self._cfg.spill_path,
                )
                return
        self._dropped.inc(len(unsent))
        log.error(
            "kafka sink: %d records not acknowledged by Kafka within %.1fs of shutdown, dropped",
            len(unsent),
            timeout,
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _append_lines(path: Path, items: list[_Item]) -> None:
    # Same format as the file sink (one JSON document per line), so the same tools read it.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.writelines(item.value + b"\n" for item in items)
        fh.flush()
        os.fsync(fh.fileno())


class TopicSetupError(Exception):
    """``kafka init`` could not create or inspect a topic."""


async def ensure_topics(cfg: KafkaSinkConfig) -> list[str]:
    """Create the pairs and scores topics if missing; returns one line per topic."""
    topic_configs = {} if cfg.retention_ms is None else {"retention.ms": str(cfg.retention_ms)}
    wanted = [cfg.topic, cfg.scores_topic]
    created: list[str] = []
    partitions: dict[str, int] = {}
    admin = AIOKafkaAdminClient(**client_options(cfg, "sink"))
    try:
        await admin.start()
        # A full listing: a metadata request naming the topics could auto-create them.
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(t, cfg.partitions, cfg.replication_factor, None, topic_configs)
                    for t in missing
                ]
            )
            for topic, code, *rest in response.topic_errors:
                error = kafka_error_for_code(code)
                if code == 0:
                    created.append(topic)
                elif error is not TopicAlreadyExistsError:  # already there (a race) is fine
                    detail = rest[0] if rest and rest[0] else error.__name__
                    raise TopicSetupError(f"cannot create topic {topic}: {detail}")
        present = [t for t in wanted if t not in created]
        if present:
            for info in await admin.describe_topics(present):
                partitions[info["topic"]] = len(info["partitions"])
    except KafkaError as exc:
        servers = ",".join(cfg.bootstrap_servers)
        raise TopicSetupError(f"Kafka at {servers}: {_describe(exc)}") from exc
    finally:
        await admin.close()

    lines = []
    retention = "broker default" if cfg.retention_ms is None else f"{cfg.retention_ms} ms"
    for topic in wanted:
        if topic in created:
            lines.append(
                f"created topic {topic}: {cfg.partitions} partitions, replication factor "
                f"{cfg.replication_factor}, retention {retention}"
            )
        else:
            count = partitions.get(topic, 0)
            note = ""
            if count != cfg.partitions:
                note = f" (config says {cfg.partitions}; kafka init never alters a topic)"
            lines.append(f"topic {topic} already exists: {count} partitions{note}")
    return lines
