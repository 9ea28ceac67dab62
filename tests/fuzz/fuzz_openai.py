"""atheris (libFuzzer) target for the protocol parsers: ``iter_sse`` and ``parse_answer``.

    .venv/bin/python tests/fuzz/fuzz_openai.py -max_total_time=300 [CORPUS_DIR ...]

Structure-aware: the fuzzer's bytes choose either a raw body or JSON documents (one answer,
or an SSE stream of events) built from the keys and value shapes OpenAI-compatible servers
send, with any type in any place, so mutations reach the parsers' field handling rather than
dying in the JSON decoder. A crash is any exception, or an outcome that does not make a
schema-valid pair record. tests/fuzz/test_fuzz_target.py runs it briefly in the test suite.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import atheris
import orjson

with atheris.instrument_imports():
    from shadoweval.protocols import openai

import jsonschema

from shadoweval.config.proxy import Redaction
from shadoweval.records import RequestInfo, build_pair, pair_schema
from shadoweval.redaction import Redactor
from shadoweval.types import Capture

ROUTES = ["chat", "completions", "embeddings", "responses"]
TYPES = ["application/json", "text/event-stream", "text/event-stream; charset=utf-8", ""]
ENCODINGS = ["", "", "", "gzip", "deflate"]
STATUSES = [200, 200, 200, 201, 400, 429, 503, None]
KEYS = [
    "model", "choices", "index", "delta", "message", "content", "text", "finish_reason",
    "tool_calls", "id", "function", "name", "arguments", "usage", "prompt_tokens",
    "completion_tokens", "input_tokens", "output_tokens", "prompt_tokens_details",
    "input_tokens_details", "cached_tokens", "data", "embedding", "output", "type", "status",
    "call_id", "response", "error", "role",
]  # fmt: skip
WORDS = [
    "", "stop", "assistant", "message", "function_call", "output_text", "response.completed",
    "response.created", "response.incomplete", "response.output_text.delta", "[DONE]",
]  # fmt: skip
SEPARATORS = [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n", b""]
VALIDATOR = jsonschema.Draft202012Validator(pair_schema())
REDACTOR = Redactor(Redaction())
INFO = RequestInfo("r1", 0.0, "chat", "/v1/chat/completions", None, None)


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 5 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-3, 3) if fdp.ConsumeBool() else fdp.ConsumeInt(7)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.PickValueInList(WORDS)
    if kind == 5:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 8))
    if kind == 6:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.PickValueInList(KEYS): value(fdp, depth + 1) for _ in range(kind - 5)}


def body(fdp: atheris.FuzzedDataProvider) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512))
    if mode == 1:
        return orjson.dumps(value(fdp))
    events = []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        data = b"[DONE]" if fdp.ConsumeIntInRange(0, 5) == 0 else orjson.dumps(value(fdp))
        events.append(b"data: " + data + fdp.PickValueInList(SEPARATORS))
    stream = b"".join(events)
    return stream[: fdp.ConsumeIntInRange(0, len(stream))] if fdp.ConsumeBool() else stream


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    route = fdp.PickValueInList(ROUTES)
    capture = Capture(
        started=0.0,
        status=fdp.PickValueInList(STATUSES),
        content_type=fdp.PickValueInList(TYPES),
        content_encoding=fdp.PickValueInList(ENCODINGS),
        latency_s=1.0,
        chunk_times=[(fdp.ConsumeIntInRange(0, 4096), 0.5)],
    )
    request = {"model": "m", "stream": fdp.ConsumeBool(), "messages": value(fdp)}
    capture.body += body(fdp)
    offsets = [offset for offset, _ in openai.iter_sse(bytes(capture.body))]
    assert offsets == sorted(set(offsets)), offsets
    out = openai.parse_answer(route, request, capture, upstream="u", role="candidate")  # type: ignore[arg-type]
    record = build_pair(INFO, request, out, out, REDACTOR)
    errors = list(VALIDATOR.iter_errors(json.loads(orjson.dumps(record))))
    assert not errors, errors[0]


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
