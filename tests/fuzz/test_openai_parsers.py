"""Property tests of the protocol parsers (protocols/openai.py): whatever an upstream sends,
``iter_sse`` and ``parse_answer`` never raise, and the outcome always makes a schema-valid,
serialisable pair record. tests/fuzz/fuzz_openai.py drives the same functions with atheris."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadoweval.config.proxy import Redaction
from shadoweval.protocols.openai import (
    _BLANK_LINES,
    MAX_REQUEST_DEPTH,
    InvalidRequest,
    iter_sse,
    parse_answer,
    parse_request,
)
from shadoweval.records import RequestInfo, build_pair, pair_schema
from shadoweval.redaction import Redactor
from shadoweval.types import Capture, Outcome
from tests.fuzz.strategies import ROUTES, answer, captures, json_values, requests

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALIDATOR = jsonschema.Draft202012Validator(pair_schema())
REDACTOR = Redactor(Redaction())
INFO = RequestInfo("r1", 0.0, "chat", "/v1/chat/completions", None, None)


def assert_valid(route: str, request: dict[str, Any], out: Outcome) -> None:
    assert isinstance(out, Outcome)
    record = build_pair(INFO, request, out, out, REDACTOR)
    errors = list(VALIDATOR.iter_errors(json.loads(orjson.dumps(record))))
    assert not errors, errors[0]


@FUZZ
@given(st.sampled_from(ROUTES), requests, captures())
def test_parse_answer_never_raises_and_always_makes_a_valid_record(
    route: Any, request: dict[str, Any], capture: Capture
) -> None:
    out = parse_answer(route, request, capture, upstream="u", role="candidate")
    assert_valid(route, request, out)


# Found by the properties above and fuzz_openai.py (each raised or made an invalid record).
REGRESSIONS = [
    ("chat", {"choices": 5}),
    ("chat", {"choices": [{"message": {"tool_calls": [{"index": [1]}]}}]}),
    ("chat", {"choices": [{"message": {"tool_calls": [{"function": "f"}]}}]}),
    ("chat", {"choices": [{"message": {"content": "a"}, "finish_reason": {"a": 1}}]}),
    ("chat", {"usage": {"prompt_tokens": True, "completion_tokens": -3}}),
    ("embeddings", {"data": {"a": 1}}),
    ("embeddings", {"data": 5}),
    ("responses", {"model": 5}),
    (
        "responses",
        {"output": [{"type": "message", "content": [{"type": "output_text", "text": 5}]}]},
    ),
    ("responses", {"output": [{"type": "function_call", "arguments": 5, "name": 3}]}),
]
STREAM_REGRESSIONS = [
    ("responses", b'data: {"type":"response.completed","response":[1]}\n\n'),
    ("responses", b'data: {"type":"response.created","response":"x"}\n\n'),
    ("chat", b'data: {"choices":[{"delta":{"tool_calls":[{"index":{}}]}}]}\n\n'),
]


@pytest.mark.parametrize(("route", "answer_obj"), REGRESSIONS)
def test_known_bad_answers(route: Any, answer_obj: dict[str, Any]) -> None:
    capture = Capture(0.0, 200, "application/json", body=bytearray(orjson.dumps(answer_obj)))
    request: dict[str, Any] = {"messages": 1.5}  # not a list: request_text must cope too
    assert_valid(
        route, request, parse_answer(route, request, capture, upstream="u", role="candidate")
    )


@pytest.mark.parametrize(("route", "stream"), STREAM_REGRESSIONS)
def test_known_bad_streams(route: Any, stream: bytes) -> None:
    capture = Capture(0.0, 200, "text/event-stream", body=bytearray(stream))
    request = {"stream": True}
    assert_valid(
        route, request, parse_answer(route, request, capture, upstream="u", role="candidate")
    )


@FUZZ
@given(st.binary(max_size=400))
def test_iter_sse_never_raises_and_offsets_move_forward(data: bytes) -> None:
    last = 0
    for offset, payload in iter_sse(data):
        assert isinstance(payload, bytes)
        assert last < offset <= len(data)
        last = offset


@FUZZ
@given(
    st.lists(answer, max_size=6),
    st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r"]),
    st.sampled_from([b"data: ", b"data:"]),
)
def test_iter_sse_returns_exactly_the_events_sent(
    events: list[dict[str, Any]], sep: bytes, prefix: bytes
) -> None:
    payloads = [orjson.dumps(e) for e in events]
    stream = b"".join(prefix + p + sep for p in payloads)
    assert [p for _, p in iter_sse(stream)] == payloads


@FUZZ
@given(st.binary(max_size=300))
def test_parse_request_raises_only_invalid_request(body: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        assert isinstance(parse_request(body), dict)


@FUZZ
@given(json_values)
def test_parse_request_accepts_any_json_object_it_can_write_again(value: Any) -> None:
    body = orjson.dumps({"v": value})
    assert parse_request(body) == {"v": value}


@pytest.mark.parametrize("depth", [10, 200, 253, 254, 300, 1000, 5000])
def test_deeply_nested_requests_are_refused_or_parsed_never_crash(depth: int) -> None:
    """Up to MAX_REQUEST_DEPTH a request is mirrored and recorded; deeper it is refused
    (InvalidRequest: counted, never mirrored), never an exception elsewhere."""
    body = b'{"a":' * depth + b"1" + b"}" * depth
    try:
        request = parse_request(body)
    except InvalidRequest:
        assert depth > MAX_REQUEST_DEPTH
        return
    assert depth <= MAX_REQUEST_DEPTH
    orjson.dumps(build_pair(INFO, request, _ok(), _ok(), REDACTOR))
    orjson.dumps(request)  # what a candidate is sent


def _ok() -> Outcome:
    return Outcome(upstream="u", role="candidate", status=200, latency_s=0.1, stream=False)


class _ScanCounter:
    """A body that tallies the bytes its ``find`` calls scan (the parser's only search)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.scanned = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: slice) -> bytes:
        return self.data[key]

    def find(self, sub: bytes, start: int = 0) -> int:
        idx = self.data.find(sub, start)
        self.scanned += (idx + len(sub) if idx != -1 else len(self.data)) - start
        return idx


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n", b"\r\r"])
@pytest.mark.parametrize("n", [2_000, 8_000])
def test_sse_parsing_scans_each_byte_once_per_separator(sep: bytes, n: int) -> None:
    """Small events in a large capture (the usual shape of a long stream): linear time,
    checked by the bytes searched rather than a clock (a separator the stream never uses
    must not be searched for again at every event). The timing ratio itself is measured
    by benchmarks/linearity.py."""
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}' + sep
    body = _ScanCounter(event * n)
    events = list(iter_sse(body))  # type: ignore[arg-type]
    assert len(events) == n
    assert body.scanned <= len(_BLANK_LINES) * len(body), (body.scanned, len(body))
