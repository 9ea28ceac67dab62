"""Responses requests that continue state stored on the primary: a candidate does not have
that state, so it is skipped (counted), sent and marked, or sent as the conversation rebuilt
from the turns the proxy kept; candidates never store."""

from __future__ import annotations

from typing import Any

import openai

from shadoweval.testing import FakeUpstream, running_stack
from tests.waiting import wait_for


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="caller-secret", max_retries=0)


def dropped(stack: Any, upstream: str, reason: str) -> float:
    registry = stack.proxy.metrics.registry
    value = registry.get_sample_value(
        "shadoweval_shadow_dropped_total", {"upstream": upstream, "reason": reason}
    )
    return value or 0.0


async def test_a_continuation_is_skipped_or_sent_and_marked(validate_pair: Any) -> None:
    skip, send = FakeUpstream(model="skip-model"), FakeUpstream(model="send-model")
    options = {"send": {"stateful": "send"}}
    async with running_stack(
        candidates={"skip": skip, "send": send}, candidate_options=options
    ) as stack:
        c = client(stack.url)
        await c.responses.create(model="prod-model", input="first turn")
        await c.responses.create(
            model="prod-model", input="and then?", previous_response_id="resp_elsewhere"
        )
        records = await stack.memory.wait_for(3)  # both for the first, one for the second
        for rec in records:
            validate_pair(rec)
        marked = [r for r in records if r.get("stateful")]
        assert [r["candidate"]["upstream"] for r in marked] == ["send"]
        assert dropped(stack, "skip", "stateful") == 1
        assert dropped(stack, "send", "stateful") == 0
    assert len(skip.received) == 1 and len(send.received) == 2
    # Candidates never keep what they were sent (the Responses API stores by default).
    assert all(r.body["store"] is False for r in skip.received + send.received)


def test_the_report_leaves_stateful_pairs_out(tmp_path: Any) -> None:
    import orjson

    from shadoweval.report.load import load
    from shadoweval.testing.synthetic import Upstream, generate

    pairs, _ = generate(Upstream("prod", role="primary"), [Upstream("cand")], 4)
    pairs[0]["stateful"] = True
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    ds = load([path])
    assert len(ds.pairs) == 3
    assert sum(v for k, v in ds.skipped.items() if k.startswith("stateful")) == 1


async def test_a_continuation_is_sent_as_the_conversation_the_proxy_kept(
    validate_pair: Any,
) -> None:
    cand = FakeUpstream(model="cand-model")
    options = {"rebuild": {"stateful": "rebuild"}}
    async with running_stack(candidates={"rebuild": cand}, candidate_options=options) as stack:
        c = client(stack.url)
        first = await c.responses.create(model="prod-model", input="first turn")
        second = await c.responses.create(
            model="prod-model",
            input=[{"role": "user", "content": "and then?"}],
            previous_response_id=first.id,
            instructions="Be brief.",
        )
        events = await c.responses.create(
            model="prod-model", input="streamed", previous_response_id=second.id, stream=True
        )
        third = [e async for e in events][-1].response  # type: ignore[union-attr]
        await c.responses.create(model="prod-model", input="last", previous_response_id=third.id)
        records = await stack.memory.wait_for(4)
        # One the proxy never saw: not resolvable, skipped and counted.
        await c.responses.create(model="prod-model", input="?", previous_response_id="resp_x")
        await wait_for(lambda: dropped(stack, "rebuild", "stateful") == 1, what="the drop")
    for rec in records:
        validate_pair(rec)
    assert [r.get("stateful") for r in records] == [None, "rebuilt", "rebuilt", "rebuilt"]
    bodies = [g.body for g in cand.received]
    assert len(bodies) == 4
    assert all("previous_response_id" not in b and b["store"] is False for b in bodies)

    def said(text: str) -> Any:  # the primary's answer as an input item (its id left out)
        content = [{"type": "output_text", "text": f"Echo: {text}", "annotations": []}]
        return {"type": "message", "role": "assistant", "status": "completed", "content": content}

    user = [{"role": "user", "content": t} for t in ("first turn", "and then?", "streamed", "last")]
    assert bodies[1]["input"] == [user[0], said("first turn"), user[1]]
    assert bodies[1]["instructions"] == "Be brief."  # this turn's own, as the API does
    # The streamed turn was kept from its response.completed event.
    assert bodies[3]["input"] == [
        user[0], said("first turn"), user[1], said("and then?"), user[2], said("streamed"), user[3]
    ]  # fmt: skip
    # The records keep the caller's request, marked: both sides answered one conversation.
    assert records[1]["request"]["previous_response_id"] == first.id


async def test_the_store_is_bounded_and_counts_evictions() -> None:
    cand = FakeUpstream(model="cand-model")
    options = {"rebuild": {"stateful": "rebuild"}}
    overrides = {"conversations": {"max_turns": 2}}
    async with running_stack(
        candidates={"rebuild": cand}, candidate_options=options, overrides=overrides
    ) as stack:
        c = client(stack.url)
        ids = [(await c.responses.create(model="m", input=f"turn {i}")).id for i in range(3)]
        await stack.memory.wait_for(3)
        await c.responses.create(model="m", input="x", previous_response_id=ids[0])  # evicted
        await c.responses.create(model="m", input="y", previous_response_id=ids[2])
        records = await stack.memory.wait_for(4)
        await wait_for(lambda: dropped(stack, "rebuild", "stateful") == 1, what="the drop")
        registry = stack.proxy.metrics.registry
        evictions = registry.get_sample_value("shadoweval_conversation_store_evictions_total")
        turns = registry.get_sample_value("shadoweval_conversation_store_turns")
    assert records[-1]["stateful"] == "rebuilt"
    assert evictions is not None and evictions >= 1
    assert turns == 2


def test_the_report_compares_rebuilt_pairs(tmp_path: Any) -> None:
    import orjson

    from shadoweval.report.load import load
    from shadoweval.testing.synthetic import Upstream, generate

    pairs, _ = generate(Upstream("prod", role="primary"), [Upstream("cand")], 4)
    pairs[0]["stateful"] = "rebuilt"
    pairs[1]["stateful"] = True
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    ds = load([path])
    assert len(ds.pairs) == 3
    assert sum(v for k, v in ds.skipped.items() if k.startswith("stateful")) == 1


async def test_with_the_shadow_worker_the_store_lives_in_the_worker(tmp_path: Any) -> None:
    from collections import Counter

    from shadoweval.records import iter_jsonl

    cand = FakeUpstream(model="cand-model")
    overrides = {
        "shadow_worker": {"enabled": True, "scheduling": "normal"},
        "sink": {"kind": "file", "path": str(tmp_path / "pairs.jsonl")},
    }
    options = {"rebuild": {"stateful": "rebuild"}}
    async with running_stack(
        candidates={"rebuild": cand}, candidate_options=options, overrides=overrides
    ) as stack:
        assert stack.proxy.dispatcher is None  # no store in the proxy process
        c = client(stack.url)
        first = await c.responses.create(model="prod-model", input="first turn")
        await c.responses.create(model="prod-model", input="next", previous_response_id=first.id)
        await wait_for(lambda: len(cand.received) == 2, what="both turns at the candidate")
    records = list(iter_jsonl([tmp_path / "pairs.jsonl"], Counter()))
    assert [r.get("stateful") for r in records] == [None, "rebuilt"]
    assert len(cand.received[1].body["input"]) == 3
