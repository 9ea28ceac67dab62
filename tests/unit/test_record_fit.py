"""A record over the sink's limit is shortened and marked, never written whole."""

from __future__ import annotations

import orjson

from shadoweval.config.proxy import parse
from shadoweval.records import TRUNCATED_MARK, fit, record_limit


def _record(text: str) -> dict[str, object]:
    return {
        "schema": "shadoweval.pair.v1",
        "request": {"messages": [{"role": "user", "content": text}]},
        "primary": {"output_text": text[: len(text) // 2]},
        "candidate": {"output_text": "short"},
    }


def test_a_small_record_is_returned_as_it_is() -> None:
    record = _record("hello")
    assert fit(record, 16 * 1024) is record


def test_a_large_record_is_shortened_to_the_limit_and_marked() -> None:
    for text in ("a" * 3_000_000, 'é\n"' * 700_000):  # plain, and multi-byte plus escapes
        record = _record(text)
        out = fit(record, 64 * 1024)
        assert len(orjson.dumps(out)) <= 64 * 1024
        assert out["record_truncated"]["original_bytes"] == len(orjson.dumps(record))  # type: ignore[index]
        assert out["request"]["messages"][0]["content"].endswith(TRUNCATED_MARK)  # type: ignore[index]
        assert out["candidate"] == {"output_text": "short"}  # short fields untouched
        assert record["request"]["messages"][0]["content"] == text  # type: ignore[index]


def test_the_kafka_sink_limit_caps_the_record() -> None:
    base = {"primary": {"url": "http://127.0.0.1:9"}}
    assert record_limit(parse(base, environ={})) == 4 * 1024 * 1024
    kafka = {**base, "sink": {"kind": "kafka", "bootstrap_servers": "k:9092"}}
    assert record_limit(parse(kafka, environ={})) == 1024 * 1024 - 1024
