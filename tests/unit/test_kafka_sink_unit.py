"""The Kafka sink without a broker: config validation, buffering, drops, spill on close."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval import logs, sinks
from shadoweval.cli import main
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.config.proxy import parse
from shadoweval.kafka_client import client_options
from shadoweval.metrics import Metrics
from shadoweval.sinks import kafka as kafka_module
from shadoweval.sinks.kafka import KafkaSink, resolve_compression

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: connection refused at once


def sink_config(**extra: Any) -> KafkaSinkConfig:
    base: dict[str, Any] = {"kind": "kafka", "bootstrap_servers": UNREACHABLE}
    return KafkaSinkConfig.model_validate({**base, **extra})


def count(m: Metrics, outcome: str) -> float:
    labels = {"sink": "kafka", "outcome": outcome}
    return m.registry.get_sample_value("shadoweval_sink_records_total", labels) or 0.0


def gauge(m: Metrics) -> float:
    labels = {"sink": "kafka"}
    return m.registry.get_sample_value("shadoweval_sink_buffered_records", labels) or 0.0


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"schema": "shadoweval.pair.v1", "request_id": f"req-{i}", "n": i, **extra}


# -- configuration -------------------------------------------------------------------------


def config_error(sink: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse({"primary": {"url": "http://127.0.0.1:9001"}, "sink": sink}, environ={})
    return str(info.value)


def test_defaults_and_server_list_forms() -> None:
    cfg = parse(
        {
            "primary": {"url": "http://127.0.0.1:9001"},
            "sink": {"kind": "kafka", "bootstrap_servers": "k1:9092, k2:9093"},
        },
        environ={},
    ).sink
    assert isinstance(cfg, KafkaSinkConfig)
    assert cfg.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert (cfg.topic, cfg.scores_topic, cfg.acks, cfg.key) == (
        "shadoweval.pairs",
        "shadoweval.scores",
        "all",
        "request_id",
    )
    assert cfg.enable_idempotence and cfg.compression == "zstd"
    assert (cfg.partitions, cfg.replication_factor, cfg.buffer_records) == (6, 1, 10_000)
    assert sink_config(bootstrap_servers=["a:1", "b:2"]).bootstrap_servers == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"bootstrap_servers": "kafka"}, "sink.kafka.bootstrap_servers: 'kafka' is not host:port"),
        ({"bootstrap_servers": []}, "sink.kafka.bootstrap_servers: needs at least one host:port"),
        ({"acks": 1}, "acks: 1 is not allowed with enable_idempotence: true"),
        ({"acks": 2}, "sink.kafka.acks"),
        ({"compression": "brotli"}, "sink.kafka.compression"),
        ({"topic": "pairs topic"}, "sink.kafka.topic: must be 1-249 characters"),
        ({"scores_topic": "shadoweval.pairs"}, "topic and scores_topic must differ"),
        ({"key": "user"}, "sink.kafka.key"),
        ({"buffer_records": 0}, "sink.kafka.buffer_records"),
        ({"partitions": 0}, "sink.kafka.partitions"),
        ({"retention_ms": 0}, "sink.kafka.retention_ms: must be positive, or -1"),
        ({"linger": 5}, "sink.kafka.linger: unknown key"),
        (
            {"security": {"protocol": "SASL_SSL"}},
            "sink.kafka.security: sasl_mechanism is required when protocol is SASL_SSL",
        ),
        (
            {"security": {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}},
            "sink.kafka.security: sasl_mechanism SCRAM-SHA-512 needs sasl_username",
        ),
        (
            {
                "security": {
                    "protocol": "SASL_SSL",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "svc",
                }
            },
            "sink.kafka.security: sasl_mechanism PLAIN needs sasl_password_file",
        ),
        (
            {"security": {"sasl_mechanism": "PLAIN", "sasl_username": "u"}},
            "sasl_mechanism is set but protocol is PLAINTEXT",
        ),
        (
            {"security": {"sasl_username": "u"}},
            "sasl_username/sasl_password_file are set but sasl_mechanism is not",
        ),
        (
            {"security": {"ssl_cafile": "ca.pem"}},
            "sink.kafka.security: ssl_cafile set but protocol PLAINTEXT has no TLS",
        ),
        (
            {"security": {"protocol": "SSL", "ssl_keyfile": "k.pem"}},
            "ssl_keyfile needs ssl_certfile",
        ),
        ({"security": {"protocol": "TLS"}}, "sink.kafka.security.protocol"),
    ],
)
def test_invalid_settings_name_the_key_and_the_reason(sink: dict[str, Any], expected: str) -> None:
    base = {"kind": "kafka", "bootstrap_servers": "k:9092"}
    assert expected in config_error({**base, **sink})


def test_bootstrap_servers_are_required() -> None:
    expected = "sink.kafka.bootstrap_servers: required key is missing"
    assert expected in config_error({"kind": "kafka"})


def test_valid_sasl_tls_settings() -> None:
    cfg = sink_config(
        acks="all",
        security={
            "protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "shadoweval",
            "sasl_password_file": "/run/secrets/kafka",
            "ssl_cafile": "ca.pem",
        },
    )
    assert cfg.security.protocol == "SASL_SSL"
    assert sink_config(enable_idempotence=False, acks=0).acks == 0


# -- start-up checks -----------------------------------------------------------------------


async def test_password_file_is_read_at_start_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cr3t-Pa55\n")
    cfg = sink_config(
        security={
            "protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
            "sasl_password_file": str(secret),
        }
    )
    assert client_options(cfg, "sink")["sasl_plain_password"] == "s3cr3t-Pa55"
    caplog.set_level(logging.DEBUG)
    sink = KafkaSink(cfg, Metrics())
    await sink.start()
    sink.put(record(1))
    await sink.close(0.5)
    assert "kafka sink: topic shadoweval.pairs" in caplog.text  # something was logged
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in repr(cfg)


async def test_unreadable_password_file_fails_start_naming_the_key(tmp_path: Path) -> None:
    cfg = sink_config(
        security={
            "protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "svc",
            "sasl_password_file": str(tmp_path / "missing"),
        }
    )
    with pytest.raises(ConfigError, match=r"sink\.security\.sasl_password_file: cannot read"):
        await KafkaSink(cfg, Metrics()).start()


def test_compression_falls_back_to_gzip_without_cramjam(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka_module, "has_zstd", lambda: True)
    assert resolve_compression("zstd") == "zstd"
    assert caplog.text == ""
    monkeypatch.setattr(kafka_module, "has_zstd", lambda: False)
    assert resolve_compression("zstd") == "gzip"
    assert "zstd compression needs the cramjam package" in caplog.text
    assert resolve_compression("gzip") == "gzip"
    assert resolve_compression("none") is None


def test_missing_aiokafka_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiokafka", None)  # import now fails
    monkeypatch.delitem(sys.modules, "shadoweval.sinks.kafka")
    with pytest.raises(ConfigError, match=r"pip install 'shadoweval\[kafka\]'"):
        sinks.build(sink_config(), Metrics())


def test_build_returns_the_kafka_sink() -> None:
    assert isinstance(sinks.build(sink_config(), Metrics()), KafkaSink)


# -- buffering, drops, spill ---------------------------------------------------------------


async def test_full_buffer_drops_and_counts_without_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Metrics()
    sink = KafkaSink(sink_config(buffer_records=5), m)
    await sink.start()
    # put never waits for Kafka: it is a plain call, taking or refusing without a yield.
    assert not inspect.iscoroutinefunction(sink.put)
    accepted = [sink.put(record(i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert count(m, "dropped") == 3
    assert gauge(m) == 5
    await sink.close(0.3)
    # No spill path: the 5 buffered records are lost at shutdown, and counted as such.
    assert count(m, "dropped") == 8
    assert count(m, "written") == count(m, "spilled") == 0
    assert gauge(m) == 0
    assert "dropped 3 records" in caplog.text
    assert "5 records not acknowledged by Kafka" in caplog.text


async def test_put_after_close_is_a_counted_drop() -> None:
    m = Metrics()
    sink = KafkaSink(sink_config(), m)
    await sink.start()
    await sink.close(0.1)
    assert sink.put(record(1)) is False
    assert count(m, "dropped") == 1


async def test_unreachable_broker_spills_everything_on_close(tmp_path: Path) -> None:
    m = Metrics()
    spill = tmp_path / "spill" / "kafka-unsent.jsonl"
    sink = KafkaSink(sink_config(spill_path=str(spill), request_timeout_ms=1000), m)
    await sink.start()
    records = [record(i, text="é ü") for i in range(25)]
    assert all(sink.put(r) for r in records)
    # Bounded by the grace period, not by Kafka: the spill below shows it gave up on the
    # broker. The guard only turns a hang into a failure; a pass never nears it.
    async with asyncio.timeout(60):
        await sink.close(1.0)
    lines = spill.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == records  # same JSONL as the file sink
    assert count(m, "spilled") == 25
    assert count(m, "written") == count(m, "dropped") == count(m, "failed") == 0

    # A second shutdown appends rather than overwrites.
    again = KafkaSink(sink_config(spill_path=str(spill)), Metrics())
    await again.start()
    again.put(record(99))
    await again.close(0.2)
    assert len(spill.read_bytes().splitlines()) == 26


async def test_unserialisable_record_is_counted_failed_not_raised() -> None:
    m = Metrics()
    sink = KafkaSink(sink_config(), m)
    assert sink.put({"request_id": "r", "bad": {1, 2}}) is False
    assert count(m, "failed") == 1


def test_message_key_is_request_id_or_sampling_key() -> None:
    by_request = KafkaSink(sink_config(), Metrics())
    by_request.put(record(1, sampling_key="abc"), b"req-1")
    by_request.put(record(2))  # no key argument: taken from the record
    assert [item.key for item in by_request._buffer] == [b"req-1", b"req-2"]
    item = by_request._buffer[0]
    assert item.headers == [
        ("schema", b"shadoweval.pair.v1"),
        ("content-type", b"application/json"),
    ]

    by_user = KafkaSink(sink_config(key="sampling_key"), Metrics())
    by_user.put(record(1, sampling_key="abc"), b"req-1")
    by_user.put(record(2, sampling_key=None), b"req-2")  # unsampled by key: request id
    assert [item.key for item in by_user._buffer] == [b"abc", b"req-2"]


# -- CLI -------------------------------------------------------------------------------------


def test_kafka_init_refuses_a_non_kafka_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('primary: {url: "http://127.0.0.1:9001"}\nsink: {kind: file}\n')
    assert main(["kafka", "init", "--config", str(path)]) == 2
    assert "kafka init needs kafka" in capsys.readouterr().err


def test_kafka_init_reports_an_unreachable_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        'primary: {url: "http://127.0.0.1:9001"}\n'
        f'sink: {{kind: kafka, bootstrap_servers: "{UNREACHABLE}"}}\n'
    )
    assert main(["kafka", "init", "--config", str(path)]) == 1
    assert f"kafka init: Kafka at {UNREACHABLE}" in capsys.readouterr().err


async def test_a_metadata_refresh_that_reaches_no_broker_marks_the_producer_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka retries a failed refresh without pause while a leader is unknown: the sink
    wraps it so that a failure flags the producer (the drain loop then closes it) and the
    next refresh waits a poll interval instead of spinning."""
    monkeypatch.setattr(kafka_module, "_POLL_S", 0.05)
    answers = [False, False, True]
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:  # the pause itself, not the wall clock
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    class Client:
        async def _metadata_update(self, cluster: object, topics: object) -> bool:
            return answers.pop(0)

    class Producer:
        client = Client()

    sink = KafkaSink(sink_config(), Metrics())
    producer = Producer()
    sink._producer = producer
    sink._watch(producer)
    assert await producer.client._metadata_update(None, set()) is False
    assert sink._unreachable
    assert await producer.client._metadata_update(None, set()) is False
    assert pauses == [0.05, 0.05]  # paused a poll interval after each failure
    assert await producer.client._metadata_update(None, set()) is True
    assert pauses == [0.05, 0.05]  # and not after a success
    assert not sink._unreachable  # reachable again: the producer is kept
    sink._producer = None  # a producer the sink has let go never flags the current one
    answers.append(False)
    await producer.client._metadata_update(None, set())
    assert not sink._unreachable


# -- logs ----------------------------------------------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """logs.configure replaces the root's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logs.THIRD_PARTY}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


async def test_debug_logging_never_writes_a_record_value(restored_logging: None) -> None:
    """aiokafka's own send() logs ``Sending (key=... value=...)`` at debug; with the proxy's
    logging at debug and the producer's logger lowered to debug too, it reaches no handler."""
    from aiokafka import AIOKafkaProducer

    out = io.StringIO()
    logs.configure("debug", "%(levelname)s %(name)s: %(message)s", force=True, stream=out)
    logging.getLogger("aiokafka.producer.producer").setLevel(logging.DEBUG)

    producer = AIOKafkaProducer(bootstrap_servers=UNREACHABLE)

    async def metadata(topic: str) -> None:
        return None

    async def add_message(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    producer.client._wait_on_metadata = metadata
    producer._partition = lambda *args: 0
    producer._message_accumulator.add_message = add_message
    secret = b'{"messages": "the body of a record 8d0c1f"}'
    await producer.send("shadoweval.pairs", secret, key=b"req-1")
    await producer.client.close()
    logging.getLogger("shadoweval.sinks.kafka").debug("a debug line of our own")

    text = out.getvalue()
    assert "the body of a record" not in text
    assert "a debug line of our own" in text  # debug is on; only the library's is held back
    # What is held back is a library's debug, not its warnings.
    logging.getLogger("aiokafka.conn").warning("broker unreachable")
    assert "broker unreachable" in out.getvalue()


def test_third_party_loggers_are_capped_at_info_or_the_configured_level(
    restored_logging: None,
) -> None:
    logs.configure("debug", "%(message)s", force=True, stream=io.StringIO())
    assert logging.getLogger("aiokafka").level == logging.INFO
    assert logging.getLogger("opentelemetry").level == logging.INFO
    logs.configure("warning", "%(message)s", force=True, stream=io.StringIO())
    assert logging.getLogger("aiokafka").level == logging.WARNING


# -- re-sends after a stall ----------------------------------------------------------------


class StalledProducer:
    """Accepts every record; the test settles each delivery future (or leaves it pending,
    as a stalled broker does)."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []
        self.client = type("Client", (), {"close": self._close})()
        self._sender = type("Sender", (), {"sender_task": None})()

    async def _close(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


async def test_records_of_unknown_fate_are_requeued_in_order_and_counted_as_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

    monkeypatch.setattr(kafka_module, "_POLL_S", 0.01)
    m = Metrics()
    sink = KafkaSink(sink_config(), m)
    producer = StalledProducer()
    sink._producer = producer
    for i in range(5):
        sink.put(record(i))

    task = asyncio.create_task(sink._send_chunk())
    while len(producer.futures) < 5:
        await asyncio.sleep(0)
    producer.futures[0].set_result(None)  # acknowledged
    producer.futures[1].set_exception(KafkaTimeoutError())  # expired: maybe written
    producer.futures[2].set_exception(NotLeaderForPartitionError())  # refused: not written
    sink._unreachable = True  # 3 and 4 never answered: the broker went away
    assert await task is False

    assert count(m, "written") == 1
    resent = m.registry.get_sample_value("shadoweval_sink_resent_records_total", {"sink": "kafka"})
    assert resent == 3  # 1, 3 and 4: their first send may have landed
    assert [orjson.loads(item.value)["n"] for item in sink._buffer] == [1, 2, 3, 4]
    assert sink._producer is None  # the next chunk goes through a new producer
