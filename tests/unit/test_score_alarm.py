"""The regression alarm: relative margin, family-wise alpha, scorers read from their info."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from shadoweval import stats
from shadoweval.config.base import ConfigError
from shadoweval.config.report import DecisionRules
from shadoweval.config.scorer import RegressionAlarm, parse_scorer
from shadoweval.metrics import ScoreMetrics
from shadoweval.score import registry
from shadoweval.score.alarm import Alarm, Configured, alpha_share, monitored
from shadoweval.score.base import Pair, Score, ScorerContext, Scores
from shadoweval.score.registry import DEFAULT_INFO, PREFERENCE, SAFETY_FLAG, ScorerInfo
from shadoweval.score.runner import ScoreRunner
from tests.score_helpers import pair_record

PER_SIDE = Configured("judge_single", "judge_single", DEFAULT_INFO)


def _alarm(configured: list[Configured], **cfg: Any) -> tuple[Alarm, ScoreMetrics]:
    metrics = ScoreMetrics(CollectorRegistry())
    alarm = Alarm(RegressionAlarm(**cfg), metrics)
    alarm.watch(configured)
    return alarm, metrics


def _feed_sides(
    alarm: Alarm, upstream: str, scorer: str, candidate: np.ndarray, baseline: np.ndarray
) -> None:
    for i, (c, b) in enumerate(zip(candidate, baseline, strict=True)):
        common = {"pair_id": f"r{i}:{upstream}", "request_id": f"r{i}", "upstream": upstream}
        for side, v in (("primary", b), ("candidate", c)):
            alarm.observe(**common, role="candidate", scorer=scorer, side=side, value=float(v))


def test_the_default_margin_is_the_reports() -> None:
    assert RegressionAlarm().max_drop == DecisionRules().quality_max_drop


def test_an_absolute_delta_is_refused_with_the_new_unit() -> None:
    with pytest.raises(ConfigError) as err:
        parse_scorer({"regression": {"delta": 0.05}}, environ={})
    assert "regression" in str(err.value) and "relative" in str(err.value)
    assert "max_drop" in str(err.value)


def test_a_10_percent_relative_drop_alarms_at_the_defaults() -> None:
    # Binary scores from 0.6 (the hardest baseline: a 6-point drop) and continuous ones
    # from 0.8, 20,000 pairs each, sides independent.
    rng = np.random.default_rng(16)
    alarm, metrics = _alarm([PER_SIDE])
    n = 20_000
    b = (rng.random(n) < 0.6).astype(float)
    c = (rng.random(n) < 0.54).astype(float)
    _feed_sides(alarm, "binary", "judge_single", c, b)
    k = 4.0
    b = rng.beta(0.8 * k, 0.2 * k, n)
    c = rng.beta(0.72 * k, 0.28 * k, n)
    _feed_sides(alarm, "continuous", "judge_single", c, b)
    for upstream in ("binary", "continuous"):
        labels = {"upstream": upstream, "scorer": "judge_single"}
        assert (
            metrics.registry.get_sample_value("shadoweval_quality_regression_detected", labels)
            == 1.0
        ), upstream
        # Three candidates share 90% of alpha 0.05: each rejects at e >= 66.7.
        threshold = metrics.registry.get_sample_value(
            "shadoweval_quality_regression_threshold", labels
        )
        assert threshold == pytest.approx(3 / (0.9 * 0.05))


def test_identical_candidates_with_several_scorers_do_not_alarm() -> None:
    # Three candidates that are the primary asked again, three agreement scorers each,
    # compared with the control: nine monitors, none alarms.
    names = ("exact", "token_f1", "rouge_l")
    alarm, metrics = _alarm([Configured(n, n, DEFAULT_INFO) for n in names], scorers=list(names))
    assert alarm.family == 9
    rng = np.random.default_rng(7)
    for i in range(3000):
        quality = rng.beta(3, 1)  # how hard request i is: shared by every answer to it
        for upstream in ("control", "a", "b", "c"):
            role = "control" if upstream == "control" else "candidate"
            hit = rng.random() < quality
            for scorer in names:
                value = float(hit) if scorer == "exact" else min(1.0, quality + 0.1 * hit)
                alarm.observe(
                    pair_id=f"r{i}:{upstream}",
                    request_id=f"r{i}",
                    upstream=upstream,
                    role=role,
                    scorer=scorer,
                    side="pair",
                    value=value,
                )
    for upstream in ("a", "b", "c"):
        for scorer in names:
            mon = alarm.monitor(upstream, scorer)
            assert mon.n == 3000 and not mon.detected
    detected = [
        s.value
        for metric in metrics.registry.collect()
        if metric.name == "shadoweval_quality_regression_detected"
        for s in metric.samples
    ]
    assert detected == [0.0] * 9


def test_the_family_keeps_alpha_on_the_null_boundary() -> None:
    # Nine monitors (3 candidates x 3 scorers) at exactly the margin, sharing the primary's
    # scores, looked at after every pair: some monitor alarms in at most alpha of the runs.
    # With alpha 0.05 per monitor (before) the same streams alarm more often than alpha.
    rng = np.random.default_rng(11)
    runs, steps, monitors = 200, 2000, 9
    baseline = (rng.random((runs, 1, steps)) < 0.8).astype(float)
    candidate = (rng.random((runs, monitors, steps)) < 0.8 * 0.95).astype(float)
    z = stats.regression_excess(candidate, baseline, 0.05).reshape(runs * monitors, steps)
    peak = stats.regression_log_evidence(z)[0].max(axis=1).reshape(runs, monitors)
    shares = np.array([alpha_share(j, monitors, 0.05) for j in range(monitors)])
    family_wise = (peak >= np.log(1 / shares)).any(axis=1).mean()
    per_monitor = (peak >= np.log(1 / 0.05)).any(axis=1).mean()
    assert family_wise <= 0.05 < per_monitor


def test_alpha_shares_sum_below_alpha_however_many_monitors_start() -> None:
    shares = [alpha_share(j, 3, 0.05) for j in range(60)]
    assert sum(shares) <= 0.05
    assert shares[0] == shares[2] == pytest.approx(0.015)
    assert shares[3] == pytest.approx(0.0025) and shares[4] == pytest.approx(0.00125)


def test_the_primary_scorer_is_chosen_from_the_declared_kind_and_a_preference_order() -> None:
    cfg = RegressionAlarm()
    configured = [
        Configured("json_schema", "json_schema", DEFAULT_INFO),
        Configured("tool_calls", "tool_calls", DEFAULT_INFO),  # the registered name
        Configured("refusal", "refusal", SAFETY_FLAG),
    ]
    assert list(monitored(cfg, configured)) == ["tool_calls"]
    assert list(monitored(cfg, [*configured, Configured("sem", "semantic", DEFAULT_INFO)])) == [
        "sem"
    ]
    assert monitored(cfg, [Configured("refusal", "refusal", SAFETY_FLAG)]) == {}
    # A plugin is ranked after the built-ins unless named.
    plugin = Configured("mine", "mine", DEFAULT_INFO)
    assert list(monitored(cfg, [plugin, *configured])) == ["tool_calls"]
    named = RegressionAlarm(scorers=["mine", "json_schema"])
    assert list(monitored(named, [plugin, *configured])) == ["mine", "json_schema"]
    with pytest.raises(ConfigError, match=r"regression.scorers\[0\]: 'nope'"):
        monitored(RegressionAlarm(scorers=["nope"]), configured)
    with pytest.raises(ConfigError, match="safety detector"):
        monitored(RegressionAlarm(scorers=["refusal"]), configured)


def test_a_preference_score_is_compared_with_a_tie() -> None:
    alarm, _ = _alarm([Configured("pref", "my_judge", PREFERENCE)], scorers=["pref"])
    rng = np.random.default_rng(5)
    for i in range(3000):  # loses 60% of the time, wins 30%: well below 0.5
        value = float(rng.choice([0.0, 0.5, 1.0], p=[0.6, 0.1, 0.3]))
        alarm.observe(
            pair_id=f"r{i}:cand",
            request_id=f"r{i}",
            upstream="cand",
            role="candidate",
            scorer="pref",
            side="pair",
            value=value,
        )
    assert alarm.monitor("cand", "pref").detected


# -- through the scorer -------------------------------------------------------------------


def _write(path: Path, records: list[Any]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


async def _score(raw: dict[str, Any], metrics: ScoreMetrics) -> ScoreRunner:
    runner = ScoreRunner(parse_scorer(raw, environ={}), once=True, metrics=metrics)
    try:
        await runner.start()
        await runner.run()
    finally:
        await runner.stop()
    return runner


def _call(name: str) -> dict[str, object]:
    return {"id": "c", "name": name, "arguments": '{"city": "Paris"}'}


async def test_tool_calls_is_the_watched_scorer_by_its_registered_name(tmp_path: Path) -> None:
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }
    records = []
    for i in range(80):
        for upstream, called in (("worse", "get_time"), ("control", "get_weather")):
            rec = pair_record(
                None,
                None,
                request=request,
                pair_id=f"q{i}:{upstream}",
                role="control" if upstream == "control" else "candidate",
                primary_tools=[_call("get_weather")],
                candidate_tools=[_call(called)],
            )
            rec["candidate"]["upstream"] = upstream
            records.append(rec)
    _write(tmp_path / "pairs.jsonl", records)
    raw = {
        "source": {"path": str(tmp_path / "pairs.jsonl")},
        "sink": {"path": str(tmp_path / "scores.jsonl")},
        "scorers": {"default": ["json_schema", "tool_calls"]},
        "safety": {"enabled": False},
    }
    metrics = ScoreMetrics(CollectorRegistry())
    runner = await _score(raw, metrics)
    assert runner._alarm is not None and list(runner._alarm.watched) == ["tool_calls"]
    labels = {"upstream": "worse", "scorer": "tool_calls"}
    assert (
        metrics.registry.get_sample_value("shadoweval_quality_regression_detected", labels) == 1.0
    )


def _always_flags(ctx: ScorerContext) -> Any:
    def score(pair: Pair) -> Scores:
        return [Score(0.0, "flag", side="primary"), Score(1.0, "flag", side="candidate")]

    return score


async def test_a_plugin_declaring_kind_safety_is_not_fed(tmp_path: Path) -> None:
    info = ScorerInfo(kind="safety", higher_is_better=False, harm=True)
    registry._REGISTRY["flags_for_test"] = registry.Registered(_always_flags, "test", info=info)
    try:
        _write(
            tmp_path / "pairs.jsonl",
            [pair_record("Paris", "Lyon", pair_id=f"q{i}:cand") for i in range(50)],
        )
        raw = {
            "source": {"path": str(tmp_path / "pairs.jsonl")},
            "sink": {"path": str(tmp_path / "scores.jsonl")},
            "scorers": {"default": ["flags_for_test", "exact"]},
            "safety": {"enabled": False},
        }
        metrics = ScoreMetrics(CollectorRegistry())
        runner = await _score(raw, metrics)
        assert runner._alarm is not None and list(runner._alarm.watched) == ["exact"]
        assert ("cand", "flags_for_test") not in runner._alarm._monitors
        assert (
            metrics.registry.get_sample_value(
                "shadoweval_quality_regression_evidence",
                {"upstream": "cand", "scorer": "flags_for_test"},
            )
            is None
        )
        # Named as a monitored scorer it is refused at start, naming the key.
        raw["regression"] = {"scorers": ["flags_for_test"]}
        with pytest.raises(ConfigError, match=r"regression.scorers\[0\]"):
            await _score(raw, ScoreMetrics(CollectorRegistry()))
    finally:
        del registry._REGISTRY["flags_for_test"]
