"""`shadoweval dataset build --kafka`: a snapshot of the pairs topic on a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shadoweval.cli import main
from shadoweval.config.scorer import KafkaPairSource
from shadoweval.dataset.kafka import read_pairs
from tests.unit.test_dataset import pairs_for

pytestmark = pytest.mark.kafka


async def _topic_with(bootstrap: str, records: list[bytes]) -> str:
    topic = f"dataset-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, value in enumerate(records):
            await producer.send_and_wait(topic, value, key=str(i).encode())
    finally:
        await producer.stop()
    return topic


async def test_reads_the_topic_from_the_start_to_its_end(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    records = []
    for i in range(40):
        records += pairs_for(f"req{i:05d}", f"question number {i} about topic {i * 7}")
    raw = [orjson.dumps(r) for r in records] + [b"not json"]
    topic = await _topic_with(kafka_bootstrap, raw)
    cfg = KafkaPairSource(kind="kafka", bootstrap_servers=[kafka_bootstrap], topic=topic)
    skipped: Counter[str] = Counter()
    got = await read_pairs(cfg, skipped)
    assert sorted(r["pair_id"] for r in got) == sorted(r["pair_id"] for r in records)
    assert skipped == {"invalid JSON message": 1}
    assert len(await read_pairs(cfg, Counter(), max_records=5)) == 5

    config = tmp_path / "review.yaml"
    config.write_text(
        f"dataset: {{kafka: {{kind: kafka, bootstrap_servers: [{kafka_bootstrap}], topic: {topic}}}}}\n"
    )
    out = tmp_path / "eval.jsonl"
    argv = ["dataset", "build", "--kafka", "-c", str(config), "-n", "10", "-o", str(out)]
    try:
        assert await asyncio.to_thread(main, argv) == 0
        assert len(out.read_bytes().splitlines()) == 10
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
