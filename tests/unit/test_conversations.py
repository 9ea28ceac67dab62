"""The conversation store behind candidates[].stateful: rebuild: turns kept from primary
answers (JSON or streamed), chained into whole conversations, bounded and counted."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from shadoweval.metrics import Metrics
from shadoweval.proxy.candidate import merged_query
from shadoweval.proxy.conversations import ConversationStore
from shadoweval.types import Capture


def answer(response_id: str, text: str, *, stream: bool = False) -> Capture:
    obj = {
        "id": response_id,
        "object": "response",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "role": "assistant", "content": [text]},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""},
        ],
    }
    cap = Capture(started=0.0, limit=1 << 20)
    cap.status = 200
    if stream:
        cap.content_type = "text/event-stream"
        event = {"type": "response.completed", "response": obj}
        cap.keep(b'event: response.created\ndata: {"type":"response.created"}\n\n')
        cap.keep(b"event: response.completed\ndata: " + orjson.dumps(event) + b"\n\n")
    else:
        cap.content_type = "application/json"
        cap.keep(orjson.dumps(obj))
    return cap


def store(**bounds: Any) -> tuple[ConversationStore, Metrics]:
    metrics = Metrics(CollectorRegistry())
    bounds = {"max_turns": 100, "max_bytes": 1 << 20, **bounds}
    return ConversationStore(bounds["max_turns"], bounds["max_bytes"], metrics), metrics


def test_turns_chain_into_the_whole_conversation() -> None:
    s, _ = store()
    s.remember({"input": "one"}, answer("r1", "a1"))
    s.remember({"input": [{"role": "user", "content": "two"}], "previous_response_id": "r1"},
               answer("r2", "a2", stream=True))  # fmt: skip
    got = s.rebuild({"model": "m", "input": "three", "previous_response_id": "r2"})
    assert got is not None and "previous_response_id" not in got and got["model"] == "m"
    kinds = [(i.get("role"), i.get("type")) for i in got["input"]]
    # Reasoning items are the primary provider's: left out; item ids dropped.
    assert kinds == [
        ("user", None), ("assistant", "message"), (None, "function_call"),
        ("user", None), ("assistant", "message"), (None, "function_call"), ("user", None),
    ]  # fmt: skip
    assert all("id" not in i for i in got["input"])
    assert got["input"][-1] == {"role": "user", "content": "three"}


def test_what_cannot_be_resolved_is_none() -> None:
    s, metrics = store()
    s.remember({"input": "one"}, answer("r1", "a1"))
    assert s.rebuild({"input": "x", "previous_response_id": "nope"}) is None
    assert s.rebuild({"input": "x", "conversation": "conv_1"}) is None
    ref = [{"type": "item_reference", "id": "msg_9"}]
    assert s.rebuild({"input": ref, "previous_response_id": "r1"}) is None
    # A cut or failed answer is not kept (counted).
    cut = answer("r2", "a2")
    cut.body_truncated = True
    s.remember({"input": "two"}, cut)
    assert s.rebuild({"input": "x", "previous_response_id": "r2"}) is None
    unkept = metrics.registry.get_sample_value(
        "shadoweval_conversation_store_unkept_total", {"reason": "unreadable_answer"}
    )
    assert unkept == 1


def test_a_cycle_of_ids_is_not_followed() -> None:
    s, _ = store()
    s.remember({"input": "a", "previous_response_id": "r2"}, answer("r1", "x"))
    s.remember({"input": "b", "previous_response_id": "r1"}, answer("r2", "y"))
    assert s.rebuild({"input": "c", "previous_response_id": "r2"}) is None


def test_bounds_evict_the_least_recently_used() -> None:
    s, metrics = store(max_turns=2)
    for i in range(3):
        s.remember({"input": f"t{i}"}, answer(f"r{i}", "x"))
    assert len(s) == 2 and s.rebuild({"input": "x", "previous_response_id": "r0"}) is None
    get = metrics.registry.get_sample_value
    assert get("shadoweval_conversation_store_evictions_total") == 1
    size = len(orjson.dumps([{"role": "user", "content": "t2"}]))
    s2, m2 = store(max_bytes=size * 3)
    for i in range(10):
        s2.remember({"input": "y" * 200}, answer(f"q{i}", "x"))
    bytes_kept = m2.registry.get_sample_value("shadoweval_conversation_store_bytes")
    assert bytes_kept is not None and bytes_kept <= size * 3
    # One turn larger than the whole store is not kept.
    assert len(s2) <= 1


def test_the_caller_query_is_merged_with_the_candidates() -> None:
    assert merged_query("api-version=1&a=b", "") == "api-version=1&a=b"
    assert merged_query("api-version=1&a=b", "api-version=2") == "a=b&api-version=2"
    assert merged_query("", "api-version=2") == "api-version=2"
    # Caller credentials in a query never reach a candidate.
    assert merged_query("key=s&API-KEY=t&sig=u&x=1", "") == "x=1"
