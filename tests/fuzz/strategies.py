"""Hypothesis strategies for what upstreams may send back: well-formed OpenAI answers with any
field of any JSON type, SSE streams of them cut or framed oddly, compressed or not, and noise."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
from hypothesis import strategies as st

from shadoweval.types import ERROR_TYPES, Capture

ROUTES = ("chat", "completions", "embeddings", "responses")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right shape most of the time, anything JSON otherwise."""
    return st.one_of(value, json_values)


usage = _maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": _maybe(st.integers(0, 10**6)),
            "completion_tokens": _maybe(st.integers(0, 10**6)),
            "input_tokens": _maybe(st.integers(0, 10**6)),
            "output_tokens": _maybe(st.integers(0, 10**6)),
            "prompt_tokens_details": _maybe(
                st.fixed_dictionaries({}, optional={"cached_tokens": _maybe(st.integers(0, 99))})
            ),
        },
    )
)
tool_call = _maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "index": _maybe(st.integers(0, 3)),
            "id": _maybe(st.text(max_size=8)),
            "function": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": _maybe(st.text(max_size=8)),
                        "arguments": _maybe(st.text(max_size=16)),
                    },
                )
            ),
        },
    )
)
message = _maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "role": _maybe(st.just("assistant")),
            "content": _maybe(st.text(max_size=20)),
            "tool_calls": _maybe(st.lists(tool_call, max_size=3)),
        },
    )
)
choice = _maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "index": _maybe(st.integers(0, 2)),
            "message": message,
            "delta": message,
            "text": _maybe(st.text(max_size=20)),
            "finish_reason": _maybe(st.sampled_from(["stop", "length", "tool_calls"])),
        },
    )
)
output_item = _maybe(
    st.fixed_dictionaries(
        {"type": _maybe(st.sampled_from(["message", "function_call"]))},
        optional={
            "content": _maybe(
                st.lists(
                    _maybe(
                        st.fixed_dictionaries(
                            {"type": st.just("output_text")},
                            optional={"text": _maybe(st.text(max_size=12))},
                        )
                    ),
                    max_size=3,
                )
            ),
            "call_id": _maybe(st.text(max_size=6)),
            "name": _maybe(st.text(max_size=6)),
            "arguments": _maybe(st.text(max_size=12)),
        },
    )
)
response_object = _maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "model": _maybe(st.text(max_size=10)),
            "status": _maybe(st.sampled_from(["completed", "incomplete", "failed"])),
            "output": _maybe(st.lists(output_item, max_size=3)),
            "usage": usage,
        },
    )
)
answer = st.fixed_dictionaries(
    {},
    optional={
        "model": _maybe(st.text(max_size=10)),
        "choices": _maybe(st.lists(choice, max_size=3)),
        "usage": usage,
        "data": _maybe(st.lists(_maybe(st.fixed_dictionaries({"embedding": json_values})))),
        "output": _maybe(st.lists(output_item, max_size=3)),
        "status": _maybe(st.text(max_size=8)),
        "error": json_values,
        # Responses-API stream events
        "type": _maybe(
            st.sampled_from(
                [
                    "response.created",
                    "response.output_text.delta",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                ]
            )
        ),
        "delta": _maybe(st.text(max_size=12)),
        "response": response_object,
    },
)

_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r", b"\n", b"\r\n", b"")


@st.composite
def sse_stream(draw: st.DrawFn) -> bytes:
    """Events of OpenAI shape (or not), framed with any separator, maybe cut anywhere."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["event", "event", "event", "done", "comment", "junk"]))
        if kind == "event":
            payload = orjson.dumps(draw(answer))
            prefix = draw(st.sampled_from([b"data: ", b"data:", b"event: x\ndata: "]))
            parts.append(prefix + payload)
        elif kind == "done":
            parts.append(b"data: [DONE]")
        elif kind == "comment":
            parts.append(b": keep-alive")
        else:
            parts.append(draw(st.binary(max_size=30)))
        parts.append(draw(st.sampled_from(_SEPARATORS)))
    body = b"".join(parts)
    if body and draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """(body, content type, content encoding)."""
    kind = draw(st.sampled_from(["json", "json", "json", "sse", "sse", "noise", "json_value"]))
    if kind == "json":
        body = orjson.dumps(draw(answer))
        ctype = draw(st.sampled_from(["application/json", "", "text/plain"]))
    elif kind == "sse":
        body = draw(sse_stream())
        ctype = draw(st.sampled_from(["text/event-stream", "text/event-stream; charset=utf-8"]))
    elif kind == "json_value":
        body = orjson.dumps(draw(json_values))
        ctype = "application/json"
    else:
        body = draw(st.binary(max_size=200))
        ctype = draw(st.sampled_from(["application/json", "text/event-stream", ""]))
    encoding = draw(st.sampled_from(["", "", "", "", "", "gzip", "deflate", "br", "x-gzip"]))
    if encoding in ("gzip", "x-gzip") and draw(st.booleans()):
        body = gzip.compress(body)
    elif encoding == "deflate" and draw(st.booleans()):
        body = zlib.compress(body)
    return body, ctype, encoding


@st.composite
def captures(draw: st.DrawFn) -> Capture:
    body, ctype, encoding = draw(bodies())
    status = draw(st.sampled_from([200, 200, 200, 200, 200, 201, None, 400, 429, 503]))
    times = sorted(draw(st.lists(st.integers(0, max(len(body), 1)), max_size=6)))
    latency = draw(st.floats(0, 100, allow_nan=False))
    return Capture(
        started=0.0,
        status=status,
        content_type=ctype,
        content_encoding=encoding,
        body=bytearray(body),
        body_truncated=draw(st.booleans()),
        chunk_times=[(n, latency * i / 8) for i, n in enumerate(times)],
        latency_s=latency,
        error_type=draw(st.one_of(st.none(), st.none(), st.sampled_from(ERROR_TYPES))),
        error=draw(st.one_of(st.none(), st.text(max_size=20))),
        attempts=draw(st.integers(1, 5)),
    )


requests = st.fixed_dictionaries(
    {"model": _maybe(st.text(max_size=10))},
    optional={
        "stream": _maybe(st.booleans()),
        "messages": _maybe(
            st.lists(
                _maybe(st.fixed_dictionaries({"role": st.just("user"), "content": json_values}))
            )
        ),
        "prompt": json_values,
        "input": json_values,
    },
)
