"""The Anthropic Messages protocol (``POST /v1/messages``): the answer's text, tool use
blocks, stop reason and usage, from a JSON message or its event stream.

Anthropic counts input in three parts: ``input_tokens`` (not cached),
``cache_read_input_tokens`` and ``cache_creation_input_tokens``. The record's
``input_tokens`` is their sum, as OpenAI's ``prompt_tokens`` includes cached tokens;
``cached_input_tokens`` is the read part and ``cache_write_input_tokens`` the written part,
so pricing can charge each at its own rate. Runs off the caller's path, like
``protocols/openai.py``, whose accumulator it fills.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from shadoweval.types import Json, Usage

if TYPE_CHECKING:
    from shadoweval.protocols.openai import Accumulator


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def usage(obj: Any, previous: Usage | None = None) -> Usage | None:
    """Usage of a message (or of a stream's message_start, completed by message_delta's)."""
    if not isinstance(obj, dict):
        return previous
    fresh = _count(obj.get("input_tokens"))
    read = _count(obj.get("cache_read_input_tokens"))
    write = _count(obj.get("cache_creation_input_tokens"))
    out = _count(obj.get("output_tokens"))
    if previous is not None:
        # message_delta carries the final output count (and, from some servers, input again).
        return Usage(
            input_tokens=previous.input_tokens
            if fresh is None
            else fresh + (read or 0) + (write or 0),
            output_tokens=out if out is not None else previous.output_tokens,
            cached_input_tokens=previous.cached_input_tokens if read is None else read,
            cache_write_input_tokens=previous.cache_write_input_tokens if write is None else write,
        )
    total = None if fresh is None else fresh + (read or 0) + (write or 0)
    return Usage(
        input_tokens=total,
        output_tokens=out,
        cached_input_tokens=read,
        cache_write_input_tokens=write,
    )


def message_object(obj: Json, acc: Accumulator) -> None:
    """A whole (non-streamed) message."""
    acc.model = obj.get("model") if isinstance(obj.get("model"), str) else None
    acc.usage = usage(obj.get("usage"))
    stop = obj.get("stop_reason")
    acc.finish_reason = stop if isinstance(stop, str) else None
    content = obj.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            acc.text.append(block["text"])
        elif block.get("type") == "tool_use":
            acc.tool_calls[len(acc.tool_calls)] = _tool_call(
                block, orjson.dumps(block.get("input", {})).decode()
            )


def _tool_call(block: Json, arguments: str) -> Json:
    return {
        "id": block.get("id") if isinstance(block.get("id"), str) else None,
        "name": block.get("name") if isinstance(block.get("name"), str) else None,
        "arguments": arguments,
    }


def stream_event(event: Json, offset: int, acc: Accumulator) -> str | None:
    """One event of a Messages stream; returns an error message for an error event."""
    kind = event.get("type")
    if kind == "message_start":
        message = _dict(event.get("message"))
        if isinstance(message.get("model"), str):
            acc.model = message["model"]
        acc.usage = usage(message.get("usage"))
    elif kind == "content_block_start":
        block = _dict(event.get("content_block"))
        index = _count(event.get("index"))
        if block.get("type") == "tool_use":
            acc.tool_calls[index if index is not None else len(acc.tool_calls)] = _tool_call(
                block, ""
            )
            acc._mark(offset)
    elif kind == "content_block_delta":
        delta = _dict(event.get("delta"))
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            if delta["text"]:
                acc.text.append(delta["text"])
                acc._mark(offset)
        elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            index = _count(event.get("index"))
            call = acc.tool_calls.get(index if index is not None else len(acc.tool_calls) - 1)
            if call is not None:
                call["arguments"] += delta["partial_json"]
    elif kind == "message_delta":
        stop = _dict(event.get("delta")).get("stop_reason")
        if isinstance(stop, str):
            acc.finish_reason = stop
        acc.usage = usage(event.get("usage"), acc.usage or Usage())
    elif kind == "message_stop":
        acc.done = True
    elif kind == "error":
        err = _dict(event.get("error"))
        text = err.get("message")
        return f"stream carried an error event: {text if isinstance(text, str) else str(err)[:200]}"
    return None
