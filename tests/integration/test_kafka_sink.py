"""The Kafka sink against real brokers (scripts/kafka.sh): delivery, order, retries, outages.

Most tests use the shared broker at KAFKA_BOOTSTRAP with a topic of their own. Tests that stop
a broker or tamper with its traffic start a dedicated one on free ports, so the shared broker
is never disturbed. Note that scripts/kafka.sh wipes a broker's data on stop: after a restart
the topic holds only what was produced since.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks.kafka import KafkaSink
from shadoweval.testing import FakeUpstream, running_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.kafka

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"
SCHEMA_HEADERS = {"schema": b"shadoweval.pair.v1", "content-type": b"application/json"}


# -- helpers -------------------------------------------------------------------------------


def unique_topic(prefix: str) -> str:
    return f"test-{prefix}-{uuid.uuid4().hex[:10]}"


def two_candidates() -> dict[str, FakeUpstream]:
    return {"cand-a": FakeUpstream(model="model-a"), "cand-b": FakeUpstream(model="model-b")}


def kafka_sink(bootstrap: str, topic: str, **extra: Any) -> dict[str, Any]:
    return {"sink": {"kind": "kafka", "bootstrap_servers": bootstrap, "topic": topic, **extra}}


def sink_count(metrics: Metrics, outcome: str) -> float:
    labels = {"sink": "kafka", "outcome": outcome}
    return metrics.registry.get_sample_value("shadoweval_sink_records_total", labels) or 0.0


def buffered(metrics: Metrics) -> float:
    labels = {"sink": "kafka"}
    return metrics.registry.get_sample_value("shadoweval_sink_buffered_records", labels) or 0.0


def pairs_emitted(metrics: Metrics) -> float:
    return sum(
        metrics.registry.get_sample_value("shadoweval_pairs_total", {"upstream": name}) or 0.0
        for name in ("cand-a", "cand-b")
    )


async def chat(
    session: aiohttp.ClientSession, url: str, text: str, user: str | None = None
) -> tuple[int, float]:
    """One chat completion through the proxy: (status, seconds)."""
    headers = {"Authorization": "Bearer caller-secret"}
    if user is not None:
        headers["x-user"] = user
    body = {"model": "prod-model", "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


async def consume_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` up to its current end, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while not consumer.partitions_for_topic(topic):
                await consumer._client.force_metadata_update()  # no public "refresh" call
                consumer._client.add_topic(topic)
                await asyncio.sleep(0.1)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(timeout):
            while any([await consumer.position(tp) < end[tp] for tp in partitions]):
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DedicatedBroker:
    """A broker of our own from scripts/kafka.sh on free ports (stop/start at will)."""

    def __init__(self, advertised_port: int | None = None) -> None:
        self.port = free_port()
        self.env = dict(
            os.environ, KAFKA_PORT=str(self.port), KAFKA_CONTROLLER_PORT=str(free_port())
        )
        if advertised_port is not None:
            # A later key wins in server.properties: clients are sent to the fault proxy.
            self.env["KAFKA_EXTRA_CONFIG"] = (
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{advertised_port}"
            )
        self.bootstrap = f"127.0.0.1:{advertised_port or self.port}"

    async def _script(self, command: str) -> str:
        # In a thread, so the loop (and a FaultProxy on it) keeps running. Not an asyncio
        # subprocess: uvloop leaks a pipe into the child, the broker daemon inherits it and
        # reading the output to EOF would never end.
        proc = await asyncio.to_thread(
            subprocess.run,
            [str(SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"kafka.sh {command} failed:\n{proc.stderr[-3000:]}")
        return proc.stdout

    async def start(self) -> None:
        out = await self._script("start")
        assert f"KAFKA_BOOTSTRAP=127.0.0.1:{self.port}" in out, out

    async def stop(self) -> None:
        await self._script("stop")


@contextlib.asynccontextmanager
async def dedicated_broker(advertised_port: int | None = None) -> AsyncIterator[DedicatedBroker]:
    broker = DedicatedBroker(advertised_port)
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()


class FaultProxy:
    """TCP relay in front of a broker that can swallow the response to one Produce request.

    The broker has appended the batch when its response arrives; cutting the connection
    there makes the producer retry a batch that is already written, which is exactly the
    case idempotence exists for.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.upstream_port = 0
        self.armed = False
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.close()
            return
        doomed: set[int] = set()

        async def frame(reader: asyncio.StreamReader) -> bytes:
            size = await reader.readexactly(4)
            return size + await reader.readexactly(struct.unpack(">i", size)[0])

        async def client_to_broker() -> None:
            while True:
                data = await frame(c_reader)
                api_key, _, correlation = struct.unpack(">hhi", data[4:12])
                if api_key == 0 and self.armed:  # 0 = Produce
                    self.armed = False
                    doomed.add(correlation)
                b_writer.write(data)
                await b_writer.drain()

        async def broker_to_client() -> None:
            while True:
                data = await frame(b_reader)
                if struct.unpack(">i", data[4:8])[0] in doomed:
                    self.cut += 1
                    return  # written by the broker, never acknowledged to the client
                c_writer.write(data)
                await c_writer.drain()

        relays = [asyncio.create_task(client_to_broker()), asyncio.create_task(broker_to_client())]
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for relay in relays:
                relay.cancel()
            await asyncio.gather(*relays, return_exceptions=True)
            for writer in (c_writer, b_writer):
                writer.close()
            self._tasks.discard(task)


# -- through the proxy ---------------------------------------------------------------------


async def test_every_pair_reaches_kafka_once_and_valid(
    kafka_bootstrap: str, validate_pair: Callable[[dict[str, Any]], None]
) -> None:
    topic = unique_topic("pairs")
    n = 30
    metrics = Metrics()
    overrides = kafka_sink(kafka_bootstrap, topic)
    async with running_stack(
        candidates=two_candidates(), overrides=overrides, metrics=metrics
    ) as stack:
        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(
                *(chat(session, stack.url, f"question {i}") for i in range(n))
            )
        assert [status for status, _ in answers] == [200] * n
        await wait_for(lambda: pairs_emitted(metrics) == 2 * n, what="all pairs handed to the sink")

    records = await consume_all(kafka_bootstrap, topic)
    assert len(records) == 2 * n
    values = [orjson.loads(r.value) for r in records]
    for record, value in zip(records, values, strict=True):
        validate_pair(value)
        assert dict(record.headers) == SCHEMA_HEADERS
        assert record.key == value["request_id"].encode()
    per_request: dict[str, set[str]] = defaultdict(set)
    for value in values:
        per_request[value["request_id"]].add(value["candidate"]["upstream"])
    assert len(per_request) == n
    assert all(cands == {"cand-a", "cand-b"} for cands in per_request.values())
    assert len({v["pair_id"] for v in values}) == 2 * n
    assert sink_count(metrics, "written") == 2 * n
    assert [sink_count(metrics, o) for o in ("dropped", "failed", "spilled")] == [0, 0, 0]
    assert buffered(metrics) == 0


async def test_records_keep_their_order_per_key(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique_topic("order")
    users, per_user = ["ann", "bob", "cyd", "dee"], 12
    metrics = Metrics()
    overrides = {
        **kafka_sink(kafka_bootstrap, topic, key="sampling_key", linger_ms=5),
        "sampling": {"key": "header:x-user"},
    }
    put_order: list[dict[str, Any]] = []
    async with running_stack(
        candidates=two_candidates(), overrides=overrides, metrics=metrics
    ) as stack:
        sink = stack.proxy.sink
        assert isinstance(sink, KafkaSink)
        original = sink.put

        def spy(record: dict[str, Any], key: bytes | None = None) -> bool:
            put_order.append(record)
            return original(record, key)

        monkeypatch.setattr(sink, "put", spy)

        async def user_session(session: aiohttp.ClientSession, user: str) -> None:
            for i in range(per_user):
                status, _ = await chat(session, stack.url, f"{user} {i}", user=user)
                assert status == 200

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(user_session(session, u) for u in users))
        total = 2 * len(users) * per_user
        await wait_for(lambda: pairs_emitted(metrics) == total, what="all pairs handed to the sink")

    records = await consume_all(kafka_bootstrap, topic)
    assert len(records) == len(put_order)
    expected: dict[bytes, list[str]] = defaultdict(list)
    for record in put_order:
        expected[record["sampling_key"].encode()].append(record["pair_id"])
    assert len(expected) == len(users)
    got: dict[bytes, list[str]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for r in records:  # consume_all keeps each partition's order
        got[r.key].append(orjson.loads(r.value)["pair_id"])
        partitions[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert got == expected


async def test_graceful_shutdown_flushes_the_buffer(kafka_bootstrap: str) -> None:
    topic = unique_topic("flush")
    n = 20
    metrics = Metrics()
    # A long linger keeps the records in the producer when shutdown begins.
    overrides = kafka_sink(kafka_bootstrap, topic, linger_ms=1000)
    async with running_stack(
        candidates=two_candidates(), overrides=overrides, metrics=metrics
    ) as stack:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(chat(session, stack.url, f"q{i}") for i in range(n)))
        await wait_for(lambda: pairs_emitted(metrics) == 2 * n, what="all pairs handed to the sink")
        assert sink_count(metrics, "written") < 2 * n  # something is left to flush
    # Leaving the block stopped the proxy (grace 5 s): everything must be in Kafka now.
    assert sink_count(metrics, "written") == 2 * n
    assert sink_count(metrics, "dropped") == 0
    assert len(await consume_all(kafka_bootstrap, topic)) == 2 * n


# -- injected faults -------------------------------------------------------------------------


async def _produce_through_cut(bootstrap: str, proxy: FaultProxy, idempotent: bool) -> list[int]:
    """40 records; the response to one Produce request in the middle is swallowed."""
    topic = unique_topic("retry")
    metrics = Metrics()
    cfg = KafkaSinkConfig(
        kind="kafka",
        bootstrap_servers=[bootstrap],
        topic=topic,
        enable_idempotence=idempotent,
        linger_ms=0,
    )
    sink = KafkaSink(cfg, metrics)
    await sink.start()
    try:
        for i in range(20):
            sink.put({"schema": "shadoweval.pair.v1", "request_id": f"r{i}", "n": i})
        await wait_for(lambda: sink_count(metrics, "written") == 20, what="first 20 acknowledged")
        cuts = proxy.cut
        proxy.armed = True
        for i in range(20, 40):
            sink.put({"schema": "shadoweval.pair.v1", "request_id": f"r{i}", "n": i})
        await wait_for(lambda: sink_count(metrics, "written") == 40, what="last 20 acknowledged")
        assert proxy.cut == cuts + 1, "the fault was not injected"
    finally:
        await sink.close(10)
    assert sink_count(metrics, "failed") == sink_count(metrics, "dropped") == 0
    return [orjson.loads(r.value)["n"] for r in await consume_all(bootstrap, topic)]


async def test_injected_retry_writes_no_duplicate_with_idempotence() -> None:
    proxy = FaultProxy()
    broker = DedicatedBroker(advertised_port=proxy.port)
    await proxy.start(broker.port)  # first: the broker's readiness check goes through it
    try:
        await broker.start()
        # The producer retried the cut batch and the broker discarded the copy.
        numbers = await _produce_through_cut(broker.bootstrap, proxy, idempotent=True)
        assert sorted(numbers) == list(range(40))
        # Control: the same fault without idempotence does duplicate, so the retry above
        # really happened and was deduplicated.
        numbers = await _produce_through_cut(broker.bootstrap, proxy, idempotent=False)
        assert set(numbers) == set(range(40))
        assert len(numbers) > 40
    finally:
        await broker.stop()
        await proxy.stop()


@pytest.mark.slow
async def test_kafka_outage_is_invisible_to_callers_and_recovers() -> None:
    topic = unique_topic("outage")
    capacity = 40
    metrics = Metrics()
    async with dedicated_broker() as broker:
        # Made up front: waiting for auto-creation would overflow the small buffer at once.
        # After the restart, auto-creation makes it again with the same 3 partitions.
        await create_topic(broker.bootstrap, topic, partitions=3)
        overrides = kafka_sink(
            broker.bootstrap, topic, buffer_records=capacity, request_timeout_ms=5000
        )
        async with (
            running_stack(
                candidates=two_candidates(), overrides=overrides, metrics=metrics
            ) as stack,
            aiohttp.ClientSession() as session,
        ):

            async def written_reaches(target: float) -> None:
                await wait_for(lambda: sink_count(metrics, "written") == target, what="the acks")

            async def requests(count: int, tag: str, paced: bool = False) -> list[float]:
                latencies = []
                for i in range(count):
                    written = sink_count(metrics, "written")
                    status, seconds = await chat(session, stack.url, f"{tag} {i}")
                    assert status == 200, f"{tag} request {i} failed with {status}"
                    latencies.append(seconds)
                    if paced:  # Kafka up: the buffer never fills
                        await written_reaches(written + 2)
                return latencies

            await requests(1, "warm-up", paced=True)  # the producer is connected
            up = await requests(30, "up", paced=True)
            assert sink_count(metrics, "written") == 62

            await broker.stop()
            down = await requests(40, "down")  # 80 records for 40 places
            await wait_for(lambda: pairs_emitted(metrics) == 142, what="all pairs handed over")
            assert sink_count(metrics, "written") == 62
            assert buffered(metrics) == capacity
            assert sink_count(metrics, "dropped") == 80 - capacity
            # Not a timing assert on absolute values: the proxy must not slow down while
            # Kafka is gone, so the medians stay within a generous ratio of each other.
            up_ms, down_ms = statistics.median(up) * 1000, statistics.median(down) * 1000
            print(f"median latency: {up_ms:.2f} ms with Kafka up, {down_ms:.2f} ms down")
            assert down_ms < 3 * up_ms + 20, f"median {down_ms:.1f} ms down vs {up_ms:.1f} ms up"

            await broker.start()  # same ports, empty data dir; the proxy keeps running
            await wait_for(
                lambda: buffered(metrics) == 0, timeout=60, what="the buffer drained after restart"
            )
            assert sink_count(metrics, "written") == 62 + capacity
            await requests(10, "after")
            await wait_for(lambda: sink_count(metrics, "written") == 122, what="new records flow")

        records = await consume_all(broker.bootstrap, topic)
        tags = sorted(
            {orjson.loads(r.value)["request"]["messages"][0]["content"].split()[0] for r in records}
        )
        assert len(records) == capacity + 20  # what was buffered, then the 10 new requests
        assert tags == ["after", "down"]
        assert sink_count(metrics, "dropped") == 80 - capacity


# -- kafka init ------------------------------------------------------------------------------


async def test_kafka_init_creates_topics_with_configured_settings(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    pairs, scores = unique_topic("init-pairs"), unique_topic("init-scores")
    config = tmp_path / "shadoweval.yaml"
    sink = {
        "kind": "kafka",
        "bootstrap_servers": kafka_bootstrap,
        "topic": pairs,
        "scores_topic": scores,
        "partitions": 4,
        "retention_ms": 3_600_000,
    }
    config.write_text(yaml.safe_dump({"primary": {"url": "http://127.0.0.1:9"}, "sink": sink}))

    async def kafka_init() -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shadoweval",
            "kafka",
            "init",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    first = await kafka_init()
    assert f"created topic {pairs}: 4 partitions" in first
    assert f"created topic {scores}: 4 partitions" in first

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([pairs, scores])}
        assert {name: len(t["partitions"]) for name, t in described.items()} == {
            pairs: 4,
            scores: 4,
        }
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in (pairs, scores)]
        )
        retention = {
            resource[3]: dict((entry[0], entry[1]) for entry in resource[4])["retention.ms"]
            for response in responses
            for resource in response.resources
        }
        assert retention == {pairs: "3600000", scores: "3600000"}
    finally:
        await admin.close()

    again = await kafka_init()  # idempotent: nothing to do, says so
    assert f"topic {pairs} already exists: 4 partitions\n" in again
    assert f"topic {scores} already exists: 4 partitions\n" in again
