"""Responses requests that continue state stored on the primary: a candidate does not have
that state, so it is skipped (counted) or sent and marked; candidates never store."""

from __future__ import annotations

from typing import Any

import openai

from shadoweval.testing import FakeUpstream, running_stack


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
            model="prod-model", input="and then?", previous_response_id="resp_fake"
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
