import gzip

import orjson
import pytest

from shadoweval.protocols.openai import iter_sse, parse_answer
from shadoweval.types import Capture


def cap(
    body: bytes, content_type: str = "application/json", status: int = 200, **kw: object
) -> Capture:
    c = Capture(
        started=0.0, status=status, content_type=content_type, body=bytearray(body), latency_s=1.0
    )
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def sse(*events: object) -> bytes:
    out = b""
    for e in events:
        out += b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n"
    return out


def chunk(
    content: str | None = None, finish: str | None = None, **extra: object
) -> dict[str, object]:
    delta = {"content": content} if content is not None else {}
    return {
        "model": "m1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def test_iter_sse_handles_crlf_multiline_and_comments() -> None:
    data = b": comment\r\n\r\ndata: a\r\ndata: b\r\n\r\nevent: x\ndata:c\n\ndata: tail"
    assert [p for _, p in iter_sse(data)] == [b"a\nb", b"c", b"tail"]


def test_chat_json_answer() -> None:
    body = orjson.dumps(
        {
            "model": "m1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 3,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        }
    )
    out = parse_answer("chat", {}, cap(body), upstream="u", role="primary")
    assert (out.model, out.output_text, out.finish_reason, out.error_type) == (
        "m1",
        "hi",
        "stop",
        None,
    )
    assert out.usage is not None
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage.cached_input_tokens) == (
        3,
        1,
        2,
    )
    assert not out.usage.estimated


def test_chat_stream_text_usage_and_ttft() -> None:
    body = sse(chunk(""), chunk("Hel"), chunk("lo"), chunk(finish="stop"),
               {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}, b"[DONE]")  # fmt: skip
    events = list(iter_sse(body))
    # The empty role chunk arrives at 0.1 s, the first real token at 0.3 s.
    times = [(events[0][0], 0.1), (events[1][0], 0.3), (len(body), 0.9)]
    out = parse_answer(
        "chat",
        {"stream": True},
        cap(body, "text/event-stream", chunk_times=times),
        upstream="u",
        role="candidate",
    )
    assert out.output_text == "Hello"
    assert out.ttft_s == 0.3
    assert out.usage is not None and out.usage.output_tokens == 2
    assert out.error_type is None and out.stream


def test_stream_without_done_is_truncated() -> None:
    body = sse(chunk("Hel"), chunk("lo"))
    out = parse_answer(
        "chat", {"stream": True}, cap(body, "text/event-stream"), upstream="u", role="candidate"
    )
    assert out.error_type == "truncated_stream" and out.truncated
    assert out.output_text == "Hello"


def test_missing_usage_is_estimated_and_marked() -> None:
    body = sse(chunk("four score and seven"), chunk(finish="stop"), b"[DONE]")
    req = {"stream": True, "messages": [{"role": "user", "content": "12345678"}]}
    out = parse_answer("chat", req, cap(body, "text/event-stream"), upstream="u", role="candidate")
    assert out.usage is not None and out.usage.estimated
    assert out.usage.input_tokens == 2 and out.usage.output_tokens == 5


def test_tool_call_deltas_are_joined() -> None:
    body = sse(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "function": {"name": "get", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
        b"[DONE]",
    )
    out = parse_answer(
        "chat", {"stream": True}, cap(body, "text/event-stream"), upstream="u", role="candidate"
    )
    assert out.tool_calls == [{"id": "c1", "name": "get", "arguments": '{"a": 1}'}]
    assert out.finish_reason == "tool_calls"


def test_responses_stream_and_json() -> None:
    done = {"model": "r1", "status": "completed", "usage": {"input_tokens": 4, "output_tokens": 2},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi there"}]}]}  # fmt: skip
    body = sse({"type": "response.created", "response": {"model": "r1"}},
               {"type": "response.output_text.delta", "delta": "Hi"},
               {"type": "response.output_text.delta", "delta": " there"},
               {"type": "response.completed", "response": done})  # fmt: skip
    out = parse_answer(
        "responses",
        {"stream": True},
        cap(body, "text/event-stream"),
        upstream="u",
        role="candidate",
    )
    assert (out.output_text, out.model, out.finish_reason) == ("Hi there", "r1", "completed")
    assert out.usage is not None and out.usage.output_tokens == 2
    out = parse_answer("responses", {}, cap(orjson.dumps(done)), upstream="u", role="candidate")
    assert out.output_text == "Hi there"


def test_completions_and_embeddings() -> None:
    body = orjson.dumps(
        {"model": "c", "choices": [{"index": 0, "text": "abc", "finish_reason": "length"}]}
    )
    out = parse_answer("completions", {}, cap(body), upstream="u", role="primary")
    assert (out.output_text, out.finish_reason) == ("abc", "length")
    body = orjson.dumps(
        {"model": "e", "data": [{"embedding": [0.1, 0.2, 0.3]}], "usage": {"prompt_tokens": 3}}
    )
    out = parse_answer("embeddings", {}, cap(body), upstream="u", role="primary")
    assert out.output_text is None and out.extra == {"embeddings": 1, "dims": 3}


def test_gzip_body_is_decoded() -> None:
    body = gzip.compress(orjson.dumps({"choices": [{"index": 0, "message": {"content": "zip"}}]}))
    out = parse_answer("chat", {}, cap(body, content_encoding="gzip"), upstream="u", role="primary")
    assert out.output_text == "zip"


@pytest.mark.parametrize("body", [b"\x00garbage", b"[1, 2]", b'"str"'])
def test_garbage_is_invalid_response(body: bytes) -> None:
    out = parse_answer("chat", {}, cap(body), upstream="u", role="candidate")
    assert out.error_type == "invalid_response"


def test_http_errors_are_classified() -> None:
    err = orjson.dumps({"error": {"message": "slow down"}})
    assert (
        parse_answer("chat", {}, cap(err, status=429), upstream="u", role="candidate").error_type
        == "http_429"
    )
    out = parse_answer("chat", {}, cap(err, status=503), upstream="u", role="candidate")
    assert (out.error_type, out.error) == ("http_5xx", "slow down")
    assert (
        parse_answer("chat", {}, cap(err, status=400), upstream="u", role="candidate").error_type
        == "http_4xx"
    )


def test_no_response_keeps_capture_error() -> None:
    c = Capture(started=0.0, error_type="connect", error="refused")
    out = parse_answer("chat", {}, c, upstream="u", role="candidate")
    assert (out.status, out.error_type, out.error) == (None, "connect", "refused")
