"""Where pairs come from: a Kafka consumer group, or the proxy's JSONL file.

Both hand out batches and are told to ``commit`` a batch only after its scores were
published, so a crash re-scores (at least once) instead of skipping; score ids make the
re-score replace the first one.

- Kafka: one consumer in the group ``source.group_id``; replicas split the partitions.
  Offsets are committed by hand. When partitions are taken away (a replica joins or
  leaves), the revoke callback waits for the in-flight batch to commit first, so a
  planned hand-over re-scores nothing; a killed replica's uncommitted batch is re-scored
  by whoever gets its partitions.
- File: reads complete lines from a byte offset saved (atomically) in an offsets file
  after each batch. It follows the file's size-based rotation (``pairs.jsonl`` ->
  ``pairs.jsonl.1``) by inode, and with ``--once`` stops at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from shadoweval.config.scorer import FilePairSource, KafkaPairSource
from shadoweval.kafka_client import client_options
from shadoweval.kafka_client import require_aiokafka as require_kafka
from shadoweval.metrics import ScoreMetrics

log = logging.getLogger(__name__)

_READ_CHUNK = 1024 * 1024
_LAG_EVERY_S = 5.0
_MAX_BACKUPS = 20  # rotated files searched for the one we were reading


@dataclass
class Batch:
    messages: list[bytes]
    # Source-specific position to commit once the batch's scores are published.
    position: Any = None
    # Where each message came from, for logs ("file", "pairs-topic:3@1042").
    origin: str = ""
    committed: asyncio.Event = field(default_factory=asyncio.Event)


class PairSource(Protocol):
    name: str

    async def start(self) -> None: ...

    async def poll(self) -> Batch | None:
        """The next batch, or None when nothing arrived within the poll time."""

    async def commit(self, batch: Batch) -> None: ...

    @property
    def exhausted(self) -> bool:
        """Nothing is left to read (files only; a topic never ends)."""

    def lag(self) -> dict[str, int]:
        """Records not yet committed, per partition (or "file")."""

    async def close(self) -> None: ...


# -- file -------------------------------------------------------------------------------------


class FileSource:
    def __init__(self, cfg: FilePairSource, offsets_path: Path, *, once: bool) -> None:
        self.name = "file"
        self._cfg = cfg
        self._path = Path(cfg.path)
        self._offsets_path = offsets_path
        self._once = once
        self._fh: Any = None  # the open file we read; keeps reading after a rename
        self._inode: int | None = None
        self._offset = 0  # committed position
        self._read_to = 0  # position after the last batch handed out
        self._at_end = False
        self._lag = 0
        self._lag_at = 0.0

    async def start(self) -> None:
        await asyncio.to_thread(self._open_saved)

    def position(self) -> tuple[int, int]:
        """(bytes handed out, size) of the file being read: the progress of ``--once``."""
        try:
            size = os.fstat(self._fh.fileno()).st_size if self._fh is not None else 0
        except OSError:
            size = 0
        return self._read_to, max(size, self._read_to)

    # Blocking helpers, run in a thread.

    def _load_offsets(self) -> tuple[int | None, int]:
        try:
            saved = orjson.loads(self._offsets_path.read_bytes())
            return int(saved["inode"]), int(saved["offset"])
        except FileNotFoundError:
            return None, 0
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "file source: ignoring unreadable %s (%s); starting over", self._offsets_path, exc
            )
            return None, 0

    def _open_saved(self) -> None:
        inode, offset = self._load_offsets()
        if inode is not None:
            for candidate in self._candidates():
                try:
                    st = candidate.stat()
                except FileNotFoundError:
                    continue
                if st.st_ino == inode:
                    if st.st_size < offset:
                        log.warning(
                            "file source: %s shrank below the saved offset; starting over",
                            candidate,
                        )
                        offset = 0
                    self._open(candidate, offset)
                    return
            log.warning(
                "file source: the file of the saved offset is gone (rotated past %d backups?); "
                "starting %s from the beginning",
                _MAX_BACKUPS,
                self._path,
            )
        self._open(self._path, 0)

    def _candidates(self) -> list[Path]:
        return [self._path] + [
            self._path.with_name(f"{self._path.name}.{i}") for i in range(1, _MAX_BACKUPS + 1)
        ]

    def _open(self, path: Path, offset: int) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            fh = open(path, "rb")  # noqa: SIM115 - held open across batches
        except FileNotFoundError:
            self._inode, self._offset, self._read_to = None, 0, 0
            return
        fh.seek(offset)
        self._fh = fh
        self._inode = os.fstat(fh.fileno()).st_ino
        self._offset = self._read_to = offset
        if offset:
            log.info("file source: resuming %s at byte %d", path, offset)

    def _read(self) -> tuple[list[bytes], int]:
        """Up to batch_max_records complete lines from the read position."""
        if self._fh is None:
            self._open(self._path, 0)
            if self._fh is None:
                return [], self._read_to
        self._fh.seek(self._read_to)
        lines: list[bytes] = []
        pos = self._read_to
        buf = b""
        while len(lines) < self._cfg.batch_max_records:
            chunk = self._fh.read(_READ_CHUNK)
            if not chunk:
                break
            buf += chunk
            parts = buf.split(b"\n")
            buf = parts.pop()  # incomplete (or empty) tail
            for part in parts:
                if len(lines) >= self._cfg.batch_max_records:
                    buf = b""  # re-read from pos next time
                    break
                pos += len(part) + 1
                if part.strip():
                    lines.append(part)
        return lines, pos

    def _next_file(self) -> Path | None:
        """At the end of our file: the file the writer moved on to, or None.

        The writer rotates pairs.jsonl -> pairs.jsonl.1 -> ...; the file written after ours
        is the one a step closer to the live path (several rotations may have happened).
        """
        paths = self._candidates()
        inodes: list[int | None] = []
        for path in paths:
            try:
                inodes.append(path.stat().st_ino)
            except FileNotFoundError:
                inodes.append(None)
        if inodes[0] == self._inode:
            return None  # we are on the live file
        for k in range(1, len(paths)):
            if inodes[k] == self._inode:
                return paths[k - 1] if inodes[k - 1] is not None else self._path
        return self._path if inodes[0] is not None else None

    def _count_rest(self) -> int:
        if self._fh is None:
            return 0
        count = 0
        with open(self._fh.name, "rb") as fh:
            fh.seek(self._offset)
            while chunk := fh.read(_READ_CHUNK):
                count += chunk.count(b"\n")
        return count

    def _save(self, offset: int) -> None:
        self._offsets_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._offsets_path.with_name(self._offsets_path.name + ".tmp")
        state = {
            "path": str(self._fh.name if self._fh else self._path),
            "inode": self._inode,
            "offset": offset,
        }
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._offsets_path)

    # The PairSource interface.

    async def poll(self) -> Batch | None:
        batch = await self._next_batch()
        if batch is not None:
            return batch
        following = await asyncio.to_thread(self._next_file) if self._inode is not None else None
        if following is not None:
            # The old file is final once renamed, but lines may have landed just before.
            batch = await self._next_batch()
            if batch is not None:
                return batch
            log.info("file source: %s was rotated; continuing with %s", self._path, following)
            await asyncio.to_thread(self._open, following, 0)
            await self._persist(0)
            return None
        self._at_end = True
        if not self._once:
            await asyncio.sleep(self._cfg.poll_interval_s)
        return None

    async def _next_batch(self) -> Batch | None:
        lines, pos = await asyncio.to_thread(self._read)
        if pos == self._read_to:
            return None
        self._at_end = False
        self._read_to = pos
        return Batch(lines, (self._inode, pos), origin=str(self._path))

    async def _persist(self, offset: int) -> None:
        await asyncio.to_thread(self._save, offset)

    async def commit(self, batch: Batch) -> None:
        inode, pos = batch.position
        if inode == self._inode and inode is not None:
            self._offset = pos
            await self._persist(pos)
        batch.committed.set()

    @property
    def exhausted(self) -> bool:
        return self._once and self._at_end

    def lag(self) -> dict[str, int]:
        now = time.monotonic()
        if self._at_end:
            self._lag = 0
        elif now - self._lag_at >= _LAG_EVERY_S:
            self._lag_at = now
            self._lag = self._count_rest()
        return {"file": self._lag}

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- Kafka ------------------------------------------------------------------------------------


def require_aiokafka() -> Any:
    return require_kafka("score")


class KafkaSource:
    def __init__(self, cfg: KafkaPairSource, metrics: ScoreMetrics) -> None:
        self.name = "kafka"
        self._cfg = cfg
        self._metrics = metrics
        self._consumer: Any = None
        self._inflight: Batch | None = None
        self._committed: dict[Any, int] = {}  # TopicPartition -> next offset to read
        self._lag_labels: set[str] = set()

    async def start(self) -> None:
        aiokafka = require_aiokafka()
        from aiokafka.abc import ConsumerRebalanceListener

        cfg = self._cfg
        source = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._handover(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                log.info(
                    "kafka source: assigned %s",
                    sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
                )

        def make() -> Any:
            consumer = aiokafka.AIOKafkaConsumer(
                **client_options(cfg, "source"),
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset=cfg.auto_offset_reset,
                session_timeout_ms=cfg.session_timeout_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                max_poll_interval_ms=cfg.max_poll_interval_ms,
            )
            consumer.subscribe([cfg.topic], listener=Listener())
            return consumer

        backoff = 0.5
        while True:
            consumer = make()
            try:
                await consumer.start()
                break
            except Exception as exc:  # Kafka not reachable yet: keep trying, not ready
                self._metrics.io_errors.labels("read").inc()
                log.warning(
                    "kafka source: cannot connect to %s (%s); retrying",
                    ",".join(cfg.bootstrap_servers),
                    exc,
                )
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self._consumer = consumer
        log.info("kafka source: consuming %s as group %s", cfg.topic, cfg.group_id)

    async def _handover(self, revoked: Any) -> None:
        """Before partitions move to another replica, let the batch in flight commit."""
        batch = self._inflight
        if batch is not None and not batch.committed.is_set():
            log.info("kafka source: rebalance; waiting for the batch in flight to commit")
            try:
                async with asyncio.timeout(self._cfg.revoke_timeout_s):
                    await batch.committed.wait()
            except TimeoutError:
                log.warning(
                    "kafka source: batch not committed within revoke_timeout_s=%.0fs; "
                    "its pairs will be scored again by the new owner",
                    self._cfg.revoke_timeout_s,
                )
        for tp in revoked:
            self._committed.pop(tp, None)
            label = str(tp.partition)
            if label in self._lag_labels:
                self._lag_labels.discard(label)
                with contextlib.suppress(KeyError):
                    self._metrics.consumer_lag.remove(label)

    async def poll(self) -> Batch | None:
        data = await self._consumer.getmany(
            timeout_ms=self._cfg.poll_timeout_ms, max_records=self._cfg.batch_max_records
        )
        if not data:
            return None
        messages: list[bytes] = []
        offsets: dict[Any, int] = {}
        for tp, records in data.items():
            for rec in records:
                if rec.value is not None:
                    messages.append(rec.value)
            if records:
                offsets[tp] = records[-1].offset + 1
        batch = Batch(messages, offsets, origin=self._cfg.topic)
        self._inflight = batch
        return batch

    async def commit(self, batch: Batch) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
        from aiokafka.structs import OffsetAndMetadata

        try:
            assigned = self._consumer.assignment()
            offsets = {
                tp: OffsetAndMetadata(off, "")
                for tp, off in batch.position.items()
                if tp in assigned
            }
            if offsets:
                await self._consumer.commit(offsets)
                for tp, meta in offsets.items():
                    self._committed[tp] = meta.offset
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The group moved on (we were too slow, or a rebalance won the race): the new
            # owner scores these pairs again and the score ids dedupe them.
            self._metrics.io_errors.labels("commit").inc()
            log.warning("kafka source: commit failed (%s); the batch will be redelivered", exc)
        finally:
            batch.committed.set()
            if self._inflight is batch:
                self._inflight = None

    @property
    def exhausted(self) -> bool:
        return False

    def lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            pos = self._committed.get(tp)
            if high is not None and pos is not None:
                out[str(tp.partition)] = max(0, high - pos)
        self._lag_labels |= set(out)
        return out

    async def close(self) -> None:
        if self._consumer is not None:
            # Leaving the group now hands our partitions over at once (nothing in flight).
            await self._consumer.stop()
            self._consumer = None
