"""`shadoweval archive --from/--to`: a time window of real topics, by offsets-for-times.

Synchronous tests: the command runs its own event loop, as from the shell."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shadoweval.archive.layout import iter_parquet
from shadoweval.cli import main
from shadoweval.testing.synthetic import T0, Upstream, generate

pytestmark = pytest.mark.kafka


def _ms(record: dict[str, object]) -> int:
    return int(datetime.fromisoformat(str(record["ts"])).timestamp() * 1000)


async def _topics(bootstrap: str, records: dict[str, list[dict[str, object]]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=3, replication_factor=1) for t in records]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, recs in records.items():
            for rec in recs:  # the message time is the record's own ts, as the sink sends it
                key = str(rec["request_id"]).encode()
                await producer.send(topic, orjson.dumps(rec), key=key, timestamp_ms=_ms(rec))
            await producer.send_and_wait(topic, b"not json", timestamp_ms=_ms(recs[-1]))
    finally:
        await producer.stop()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def test_archives_exactly_the_window(kafka_bootstrap: str, tmp_path: Path) -> None:
    # 300 requests an hour apart (two candidates): 600 pairs over 12.5 days, 1200 scores.
    pairs, scores = generate(
        Upstream("prod", role="primary"), [Upstream("a"), Upstream("b")], 300, spacing_s=3600
    )
    tag = uuid.uuid4().hex[:8]
    pt, st = f"archive-pairs-{tag}", f"archive-scores-{tag}"
    asyncio.run(_topics(kafka_bootstrap, {pt: pairs, st: scores}))
    config = tmp_path / "kafka.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: [{kafka_bootstrap}], pairs_topic: {pt}, scores_topic: {st}}}\n"
    )
    start, end = T0 + 50 * 3600, T0 + 120 * 3600  # requests 50..119
    arch = tmp_path / "arch"
    args = ["archive", "-q", "-o", str(arch), "--kafka-config", str(config)]
    window = ["--from", _iso(start), "--to", _iso(end)]
    assert main([*args, *window]) == 0
    assert main([*args, *window]) == 0  # the same window again: nothing duplicated

    def inside(rec: dict[str, object]) -> bool:
        return start * 1000 <= _ms(rec) < end * 1000

    got = list(iter_parquet(arch, "pairs"))
    want = sorted((p for p in pairs if inside(p)), key=lambda p: (p["ts"], p["pair_id"]))
    assert len(want) == 140
    assert got == want
    got_scores = list(iter_parquet(arch, "scores"))
    assert sorted(s["score_id"] for s in got_scores) == sorted(
        s["score_id"] for s in scores if inside(s)
    )
    # An open window (no --to) reads to the end offsets as they were at the start.
    assert main([*args, "--from", _iso(end)]) == 0
    assert len(list(iter_parquet(arch, "pairs"))) == len(
        [p for p in pairs if _ms(p) >= start * 1000]
    )
    assert [p.name for p in arch.glob(".*")] == [".lock"]  # the spooled window files are gone


def test_a_missing_topic_is_one_line(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kafka.yaml"
    missing = f"archive-missing-{uuid.uuid4().hex[:8]}"
    config.write_text(
        f"bootstrap_servers: [{kafka_bootstrap}]\npairs_topic: {missing}\nscores_topic: ''\n"
    )
    code = main(
        ["archive", "-o", str(tmp_path / "a"), "--kafka-config", str(config), "--from", "1h"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == f"shadoweval: kafka: topic {missing!r} does not exist"
