"""Pair records from the proxy's Kafka topic, for ``shadoweval dataset build --kafka``.

A snapshot read: every partition from its earliest offset to its end offset as it was when
reading started. Partitions are assigned by hand (no consumer group), so nothing is
committed and the scorer's group is not disturbed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import orjson

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import KafkaPairSource
from shadoweval.kafka_client import client_options
from shadoweval.score.consumer import require_aiokafka
from shadoweval.types import Json


async def read_pairs(
    cfg: KafkaPairSource,
    skipped: Counter[str],
    max_records: int | None = None,
    timeout_s: float = 120.0,
) -> list[Json]:
    aiokafka = require_aiokafka()
    from aiokafka.admin import AIOKafkaAdminClient

    options = client_options(cfg, "dataset.kafka")
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        (info,) = await admin.describe_topics([cfg.topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in info.get("partitions") or ())
    if not partitions:
        raise ConfigError(f"dataset.kafka.topic: topic {cfg.topic!r} does not exist")
    consumer = aiokafka.AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [aiokafka.TopicPartition(cfg.topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > await consumer.position(tp)}
        out: list[Json] = []
        deadline = time.monotonic() + timeout_s
        while pending and (max_records is None or len(out) < max_records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {cfg.topic} took longer than {timeout_s:.0f}s")
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=1000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset < end[tp]:
                        out.extend(_decode(message.value, skipped))
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return out if max_records is None else out[:max_records]
    finally:
        await consumer.stop()


def _decode(value: bytes | None, skipped: Counter[str]) -> Iterator[Json]:
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        skipped["invalid JSON message"] += 1
        return
    if isinstance(obj, dict):
        yield obj
    else:
        skipped["message is not a JSON object"] += 1
