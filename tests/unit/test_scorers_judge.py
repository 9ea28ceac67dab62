"""LLM-as-judge against fake OpenAI-compatible judges (the package's FakeUpstream)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from shadoweval.config.base import ConfigError
from shadoweval.score.base import Pair
from shadoweval.score.scorers.judge import VerdictError, parse_grade, parse_winner, render
from shadoweval.testing import FakeUpstream
from tests.score_helpers import build, by_side, one, pair_record


@dataclass
class PrefersLonger(FakeUpstream):
    """A consistent judge: the longer answer wins, whatever its position."""

    def answer_for(self, prompt: str) -> str:
        a = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", prompt, re.S)
        b = re.search(r"\[Answer B\]\n(.*?)\n\nWhich", prompt, re.S)
        assert a and b, prompt
        la, lb = len(a.group(1)), len(b.group(1))
        winner = "tie" if la == lb else "A" if la > lb else "B"
        return json.dumps({"winner": winner, "reason": "more complete"})


@dataclass
class Scripted(FakeUpstream):
    """Replies in order from a script (then repeats the last reply)."""

    replies: tuple[str, ...] = ()

    def answer_for(self, prompt: str) -> str:
        n = len([r for r in self.received if r.path == "/v1/chat/completions"])
        return self.replies[min(n, len(self.replies)) - 1]


def judge_cfg(fake: FakeUpstream, **extra: object) -> dict[str, object]:
    return {"judge": {"url": fake.url, "model": "judge-model", **extra}}


async def test_pairwise_both_orders_win_and_loss() -> None:
    fake = PrefersLonger()
    await fake.start()
    try:
        scorer = build(
            "judge_pairwise", judge_cfg(fake, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
        )
        win = one(await scorer.fn(Pair(pair_record("Paris.", "Paris is the capital of France."))))
        loss = one(await scorer.fn(Pair(pair_record("Paris is the capital of France.", "Paris."))))
    finally:
        await fake.stop()
    assert (win.value, win.label, win.side) == (1.0, "win", "pair")
    assert win.details is not None
    assert (win.details["candidate_as_b"], win.details["candidate_as_a"]) == ("win", "win")
    assert win.details["position_consistent"] is True and win.details["judge_calls"] == 2
    assert (loss.value, loss.label) == (0.0, "loss")
    # Both orders were asked: the candidate appears once as B, once as A.
    prompts = [r.body["messages"][-1]["content"] for r in fake.received]
    assert "[Answer A]\nParis.\n\n[Answer B]\nParis is the capital" in prompts[0] + prompts[1]
    assert (
        "[Answer A]\nParis is the capital of France.\n\n[Answer B]\nParis."
        in prompts[0] + prompts[1]
    )
    assert all(
        r.body["model"] == "judge-model" and r.body["temperature"] == 0.0 for r in fake.received
    )
    # Cost = tokens x price, from the usage the judge reported.
    tokens_in = win.details["input_tokens"]
    tokens_out = win.details["output_tokens"]
    assert tokens_in > 0 and tokens_out > 0 and win.details["tokens_estimated"] is False
    assert win.cost_usd == pytest.approx(tokens_in * 1e-6 + tokens_out * 2e-6)


async def test_pairwise_position_bias_cancels_to_a_tie() -> None:
    fake = FakeUpstream(style="fixed", text='{"winner": "A", "reason": "first is best"}')
    await fake.start()
    try:
        s = one(await build("judge_pairwise", judge_cfg(fake)).fn(Pair(pair_record("one", "two"))))
    finally:
        await fake.stop()
    assert (s.value, s.label) == (0.5, "tie")
    assert s.details is not None and s.details["position_consistent"] is False
    assert "changed with the order" in s.explanation


async def test_single_grading_scales_and_grades_the_configured_sides() -> None:
    fake = FakeUpstream(style="fixed", text='{"score": 8, "reason": "mostly right"}')
    await fake.start()
    try:
        scorer = build("judge_single", judge_cfg(fake, single_sides=["primary", "candidate"]))
        scores = by_side(await scorer.fn(Pair(pair_record("Paris", "Lyon"))))
    finally:
        await fake.stop()
    assert scores["candidate"].value == pytest.approx((8 - 1) / 9)
    assert scores["primary"].value == pytest.approx((8 - 1) / 9)
    assert scores["candidate"].explanation == "judge grade 8/10: mostly right"
    prompt = fake.received[0].body["messages"][-1]["content"]
    assert (
        "[Question]\nCapital of France?" in prompt and '"score": <integer from 1 to 10>' in prompt
    )


async def test_invalid_verdicts_are_re_asked_then_unscored() -> None:
    fake = Scripted(
        replies=("Sure! I'd give it an 8.", '```json\n{"score": 7, "reason": "ok"}\n```')
    )
    await fake.start()
    try:
        s = one(await build("judge_single", judge_cfg(fake)).fn(Pair(pair_record("a", "b"))))
        assert s.value == pytest.approx(6 / 9)
        assert s.details is not None and s.details["judge_calls"] == 2
        # The re-ask quotes the problem and keeps the conversation.
        retry = fake.received[1].body["messages"]
        assert retry[-2] == {"role": "assistant", "content": "Sure! I'd give it an 8."}
        assert "not a JSON object" in retry[-1]["content"]
    finally:
        await fake.stop()
    fake = FakeUpstream(style="fixed", text='{"score": 42}')
    await fake.start()
    try:
        s = one(
            await build("judge_single", judge_cfg(fake, verdict_retries=1)).fn(
                Pair(pair_record("a", "b"))
            )
        )
    finally:
        await fake.stop()
    assert s.value is None and s.label == "judge_error"
    assert "outside 1..10" in s.explanation
    assert len(fake.received) == 2


async def test_transport_errors_are_retried_then_unscored() -> None:
    fake = FakeUpstream(style="fixed", text='{"score": 10, "reason": "x"}', fail_first=2)
    await fake.start()
    try:
        ok = one(
            await build("judge_single", judge_cfg(fake, max_retries=2)).fn(
                Pair(pair_record("a", "b"))
            )
        )
    finally:
        await fake.stop()
    assert ok.value == 1.0 and len(fake.received) == 3
    fake = FakeUpstream(mode="error")
    await fake.start()
    try:
        bad = one(
            await build("judge_single", judge_cfg(fake, max_retries=1)).fn(
                Pair(pair_record("a", "b"))
            )
        )
    finally:
        await fake.stop()
    assert bad.value is None and bad.label == "judge_error" and "HTTP 500" in bad.explanation


async def test_judge_concurrency_is_bounded() -> None:
    from shadoweval.testing import Latency

    fake = FakeUpstream(
        style="fixed", text='{"score": 5, "reason": "x"}', latency=Latency.fixed(0.05)
    )
    await fake.start()
    try:
        import asyncio

        scorer = build("judge_single", judge_cfg(fake, concurrency=2))
        await asyncio.gather(
            *(scorer.fn(Pair(pair_record("a", f"b{i}", pair_id=f"r{i}:c"))) for i in range(6))
        )
    finally:
        await fake.stop()
    starts = sorted(r.at for r in fake.received)
    assert len(starts) == 6
    # At most 2 in flight: the 3rd request starts only after one of the first two finished.
    assert starts[2] - starts[0] >= 0.04


def test_verdict_parsing_is_strict() -> None:
    assert parse_grade('{"score": 3, "reason": "r"}', 1, 10) == (3.0, "r")
    assert parse_winner('```json\n{"winner": "b"}\n```') == ("B", "")
    for bad in (
        'The score is {"score": 3}',
        '{"score": true}',
        '{"score": "3"}',
        "[3]",
        '{"score": 0}',
    ):
        with pytest.raises(VerdictError):
            parse_grade(bad, 1, 10)
    with pytest.raises(VerdictError):
        parse_winner('{"winner": "both"}')


def test_render_fills_known_placeholders_only() -> None:
    out = render('Q: {question} -> {"score": {scale_max}} {unknown}', question="why?", scale_max=5)
    assert out == 'Q: why? -> {"score": 5} {unknown}'


def test_judge_needs_a_url_and_has_its_sample_rate() -> None:
    with pytest.raises(ConfigError, match=r"judge\.url is required"):
        build("judge_single")
    scorer = build("judge_pairwise", {"judge": {"url": "http://127.0.0.1:9", "sample_rate": 0.25}})
    assert scorer.sample_rate == 0.25
    sampled = sum(scorer.sampled(f"req{i}:cand") for i in range(4000))
    assert 850 < sampled < 1150
    # Stable: the same pair gets the same decision every time (re-deliveries re-score alike).
    assert [scorer.sampled(f"req{i}:cand") for i in range(50)] == [
        scorer.sampled(f"req{i}:cand") for i in range(50)
    ]


async def test_json_schema_sends_the_verdicts_schema() -> None:
    fake = FakeUpstream(style="fixed", text='{"score": 8, "reason": "mostly right"}')
    await fake.start()
    try:
        scorer = build("judge_single", judge_cfg(fake, json_schema=True, json_mode=True))
        await scorer.fn(Pair(pair_record("Paris", "Lyon")))
    finally:
        await fake.stop()
    fmt = fake.received[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["score", "reason"]
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert schema["additionalProperties"] is False
