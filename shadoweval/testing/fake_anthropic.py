"""Anthropic Messages answers for the fake upstream (``POST /v1/messages``): a message, or
its event stream as Anthropic sends it (message_start, content blocks with deltas,
message_delta with the stop reason and output usage, message_stop). With ``tools`` in the
request the answer is a ``tool_use`` block calling the first tool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


def _sse(kind: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _usage(usage: dict[str, int]) -> dict[str, int]:
    return {
        "input_tokens": usage["prompt_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": usage["completion_tokens"],
    }


def _tool(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        name = tools[0].get("name")
        return name if isinstance(name, str) else "tool"
    return None


def message(model: str, answer: str, usage: dict[str, int], body: dict[str, Any]) -> dict[str, Any]:
    tool = _tool(body)
    content: list[dict[str, Any]]
    if tool is not None:
        content = [{"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {"q": answer}}]
    else:
        content = [{"type": "text", "text": answer}]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if tool is not None else "end_turn",
        "stop_sequence": None,
        "usage": _usage(usage),
    }


def events(
    model: str, words: list[str], usage: dict[str, int], body: dict[str, Any]
) -> Iterator[bytes]:
    tool = _tool(body)
    start_usage = {**_usage(usage), "output_tokens": 1}
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    if tool is not None:
        block = {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {}}
        yield _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
        args = orjson.dumps({"q": " ".join(words)}).decode()
        for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _sse(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
    else:
        block = {"type": "text", "text": ""}
        yield _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
        yield _sse("ping", {"type": "ping"})
        for i, w in enumerate(words):
            delta = {"type": "text_delta", "text": w if i == 0 else " " + w}
            yield _sse(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["completion_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})
