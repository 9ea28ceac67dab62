"""Campaign admission on a fake clock: match rules, schedules, budgets and their day, the
gauges and the admin view built from them, the judge's budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shadoweval import sinks
from shadoweval.campaign import Campaign, DailySpend, Match, candidates_view, utc_day
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Candidate, CandidateMatch, parse
from shadoweval.config.scorer import ScorerSpec, parse_scorer
from shadoweval.metrics import CANDIDATE_STATES, DROP_REASONS, Metrics, ScoreMetrics
from shadoweval.pricing import PriceTable
from shadoweval.proxy.shadow import ShadowDispatcher, ShadowJob
from shadoweval.score import registry
from shadoweval.score.base import Pair, ScorerContext
from shadoweval.testing import FakeUpstream
from tests.score_helpers import pair_record

T0 = datetime(2026, 12, 7, 23, 0, tzinfo=UTC).timestamp()  # 23:00 UTC


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def candidate(**extra: Any) -> Candidate:
    return Candidate.model_validate({"name": "c", "url": "http://127.0.0.1:1", **extra})


def test_match_on_model_globs_route_task_and_headers() -> None:
    m = Match(
        CandidateMatch(
            models=["gpt-4o", "gpt-4o-2024-*"],
            routes=["chat"],
            tasks=["support-*"],
            headers={"X-Tenant": "acme"},
        )
    )
    ok: dict[str, str] = {"x-tenant": "acme"}
    assert m("chat", "gpt-4o", "support-fr", ok)
    assert m("chat", "gpt-4o-2024-08-06", "support-fr", ok)
    assert not m("chat", "gpt-4o-mini", "support-fr", ok)  # exact: no prefix match
    assert not m("responses", "gpt-4o", "support-fr", ok)
    assert not m("chat", "gpt-4o", "sales", ok)
    assert not m("chat", "gpt-4o", None, ok)
    assert not m("chat", "gpt-4o", "support-fr", {"x-tenant": "other"})
    assert not m("chat", None, "support-fr", ok)  # no model (unparsable body): unmatched
    everything = Match(CandidateMatch())
    assert everything.everything and not everything.needs_model
    assert everything("chat", None, None, {})


def test_schedule_window_on_the_clock() -> None:
    clock = FakeClock()
    c = Campaign(
        candidate(schedule={"start": "2026-12-08T00:00:00", "end": "2026-12-09T00:00:00Z"}),
        clock=clock,
    )
    assert c.refusal() == "schedule" and c.state() == "paused_schedule"
    clock.now = T0 + 3600  # midnight: the window opens (a start without offset is UTC)
    assert c.refusal() is None and c.state() == "active"
    clock.now = T0 + 3600 + 86_400
    assert c.refusal() == "schedule"


def test_a_duration_counts_from_when_the_candidate_was_taken_on() -> None:
    clock = FakeClock()
    c = Campaign(candidate(schedule={"duration": "90m"}), clock=clock)
    clock.now = T0 + 89 * 60
    assert c.refusal() is None
    clock.now = T0 + 90 * 60
    assert c.refusal() == "schedule"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"end": "2026-12-08T00:00:00Z", "duration": "1d"}, "either end or duration"),
        ({"duration": "soon"}, "must be a duration"),
        ({"start": "2026-12-08T00:00:00Z", "end": "2026-12-07T00:00:00Z"}, "end must be after"),
    ],
)
def test_bad_schedules_name_the_key(schedule: dict[str, str], message: str) -> None:
    raw = {"primary": {"url": "http://127.0.0.1:1"}, "candidates": [candidate_raw(schedule)]}
    with pytest.raises(ConfigError, match=message) as err:
        parse(raw)
    assert "candidates.0.schedule" in str(err.value)


def candidate_raw(schedule: dict[str, str]) -> dict[str, Any]:
    return {"name": "c", "url": "http://127.0.0.1:2", "schedule": schedule}


def test_the_day_rolls_at_utc_midnight() -> None:
    clock = FakeClock()
    spend = DailySpend(1.0, clock)
    spend.add(0.6)
    spend.add(0.5)
    assert spend.exhausted() and spend.remaining() == 0.0
    clock.now = T0 + 3599  # 23:59:59 UTC: still the same day
    assert spend.exhausted()
    clock.now = T0 + 3600
    assert utc_day(clock.now) == utc_day(T0) + 1
    assert not spend.exhausted() and spend.remaining() == 1.0


def test_usd_budget_stops_after_the_answer_that_crosses_it() -> None:
    clock = FakeClock()
    c = Campaign(candidate(budget={"usd_per_day": 1.0}), clock=clock)
    for _ in range(3):
        assert c.begin() is None
        c.end(0.4, paired=True)
    # 1.2 spent: the third answer crossed the cap (in flight when it was reached).
    assert c.begin() == "budget" and c.state() == "paused_budget"
    assert c.pairs_today == 3
    clock.now = T0 + 3600  # a new UTC day
    assert c.begin() is None and c.pairs_today == 0


def test_request_and_pair_caps_are_reserved_before_sending() -> None:
    c = Campaign(candidate(budget={"max_requests": 3, "max_pairs": 2}), clock=FakeClock())
    assert c.begin() is None and c.begin() is None
    # Two in flight hold the two pairs: a third is refused before it is sent.
    assert c.begin() == "budget"
    c.end(None, paired=False)  # one failed without a pair: its pair slot is free again
    assert c.begin() is None  # the third (and last) request
    c.end(None, paired=True)
    c.end(None, paired=True)
    assert c.begin() == "budget"
    assert (c.requests, c.pairs, c.remaining_requests(), c.remaining_pairs()) == (3, 2, 0, 0)


def test_gauges_and_the_admin_view_read_the_state() -> None:
    clock = FakeClock()
    m = Metrics()
    cfgs = [candidate(budget={"usd_per_day": 1.0, "max_pairs": 5}), candidate(name="d")]
    campaigns = [Campaign(c, m, clock) for c in cfgs]
    campaigns[0].begin()
    campaigns[0].end(1.5, paired=True)
    m.queue_depth.labels("d").set(3)
    view = candidates_view(cfgs, m.registry.collect())["candidates"]
    assert view[0]["state"] == "paused_budget"
    assert view[0]["budget"]["usd_left_today"] == 0.0
    assert view[0]["budget"]["usd_spent_today"] == 1.5
    assert view[0]["budget"]["pairs_left"] == 4 and view[0]["pairs_today"] == 1
    assert view[1]["state"] == "active" and view[1]["queue_depth"] == 3
    assert view[1]["budget"]["usd_left_today"] is None  # no cap, no series
    assert (
        m.registry.get_sample_value(
            "shadoweval_candidate_state", {"upstream": "c", "state": "paused_budget"}
        )
        == 1.0
    )
    clock.now = T0 + 3600
    assert (
        m.registry.get_sample_value("shadoweval_candidate_budget_remaining_usd", {"upstream": "c"})
        == 1.0
    )
    assert set(CANDIDATE_STATES) >= {"active", "paused_budget", "paused_schedule"}
    assert {"budget", "schedule"} <= set(DROP_REASONS)


async def test_judge_scores_are_skipped_once_its_daily_budget_is_spent() -> None:
    fake = FakeUpstream(style="fixed", text='{"score": 8, "reason": "fine"}')
    await fake.start()
    try:
        cfg = parse_scorer(
            {
                "judge": {
                    "url": fake.url,
                    "price_input_per_mtok": 1000.0,  # a verdict costs cents
                    "budget": {"usd_per_day": 0.001},
                }
            },
            environ={},
        )
        metrics = ScoreMetrics()
        ctx = ScorerContext(cfg, metrics=metrics)
        scorer = registry.build(ScorerSpec(use="judge_single"), ctx, "test.judge_single")
        first = await scorer.fn(Pair(pair_record("Paris", "Paris")))
        second = await scorer.fn(Pair(pair_record("Paris", "Lyon")))
    finally:
        await fake.stop()
    assert len(list(first)) == 1 and list(second) == []  # skipped: no score, not a null one
    assert len(fake.received) == 1
    assert (
        metrics.registry.get_sample_value("shadoweval_judge_skipped_total", {"reason": "budget"})
        == 1.0
    )
    assert metrics.registry.get_sample_value("shadoweval_judge_budget_remaining_usd") == 0.0


async def test_the_dispatcher_counts_unmatched_and_drops_outside_the_window() -> None:
    clock = FakeClock()
    cfg = parse(
        {
            "primary": {"url": "http://127.0.0.1:1"},
            "sink": {"kind": "memory"},
            "candidates": [
                {
                    "name": "c",
                    "url": "http://127.0.0.1:2",
                    "match": {"models": ["gpt-4o"]},
                    "schedule": {"start": "2026-12-08T00:00:00Z"},
                }
            ],
        },
        environ={},
    )
    m = Metrics()
    d = ShadowDispatcher.from_config(
        cfg, sinks.build(cfg.sink, m), m, PriceTable(cfg.pricing), clock=clock
    )  # not started: a queued job stays queued

    def offer(model: str) -> ShadowJob | None:
        body = json.dumps({"model": model, "messages": []}).encode()
        return d.offer("chat", "/v1/chat/completions", {}, body)

    def count(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, {"upstream": "c", **labels})

    assert offer("gpt-4o") is None  # 23:00, the window opens at midnight
    assert count("shadoweval_shadow_dropped_total", reason="schedule") == 1
    assert offer("gpt-4o-mini") is None
    decisions = "shadoweval_shadow_sampling_decisions_total"
    assert count(decisions, decision="unmatched") == 1
    assert count(decisions, decision="in") == 1  # the first: matched, sampled, then dropped
    clock.now = T0 + 3600
    job = offer("gpt-4o")
    assert job is not None and job.request()["model"] == "gpt-4o"
    assert count("shadoweval_shadow_queue_depth") == 1
    assert count("shadoweval_candidate_state", state="active") == 1


def test_a_reload_can_carry_the_counters_over_and_drop_the_series() -> None:
    clock = FakeClock()
    m = Metrics()
    old = Campaign(candidate(budget={"max_pairs": 10}, schedule={"duration": "2h"}), m, clock)
    for _ in range(3):
        old.begin()
        old.end(0.5, paired=True)
    clock.now = T0 + 1800
    new = Campaign(candidate(budget={"max_pairs": 3}, schedule={"duration": "1h"}), m, clock)
    new.adopt(old)
    # The new cap applies to the old count; the duration still counts from the first start.
    assert new.refusal() == "budget" and new.end_ts == T0 + 3600
    assert new.spend.spent == 1.5 and new.pairs_today == 3
    value = m.registry.get_sample_value
    assert value("shadoweval_candidate_budget_remaining_pairs", {"upstream": "c"}) == 0
    Campaign.unexport(m, "c")
    assert value("shadoweval_candidate_state", {"upstream": "c", "state": "active"}) is None
    assert value("shadoweval_candidate_budget_remaining_pairs", {"upstream": "c"}) is None


async def test_an_azure_deployment_path_names_the_model_for_match() -> None:
    cfg = parse(
        {
            "primary": {"url": "http://127.0.0.1:1"},
            "sink": {"kind": "memory"},
            "candidates": [
                {"name": "c", "url": "http://127.0.0.1:2", "match": {"models": ["gpt-4o"]}}
            ],
        },
        environ={},
    )
    m = Metrics()
    d = ShadowDispatcher.from_config(cfg, sinks.build(cfg.sink, m), m, PriceTable(cfg.pricing))
    target = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    job = d.offer("chat", target, {}, b'{"messages": []}')
    assert job is not None and job.request()["model"] == "gpt-4o"
    other = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    assert d.offer("chat", other, {}, b'{"messages": []}') is None
