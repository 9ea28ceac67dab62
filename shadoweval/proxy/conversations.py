"""Rebuilt conversations for stateful Responses requests (``candidates[].stateful: rebuild``).

A Responses request with ``previous_response_id`` continues a conversation stored on the
primary. A candidate does not have it, but the proxy saw the earlier turns: for each primary
answer it keeps the turn (the request's input items and the answer's output items, under
the answer's id and linked to the turn it continued). A later request naming a kept id is
sent to the candidate as the whole conversation, without ``previous_response_id``. The store
is bounded in turns and bytes (least recently used first out, every eviction counted); a
request it cannot resolve is dropped as ``dropped{stateful}``.

Only what the dispatcher sees is kept: with sampling, only the sampled turns (a sampling key
on a conversation header keeps a conversation's turns together). Runs on the shadow side.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from shadoweval.metrics import Metrics
from shadoweval.protocols.openai import decoded_body, iter_sse
from shadoweval.types import Capture, Json

# Output items sent back as input: messages and function calls (their outputs arrive in
# the next request's input). Reasoning items and built-in tool calls refer to state of the
# primary's provider (encrypted content, item ids) and are left out.
_KEPT_OUTPUT = ("message", "function_call")


@dataclass(frozen=True, slots=True)
class Turn:
    previous: str | None
    # The items as JSON: what is kept is what is counted (parsed objects would take
    # several times the bytes the bound names).
    items: bytes


class ConversationStore:
    """Response id -> the turn it ended, bounded by ``max_turns`` and ``max_bytes``."""

    def __init__(self, max_turns: int, max_bytes: int, metrics: Metrics) -> None:
        self._max_turns = max_turns
        self._max_bytes = max_bytes
        self._turns: OrderedDict[str, Turn] = OrderedDict()
        self._bytes = 0
        self._evicted = metrics.conversation_evictions
        self._unkept = metrics.conversation_unkept
        self._turns_gauge = metrics.conversation_turns
        self._bytes_gauge = metrics.conversation_bytes

    def __len__(self) -> int:
        return len(self._turns)

    def remember(self, request: Json, capture: Capture) -> None:
        """Keep the turn a primary answer ended (nothing if it cannot be read whole)."""
        answer = _response_object(capture)
        response_id = answer.get("id") if answer is not None else None
        if answer is None or not isinstance(response_id, str) or not response_id:
            self._unkept.labels("unreadable_answer").inc()
            return
        inputs = input_items(request.get("input"))
        if inputs is None:
            self._unkept.labels("unresolvable_input").inc()
            return
        outputs = [_as_input(i) for i in answer.get("output") or () if _kept(i)]
        items = orjson.dumps([*inputs, *outputs])
        if len(items) > self._max_bytes:
            self._unkept.labels("too_large").inc()
            return
        previous = request.get("previous_response_id")
        self._put(response_id, Turn(previous if isinstance(previous, str) else None, items))

    def rebuild(self, request: Json) -> Json | None:
        """The request as a whole conversation without ``previous_response_id``; None when
        the proxy did not keep every earlier turn (or the request refers to other state)."""
        if request.get("conversation"):
            return None  # a Conversations API object: its items were never seen here
        inputs = input_items(request.get("input"))
        if inputs is None:
            return None
        chain: list[bytes] = []
        current = request.get("previous_response_id")
        seen: set[str] = set()
        while current is not None:
            if not isinstance(current, str) or current in seen:
                return None
            turn = self._turns.get(current)
            if turn is None:
                return None
            self._turns.move_to_end(current)  # a conversation in use stays
            seen.add(current)
            chain.append(turn.items)
            current = turn.previous
        items = [item for turn_items in reversed(chain) for item in orjson.loads(turn_items)]
        out = {k: v for k, v in request.items() if k != "previous_response_id"}
        out["input"] = [*items, *inputs]
        return out

    def _put(self, response_id: str, turn: Turn) -> None:
        old = self._turns.pop(response_id, None)
        if old is not None:
            self._bytes -= len(old.items)
        self._turns[response_id] = turn
        self._bytes += len(turn.items)
        while len(self._turns) > self._max_turns or self._bytes > self._max_bytes:
            _, evicted = self._turns.popitem(last=False)
            self._bytes -= len(evicted.items)
            self._evicted.inc()
        self._turns_gauge.set(len(self._turns))
        self._bytes_gauge.set(self._bytes)


def input_items(value: Any) -> tuple[Json, ...] | None:
    """A Responses ``input`` as a list of items (a string is one user message); None when
    it refers to items stored elsewhere (``item_reference``) or is not an input."""
    if isinstance(value, str):
        return ({"role": "user", "content": value},)
    if not isinstance(value, list):
        return None
    if any(not isinstance(i, dict) or i.get("type") == "item_reference" for i in value):
        return None
    return tuple(value)


def _kept(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") in _KEPT_OUTPUT


def _as_input(item: Json) -> Json:
    # Item ids name the primary's stored items; a candidate that stores nothing has none.
    return {k: v for k, v in item.items() if k != "id"}


def _response_object(capture: Capture) -> Json | None:
    """The primary's Responses object: the JSON answer, or a stream's final event."""
    if capture.status != 200 or capture.body_truncated or capture.error_type is not None:
        return None
    body, cut = decoded_body(capture)
    if cut:
        return None
    if "text/event-stream" not in capture.content_type.lower():
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None
    for _, data in iter_sse(body):
        if b'"response.completed"' not in data:
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if isinstance(event, dict) and event.get("type") == "response.completed":
            response = event.get("response")
            return response if isinstance(response, dict) else None
    return None
