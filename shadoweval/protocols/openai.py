"""The OpenAI-compatible protocol: which routes are understood, SSE framing, and turning a
captured answer into model / text / finish reason / usage / time to first token.

Runs off the caller's path (in the shadow workers), on bounded captures.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from shadoweval.protocols import anthropic
from shadoweval.types import Capture, ErrorType, Json, Outcome, Role, Route, Usage


class InvalidRequest(ValueError):
    """The request body is not a JSON object this route can be mirrored with."""


# orjson writes at most 254 levels of nesting and a pair record adds one above the request:
# a deeper request could be read but never sent to a candidate nor recorded.
MAX_REQUEST_DEPTH = 253


def parse_request(body: bytes) -> Json:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("body must be a JSON object")
    # Depth can only exceed the limit with that many brackets (a cheap count in C); only
    # then is the request written once to check, wrapped one level as in a record.
    if body.count(b"{") + body.count(b"[") > MAX_REQUEST_DEPTH:
        try:
            orjson.dumps([obj])
        except orjson.JSONEncodeError:
            raise InvalidRequest(
                f"body nests deeper than {MAX_REQUEST_DEPTH} levels; it cannot be mirrored"
            ) from None
    return obj


def is_stream(request: Json) -> bool:
    return request.get("stream") is True


def error_type_for_status(status: int) -> ErrorType | None:
    if status < 400:
        return None
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


_BLANK_LINES = (b"\n\n", b"\r\n\r\n", b"\r\r")  # SSE event separators


def iter_sse(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(end offset, data payload)`` for each SSE event (blank-line separated).

    Multi-line ``data:`` fields are joined with ``\\n`` as the SSE spec says; comments and
    other fields are ignored. An unterminated last event is yielded too (it may be cut).
    """
    pos = 0
    size = len(data)
    # Where each separator occurs next, searched again only once passed: every byte is
    # scanned once per separator. (A fresh search per event for a separator the stream
    # never uses rescans the rest of it each time: quadratic, seconds for 1 MiB.)
    upcoming = [data.find(s) for s in _BLANK_LINES]
    while pos < size:
        end, sep = size, 0
        for i, blank in enumerate(_BLANK_LINES):
            idx = upcoming[i]
            if 0 <= idx < pos:
                idx = upcoming[i] = data.find(blank, pos)
            if idx != -1 and idx < end:
                end, sep = idx, len(blank)
        block = data[pos:end]
        pos = end + sep if sep else size
        payload: list[bytes] = []
        for line in block.splitlines():
            if line.startswith(b"data:"):
                value = line[5:]
                payload.append(value[1:] if value.startswith(b" ") else value)
        if payload:
            yield (pos, b"\n".join(payload))


def decoded_body(capture: Capture) -> tuple[bytes, bool]:
    """The body as text bytes, and whether decoding stopped at the capture limit: a
    compressed body inflates to at most ``capture.limit`` bytes (a gzip bomb costs what a
    plain answer of that size costs, whatever its ratio)."""
    body = bytes(capture.body)
    enc = capture.content_encoding.lower()
    if enc in ("gzip", "x-gzip", "deflate"):
        wbits = 47 if enc != "deflate" else 15  # 47: auto-detect gzip/zlib headers
        inflate = zlib.decompressobj(wbits)
        try:
            out = inflate.decompress(body, capture.limit)
        except zlib.error:
            return b"", False
        return out, bool(inflate.unconsumed_tail)
    return body, False


def _leading_model(body: bytes) -> str | None:
    """The model of a JSON answer cut by the capture limit (it comes first)."""
    at = body.find(b'"model"', 0, 4096)
    if at == -1:
        return None
    start = body.find(b'"', body.find(b":", at) + 1)
    end = body.find(b'"', start + 1)
    if start == -1 or end == -1:
        return None
    try:
        return _str(orjson.loads(body[start : end + 1]))
    except orjson.JSONDecodeError:
        return None


def _tail_events(tail: bytes) -> bytes:
    """The whole SSE events of a tail that starts somewhere inside one."""
    starts = [i + len(sep) for sep in _BLANK_LINES if (i := tail.find(sep)) != -1]
    return tail[min(starts) :] if starts else b""


def _closing_usage(tail: bytes) -> Usage | None:
    """The usage object of a JSON answer from its last bytes (it closes the answer)."""
    at = tail.rfind(b'"usage"')
    start = tail.find(b"{", at) if at != -1 else -1
    if start == -1:
        return None
    depth = 0
    for end in range(start, len(tail)):
        depth += {123: 1, 125: -1}.get(tail[end], 0)  # { and }
        if depth == 0:
            try:
                return _usage(orjson.loads(tail[start : end + 1]))
            except orjson.JSONDecodeError:
                return None
    return None


def _time_at(capture: Capture, offset: int) -> float | None:
    """Seconds since the request started when byte ``offset`` of the body had arrived."""
    times = capture.chunk_times
    if not times:
        return None
    idx = bisect.bisect_left(times, offset, key=lambda t: t[0])
    return times[min(idx, len(times) - 1)][1]


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English BPE vocabularies; only used when the upstream
    # reports no usage, and the record says so.
    return math.ceil(len(text) / 4) if text else 0


# Upstream answers and caller requests are untrusted JSON: every field may have any type.
# These accessors return the expected type or an empty/None value, so parsing never raises.
def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    """A token count: a non-negative int (bool is an int in Python, but not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def request_text(request: Json) -> str:
    parts: list[str] = []
    for msg in _list(request.get("messages")):
        if isinstance(msg, dict):
            content = msg.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    c["text"] for c in content if isinstance(c, dict) and _str(c.get("text"))
                )
    for key in ("prompt", "input", "instructions", "system"):
        value = request.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
    return "\n".join(parts)


def _usage(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    inp = obj.get("prompt_tokens", obj.get("input_tokens"))
    out = obj.get("completion_tokens", obj.get("output_tokens"))
    details = obj.get("prompt_tokens_details") or obj.get("input_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_count(inp), output_tokens=_count(out), cached_input_tokens=_count(cached)
    )


class Accumulator:
    """Collects text, tool calls, finish reason, usage and model across one answer."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: dict[int, Json] = {}
        self.first_token_offset: int | None = None
        self.done = False
        self.extra: Json = {}

    def add_tool_call_delta(self, delta: Json) -> None:
        idx = _count(delta.get("index"))
        if idx is None:
            idx = len(self.tool_calls)
        call = self.tool_calls.setdefault(idx, {"id": None, "name": None, "arguments": ""})
        if _str(delta.get("id")):
            call["id"] = delta["id"]
        fn = _dict(delta.get("function"))
        if _str(fn.get("name")):
            call["name"] = fn["name"]
        if isinstance(fn.get("arguments"), str):
            call["arguments"] += fn["arguments"]

    def chat_choice(self, choice: Json, offset: int, streaming: bool) -> None:
        if choice.get("index", 0) != 0:
            return
        part = choice.get("delta") if streaming else choice.get("message")
        if isinstance(part, dict):
            content = part.get("content")
            if isinstance(content, str) and content:
                self.text.append(content)
                self._mark(offset)
            for call in _list(part.get("tool_calls")):
                if isinstance(call, dict):
                    self.add_tool_call_delta(call)
                    self._mark(offset)
        if _str(choice.get("finish_reason")):
            self.finish_reason = choice["finish_reason"]

    def completion_choice(self, choice: Json, offset: int) -> None:
        if choice.get("index", 0) != 0:
            return
        text = choice.get("text")
        if isinstance(text, str) and text:
            self.text.append(text)
            self._mark(offset)
        if _str(choice.get("finish_reason")):
            self.finish_reason = choice["finish_reason"]

    def responses_object(self, resp: Json) -> None:
        self.model = _str(resp.get("model")) or self.model
        self.usage = _usage(resp.get("usage")) or self.usage
        status = resp.get("status")
        if isinstance(status, str):
            self.finish_reason = status
        texts: list[str] = []
        for item in _list(resp.get("output")):
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for c in _list(item.get("content")):
                    if isinstance(c, dict) and c.get("type") == "output_text":
                        texts.append(_str(c.get("text")) or "")
            elif item.get("type") == "function_call":
                self.tool_calls[len(self.tool_calls)] = {
                    "id": _str(item.get("call_id")),
                    "name": _str(item.get("name")),
                    "arguments": _str(item.get("arguments")) or "",
                }
        if texts and not self.text:
            self.text = texts

    def _mark(self, offset: int) -> None:
        if self.first_token_offset is None:
            self.first_token_offset = offset


def _parse_json_answer(route: Route, obj: Json, acc: Accumulator) -> None:
    if route == "messages":
        anthropic.message_object(obj, acc)
        return
    acc.model = obj.get("model") if isinstance(obj.get("model"), str) else None
    if route == "responses":
        acc.responses_object(obj)
        return
    acc.usage = _usage(obj.get("usage"))
    if route == "embeddings":
        data = _list(obj.get("data"))
        first = data[0].get("embedding") if data and isinstance(data[0], dict) else None
        acc.extra = {"embeddings": len(data), "dims": len(first) if isinstance(first, list) else 0}
        return
    for choice in _list(obj.get("choices")):
        if isinstance(choice, dict):
            if route == "chat":
                acc.chat_choice(choice, 0, streaming=False)
            else:
                acc.completion_choice(choice, 0)


def _parse_stream(route: Route, body: bytes, acc: Accumulator) -> str | None:
    """Returns an error message when an event is not valid JSON."""
    for offset, data in iter_sse(body):
        if data.strip() == b"[DONE]":
            acc.done = True
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return "stream event is not valid JSON"
        if not isinstance(event, dict):
            continue
        if route == "messages":
            if (problem := anthropic.stream_event(event, offset, acc)) is not None:
                return problem
            continue
        if route == "responses":
            kind = event.get("type")
            if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
                acc.text.append(event["delta"])
                acc._mark(offset)
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                # responses_object only fills text when no delta carried any.
                acc.responses_object(_dict(event.get("response")))
                acc.done = True
            elif kind == "response.created":
                acc.model = _str(_dict(event.get("response")).get("model")) or acc.model
            continue
        if acc.model is None and isinstance(event.get("model"), str):
            acc.model = event["model"]
        if event.get("usage"):
            acc.usage = _usage(event["usage"]) or acc.usage
        if "error" in event and not event.get("choices"):
            return f"stream carried an error event: {str(event['error'])[:200]}"
        for choice in _list(event.get("choices")):
            if isinstance(choice, dict):
                if route == "chat":
                    acc.chat_choice(choice, offset, streaming=True)
                else:
                    acc.completion_choice(choice, offset)
    return None


def parse_answer(
    route: Route,
    request: Json,
    capture: Capture,
    *,
    upstream: str,
    role: Role,
) -> Outcome:
    """Turn a capture into an :class:`Outcome`; never raises on bad upstream data."""
    stream = is_stream(request)
    out = Outcome(
        upstream=upstream,
        role=role,
        status=capture.status,
        latency_s=capture.latency_s,
        stream=stream,
        error_type=capture.error_type,
        error=capture.error,
        truncated=capture.body_truncated or capture.error_type == "truncated_stream",
        attempts=capture.attempts,
    )
    if capture.status is None:
        return out
    if out.error_type is None:
        out.error_type = error_type_for_status(capture.status)
    body, decode_cut = decoded_body(capture)
    # The copy ends at the capture limit: what is missing is ours, not the upstream's.
    cut = out.capture_truncated = capture.body_truncated or decode_cut
    out.truncated = out.truncated or cut
    acc = Accumulator()
    is_sse = "text/event-stream" in capture.content_type.lower()
    problem: str | None = None
    if capture.status >= 400:
        out.error = out.error or _error_message(body)
        return out
    if is_sse:
        problem = _parse_stream(route, body, acc)
        if cut:
            problem = None  # the last event of the copy is cut in two
            if capture.tail and not decode_cut:
                end = Accumulator()  # the final events: usage, finish reason, [DONE]
                _parse_stream(route, _tail_events(bytes(capture.tail)), end)
                acc.usage = end.usage or acc.usage
                acc.finish_reason = end.finish_reason or acc.finish_reason
        elif not acc.done and out.error_type is None and route != "embeddings":
            # No [DONE] / response.completed: the stream was cut short.
            out.error_type = "truncated_stream"
            out.truncated = True
    else:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            _parse_json_answer(route, obj, acc)
        elif cut:
            acc.model = _leading_model(body)
            if capture.tail and not decode_cut:
                acc.usage = _closing_usage(bytes(capture.tail))
        else:
            problem = "answer is not a JSON object"
    if problem and out.error_type is None:
        out.error_type = "invalid_response"
        out.error = problem
    out.model = acc.model
    out.finish_reason = acc.finish_reason
    out.extra = acc.extra
    if route != "embeddings":
        out.output_text = "".join(acc.text)
    if acc.tool_calls:
        out.tool_calls = [acc.tool_calls[k] for k in sorted(acc.tool_calls)]
    if is_sse and acc.first_token_offset is not None:
        out.ttft_s = _time_at(capture, acc.first_token_offset)
    out.usage = acc.usage
    if out.usage is None or out.usage.output_tokens is None:
        out.usage = Usage(
            input_tokens=estimate_tokens(request_text(request)),
            output_tokens=estimate_tokens(out.output_text or ""),
            estimated=True,
        )
    return out


def _error_message(body: bytes) -> str:
    try:
        obj = orjson.loads(body)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:500]
    except orjson.JSONDecodeError:
        pass
    return body[:200].decode("utf-8", "replace")
