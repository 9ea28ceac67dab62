"""The offline scorer as a Kafka consumer group, against a real broker.

The proxy (running_stack with its Kafka sink) writes pair records to a topic of this test;
two scorer replicas run as real processes (``python -m shadoweval score``) in one consumer
group. One is SIGKILLed while it is scoring; the other takes its partitions over from the
last committed offsets. After deduplication by score_id, the scores topic must hold every
expected score of every pair exactly once: none missing, none unexpected.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shadoweval.score.record import score_schema
from shadoweval.testing import FakeUpstream, Latency, running_stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PAIR_SCORERS = ("exact", "token_f1", "over_refusal")
SIDE_SCORERS = ("refusal", "pii_leak", "secret_leak", "toxicity")


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()


async def read_topic(
    bootstrap: str, topic: str, stop: Callable[[list[Any]], bool], timeout: float
) -> list[Any]:
    """Every record of ``topic`` from the start, until ``stop(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        parts = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in parts.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop(records):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records


def start_replica(cfg_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "shadoweval", "score", "--config", str(cfg_path)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def admin_url(log_path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"scorer admin on (http://\S+)", log_path.read_text(errors="replace"))
        if m:
            return m.group(1)
        assert proc.poll() is None, log_path.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"no admin url in {log_path}:\n{log_path.read_text()}")


async def scored_pairs(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    return sum(
        float(v)
        for v in re.findall(r'shadoweval_scored_pairs_total\{outcome="scored",[^}]*\} (\S+)', text)
    )


async def send(session: aiohttp.ClientSession, url: str, n: int, tag: str) -> None:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": f"{tag} question {i}: what is {i} plus {i}?"}],
        }
        async with sem, session.post(url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            await r.read()

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_two_replicas_score_every_pair_exactly_once_despite_a_kill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    pairs_topic, scores_topic = f"test-score-pairs-{run}", f"test-score-scores-{run}"
    await create_topics(kafka_bootstrap, {pairs_topic: 4, scores_topic: 2})
    # A slow judge makes every batch take a while, so the kill lands mid-batch.
    judge = FakeUpstream(
        model="judge",
        style="fixed",
        text='{"score": 7, "reason": "fine"}',
        latency=Latency.fixed(0.03),
        record=False,
    )
    await judge.start()
    cfg = {
        "source": {
            "kind": "kafka",
            "bootstrap_servers": [kafka_bootstrap],
            "topic": pairs_topic,
            "group_id": f"test-score-{run}",
            "batch_max_records": 25,
            "poll_timeout_ms": 200,
            "session_timeout_ms": 6000,  # the broker's minimum: a killed replica is noticed fast
            "heartbeat_interval_ms": 1000,
        },
        "sink": {"kind": "kafka", "bootstrap_servers": [kafka_bootstrap], "topic": scores_topic},
        "admin": {"port": 0},
        "scorers": {"default": ["exact", "token_f1", "judge_single"]},
        "judge": {"url": judge.url, "concurrency": 2},
    }
    cfg_path = tmp_path / "scorer.yaml"
    cfg_path.write_text(json.dumps(cfg))
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    procs = {name: start_replica(cfg_path, logs[name]) for name in ("a", "b")}
    try:
        async with aiohttp.ClientSession() as session:
            urls = {name: await admin_url(logs[name], procs[name]) for name in procs}
            sink = {
                "kind": "kafka",
                "bootstrap_servers": [kafka_bootstrap],
                "topic": pairs_topic,
                "scores_topic": scores_topic,
                "linger_ms": 5,
            }
            candidates = {
                "cand-a": FakeUpstream(model="a", disagree_rate=0.3, seed=1),
                "cand-b": FakeUpstream(model="b", style="upper"),
            }
            async with running_stack(candidates=candidates, overrides={"sink": sink}) as stack:
                await send(session, stack.url, 150, "wave1")
                # Kill replica b while it is scoring: it has scored some pairs, not all.
                deadline = time.monotonic() + 60
                while await scored_pairs(session, urls["b"]) < 10:
                    assert time.monotonic() < deadline, logs["b"].read_text()
                    await asyncio.sleep(0.05)
                b_done = await scored_pairs(session, urls["b"])
                procs["b"].send_signal(signal.SIGKILL)
                assert procs["b"].wait(timeout=10) == -signal.SIGKILL
                await send(session, stack.url, 100, "wave2")
            # The proxy has flushed its sink: every pair is in the topic.
            pairs = [
                orjson.loads(m.value)
                for m in await read_topic(kafka_bootstrap, pairs_topic, lambda r: len(r) >= 500, 60)
            ]
            assert len(pairs) == 500 and len({p["pair_id"] for p in pairs}) == 500
            expected = set()
            for p in pairs:
                expected |= {f"{p['pair_id']}:{s}:pair" for s in PAIR_SCORERS}
                expected |= {
                    f"{p['pair_id']}:{s}:{side}"
                    for s in SIDE_SCORERS
                    for side in ("primary", "candidate")
                }
                expected.add(f"{p['pair_id']}:judge_single:candidate")

            def complete(records: list[Any]) -> bool:
                return expected <= {m.key.decode() for m in records}

            records = await read_topic(kafka_bootstrap, scores_topic, complete, 120)
            a_done = await scored_pairs(session, urls["a"])
        procs["a"].send_signal(signal.SIGTERM)
        assert procs["a"].wait(timeout=30) == 0, logs["a"].read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        await judge.stop()

    ids = [m.key.decode() for m in records]
    counts = Counter(ids)
    assert set(counts) == expected, (
        f"missing {len(expected - set(counts))}, unexpected {len(set(counts) - expected)}"
    )
    validator = jsonschema.Draft202012Validator(score_schema())
    for m in records:
        rec = orjson.loads(m.value)
        validator.validate(rec)
        assert rec["score_id"] == m.key.decode()
        assert dict(m.headers)["schema"] == b"shadoweval.score.v1"
    by_id = {orjson.loads(m.value)["score_id"]: orjson.loads(m.value) for m in records}
    # The scores are the real ones: cand-b shouts, so it never matches exactly.
    assert {
        r["value"] for r in by_id.values() if r["upstream"] == "cand-b" and r["scorer"] == "exact"
    } == {0.0}
    judged = [r["value"] for r in by_id.values() if r["scorer"] == "judge_single"]
    assert judged == [pytest.approx(6 / 9)] * 500  # grade 7 on the 1..10 scale
    # b scored part of the traffic before it died, a the rest plus b's unfinished work;
    # re-deliveries show up as duplicates that the score ids collapse.
    duplicates = len(ids) - len(counts)
    print(
        f"\nreplica b scored {b_done:.0f} pairs before SIGKILL; replica a {a_done:.0f}; {duplicates} duplicate score records deduped"
    )
    assert 10 <= b_done < 500 and a_done + b_done >= 500
    assert "assigned" in logs["a"].read_text()


async def test_a_batch_published_but_not_committed_is_rescored_and_dedupes(
    kafka_bootstrap: str,
) -> None:
    """The worst moment to die: scores published, offsets not committed. The next member of
    the group gets the same pairs again; the re-score carries the same score ids."""
    from aiokafka import AIOKafkaProducer
    from prometheus_client import CollectorRegistry

    from shadoweval.config.scorer import parse_scorer
    from shadoweval.metrics import ScoreMetrics
    from shadoweval.score.runner import ScoreRunner
    from tests.score_helpers import pair_record

    run = uuid.uuid4().hex[:10]
    pairs_topic, scores_topic = f"test-score-pairs-{run}", f"test-score-scores-{run}"
    await create_topics(kafka_bootstrap, {pairs_topic: 2, scores_topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(30):
            rec = pair_record("Paris", "Paris" if i % 2 else "Lyon", pair_id=f"req{i}:cand")
            await producer.send_and_wait(pairs_topic, orjson.dumps(rec), key=f"req{i}".encode())
    finally:
        await producer.stop()
    raw = {
        "source": {
            "kind": "kafka",
            "bootstrap_servers": kafka_bootstrap,
            "topic": pairs_topic,
            "group_id": f"g-{run}",
            "batch_max_records": 10,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "poll_timeout_ms": 500,
        },
        "sink": {"kind": "kafka", "bootstrap_servers": kafka_bootstrap, "topic": scores_topic},
        "scorers": {"default": ["exact"]},
        "safety": {"enabled": False},
    }
    cfg = parse_scorer(raw, environ={})

    first = ScoreRunner(cfg, once=False, metrics=ScoreMetrics(CollectorRegistry()))
    await first.start()
    assert first.source is not None and first.sink is not None
    batch = None
    while batch is None or not batch.messages:
        batch = await first.source.poll()
    published = await first.score_messages(batch.messages)
    await first.sink.write(published)
    await first.stop()  # leaves the group without committing: as if it died here

    second = ScoreRunner(cfg, once=False, metrics=ScoreMetrics(CollectorRegistry()))
    await second.start()
    task = asyncio.create_task(second.run())
    try:
        expected = {f"req{i}:cand:exact:pair" for i in range(30)}
        records = await read_topic(
            kafka_bootstrap, scores_topic, lambda r: expected <= {m.key.decode() for m in r}, 60
        )
    finally:
        second.request_stop()
        await task
        await second.stop()
    counts = Counter(m.key.decode() for m in records)
    assert set(counts) == expected
    redelivered = {r["score_id"] for r in published}
    assert len(redelivered) == len(batch.messages) > 0
    # Exactly the uncommitted batch was scored twice, with identical ids and values.
    assert {k for k, n in counts.items() if n == 2} == redelivered
    assert all(n in (1, 2) for n in counts.values())
    values: dict[str, set[float]] = {}
    for m in records:
        rec = orjson.loads(m.value)
        values.setdefault(rec["score_id"], set()).add(rec["value"])
    assert all(len(v) == 1 for v in values.values())
