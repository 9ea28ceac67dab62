"""A time window of a Kafka topic, read by offsets-for-times, into a JSONL file.

Per partition: the first offset whose timestamp is at or after ``--from`` up to the first at
or after ``--to`` (or the end offset when reading started, for a window still open).
Partitions are assigned by hand: no consumer group joins, nothing is committed, the scorer's
group is not disturbed. The window's messages go to a temporary JSONL file, which the
archive writer reads like any other input, so memory stays bounded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import orjson
from pydantic import Field, field_validator

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import KafkaClient
from shadoweval.kafka_client import client_options, require_aiokafka


class ArchiveKafka(KafkaClient):
    """``archive --kafka``: where the pairs and scores topics are (a YAML file's keys)."""

    client_id: str = "shadoweval-archive"
    pairs_topic: str | None = "shadoweval.pairs"
    scores_topic: str | None = "shadoweval.scores"
    timeout_s: float = Field(600.0, gt=0)

    @field_validator("pairs_topic", "scores_topic")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


async def read_window(
    cfg: ArchiveKafka,
    topic: str,
    start_ms: int,
    end_ms: int | None,
    out: BinaryIO,
    skipped: Counter[str],
    progress: Callable[[str], None] = lambda line: None,
) -> int:
    """Write the messages of ``topic`` with timestamps in [start_ms, end_ms) to ``out``, one
    per line; returns how many."""
    aiokafka = require_aiokafka()
    from aiokafka.admin import AIOKafkaAdminClient

    options = client_options(cfg, "kafka")
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        (info,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = sorted(p["partition"] for p in info.get("partitions") or ())
    if not parts:
        raise ConfigError(f"kafka: topic {topic!r} does not exist")
    consumer = aiokafka.AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [aiokafka.TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, start_ms))
        stops = await consumer.offsets_for_times(dict.fromkeys(tps, end_ms)) if end_ms else {}
        window: dict[object, tuple[int, int]] = {}
        for tp in tps:
            first = starts[tp].offset if starts.get(tp) is not None else ends[tp]
            stop = stops[tp].offset if stops.get(tp) is not None else ends[tp]
            if stop > first:
                window[tp] = (first, stop)
                consumer.seek(tp, first)
        progress(
            f"kafka: {topic}: {sum(b - a for a, b in window.values())} messages in the window "
            f"over {len(window)} of {len(tps)} partitions"
        )
        written = 0
        deadline = time.monotonic() + cfg.timeout_s
        pending = set(window)
        while pending:
            if time.monotonic() > deadline:
                raise ConfigError(f"kafka: reading {topic} took longer than {cfg.timeout_s:.0f}s")
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                stop = window[tp][1]
                for message in messages:
                    if message.offset >= stop:
                        break
                    value = (message.value or b"").strip()
                    if b"\n" in value:  # pretty-printed JSON: one line for the JSONL spool
                        try:
                            value = orjson.dumps(orjson.loads(value))
                        except orjson.JSONDecodeError:
                            skipped["invalid JSON message"] += 1
                            continue
                    out.write(value + b"\n")
                    written += 1
            for tp in list(pending):
                if await consumer.position(tp) >= window[tp][1]:
                    pending.discard(tp)
            if written and written % 50_000 < 5000:
                progress(f"kafka: {topic}: {written} messages read")
        return written
    finally:
        await consumer.stop()


def spool(directory: Path, topic: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{topic}.{time.time_ns()}.jsonl"
