"""The verdict's defects, each as a test that failed before the fix: no control, over_refusal,
the trade-off sentence, multiplicity, clusters, small samples, scorer classification and
probe records in traffic figures."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shadoweval import stats
from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
from shadoweval.pricing import PriceTable
from shadoweval.report.aggregate import build_report
from shadoweval.report.load import load
from shadoweval.report.verdict import FAIL, INSUFFICIENT, PASS, finalise
from shadoweval.testing.synthetic import Upstream, generate
from shadoweval.types import Json

PRIMARY = Upstream("prod", role="primary", accuracy=0.8)
QUALITY = DecisionRules(cost_max_ratio=None, latency_max_ratio=None, failure_max_increase=None)


def write(path: Path, records: list[Json]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def report_for(
    tmp_path: Path, pairs: list[Json], scores: list[Json], rules: DecisionRules = QUALITY
) -> Json:
    p = write(tmp_path / "pairs.jsonl", pairs)
    s = write(tmp_path / "scores.jsonl", scores)
    cfg = Report(rules=rules, bootstrap_resamples=500)
    return build_report(load([p], [s]), cfg, PriceTable(Pricing()))


def candidate(report: Json, name: str) -> Json:
    return next(r for r in report["candidates"] if r["upstream"] == name)


def test_an_identical_candidate_without_a_control_is_not_failed_on_agreement(
    tmp_path: Path,
) -> None:
    # A sampled model agrees with its own earlier answer half the time: against the
    # reference 1.0 that reads as -50%, which used to FAIL (and exit 1 in CI).
    same = Upstream("same", agreement=0.5)
    pairs, scores = generate(PRIMARY, [same], 400, per_side=(), pair_scorers=("exact",), seed=3)
    report = report_for(tmp_path, pairs, scores)
    verdict = candidate(report, "same")["verdict"]
    assert verdict["status"] == INSUFFICIENT
    assert "role: control" in verdict["line"]
    assert report["gate"] != FAIL


def test_per_side_evidence_decides_when_agreement_cannot(tmp_path: Path) -> None:
    same = Upstream("same", agreement=0.5, accuracy=0.8)
    pairs, scores = generate(
        PRIMARY, [same], 600, per_side=("accuracy",), pair_scorers=("exact",), seed=5
    )
    report = report_for(tmp_path, pairs, scores)
    row = candidate(report, "same")
    decisive = [c for c in row["verdict"]["checks"] if c["rule"].startswith("quality")]
    assert [c["rule"] for c in decisive] == ["quality accuracy"]
    assert any("exact" in s and "control" in s for s in row["verdict"]["secondary"])


def _over_refusal(pairs: list[Json], refused: float, reverse: float, seed: int) -> list[Json]:
    rng = np.random.default_rng(seed)
    out = []
    for p in pairs:
        u = rng.random()
        label = (
            "over_refusal" if u < refused else "under_refusal" if u < refused + reverse else None
        )
        out.append(
            {
                "schema": "shadoweval.score.v1",
                "score_id": f"{p['pair_id']}:over_refusal:pair",
                "pair_id": p["pair_id"],
                "request_id": p["request_id"],
                "ts": p["ts"],
                "scored_at": p["ts"],
                "source": "traffic",
                "route": "chat",
                "task": None,
                "upstream": p["candidate"]["upstream"],
                "role": p["candidate"]["role"],
                "primary_upstream": "prod",
                "scorer": "over_refusal",
                "scorer_info": {
                    "kind": "safety",
                    "pair": "flag",
                    "higher_is_better": False,
                    "harm": True,
                    "reverse_label": "under_refusal",
                },
                "side": "pair",
                "value": 1.0 if label == "over_refusal" else 0.0,
                "label": label,
                "explanation": "synthetic",
            }
        )
    return out


def test_over_refusal_can_fail_a_candidate(tmp_path: Path) -> None:
    # The candidate refuses 28% of the benign requests the primary answered; it used to get
    # "safety no worse" because the rule only compared per-side flags.
    refuser = Upstream("refuser")
    pairs, scores = generate(PRIMARY, [refuser], 300, per_side=("accuracy",), seed=7)
    scores += _over_refusal(pairs, 0.28, 0.01, seed=1)
    report = report_for(tmp_path, pairs, scores)
    row = candidate(report, "refuser")
    block = next(b for b in row["safety"] if b["scorer"] == "over_refusal")
    assert block["worse"] and block["difference"]["lo"] > 0.2
    assert any(
        c["rule"] == "safety" and c.get("scorer") == "over_refusal" and c["status"] == FAIL
        for c in row["verdict"]["checks"]
    )


def test_over_refusal_that_is_as_common_both_ways_is_no_harm(tmp_path: Path) -> None:
    pairs, scores = generate(PRIMARY, [Upstream("fair")], 300, per_side=("accuracy",), seed=8)
    scores += _over_refusal(pairs, 0.05, 0.05, seed=2)
    block = next(b for b in candidate(report_for(tmp_path, pairs, scores), "fair")["safety"])
    assert not block["worse"]


def _row(name: str, checks: list[Json]) -> Json:
    return {
        "upstream": name,
        "pairs": 1000,
        "quality": [],
        "safety": [],
        "operations": {
            "cost": {},
            "latency": {},
            "failure": {"value": 0.0},
            "primary_failure": {"value": 0.0},
        },
        "verdict": {"checks": checks},
    }


def _fail(p: float) -> Json:
    return {
        "rule": "safety",
        "status": FAIL,
        "detail": "safety worse",
        "pairs_needed": None,
        "p_fail": p,
        "otherwise": PASS,
    }


def test_fails_are_corrected_across_the_whole_gate() -> None:
    # One detector at p = 0.01 among 15 tests (3 candidates x 5 detectors) is what chance
    # gives identical candidates: alone it would fail (0.01 < 0.025), corrected it does not.
    quiet = {**_fail(0.6), "status": PASS}
    rows = [_row(f"c{i}", [copy.deepcopy(quiet) for _ in range(5)]) for i in range(3)]
    rows[1]["verdict"]["checks"][2] = _fail(0.01)
    cfg = Report()
    gate, notes = finalise(rows, cfg)
    assert gate == PASS
    assert "Holm" in rows[1]["verdict"]["checks"][2]["detail"]
    assert any("15 one-sided tests" in n for n in notes)
    # A real harm survives the correction.
    rows = [_row(f"c{i}", [copy.deepcopy(quiet) for _ in range(5)]) for i in range(3)]
    rows[1]["verdict"]["checks"][2] = _fail(1e-6)
    gate, _ = finalise(rows, cfg)
    assert gate == FAIL and rows[1]["verdict"]["status"] == FAIL


def test_holm_matches_its_definition() -> None:
    assert stats.holm([0.01, 0.04, 0.03, 0.005], 0.05) == [True, False, False, True]
    assert stats.holm([0.012, 0.013], 0.025) == [True, True]
    assert stats.holm([float("nan"), 0.001], 0.05) == [False, True]


def test_clustered_requests_widen_the_interval() -> None:
    # 30 sessions of 10 identical requests: 30 independent observations, not 300.
    rng = np.random.default_rng(0)
    sessions = rng.normal(0, 1, 30)
    x = np.repeat(sessions, 10)
    labels = [f"s{i}" for i in np.repeat(np.arange(30), 10)]
    naive = stats.mean_ci(x, resamples=1000)
    clustered = stats.mean_ci(x, resamples=1000, clusters=labels)
    assert (clustered.hi - clustered.lo) > 2.5 * (naive.hi - naive.lo)


def test_cluster_labels_that_are_all_distinct_are_the_ordinary_bootstrap() -> None:
    x = np.arange(50, dtype=float)
    a = stats.mean_ci(x, resamples=500, seed=1)
    b = stats.mean_ci(x, resamples=500, seed=1, clusters=[str(i) for i in range(50)])
    assert a == b


def test_small_rare_binary_samples_are_not_read_as_certain(tmp_path: Path) -> None:
    # 30 pairs of a 4% vs 2% outcome: one or two events. The interval used to be [0, 0] or
    # lumpy and the rule read it as a verdict.
    prim = Upstream("prod", role="primary", accuracy=0.04)
    rare = Upstream("rare", accuracy=0.02, shared=0.0)
    pairs, scores = generate(prim, [rare], 30, per_side=("accuracy",), seed=11)
    row = candidate(
        report_for(tmp_path, pairs, scores, QUALITY.model_copy(update={"min_pairs": 10})), "rare"
    )
    block = row["quality"][0]
    assert not block["reliable"]
    quality = [c for c in row["verdict"]["checks"] if c["rule"].startswith("quality")]
    assert [c["status"] for c in quality] == [INSUFFICIENT]


def test_p_beyond_is_the_dual_of_the_interval() -> None:
    e = stats.Estimate(0.10, 0.05, 0.20, 100)
    assert abs(stats.p_beyond(e, 0.05, True) - 0.025) < 1e-9
    assert abs(stats.p_beyond(e, 0.20, False) - 0.025) < 1e-9
    assert stats.p_beyond(stats.Estimate(0.0, 0.0, 0.0, 30), 0.0, True) == 0.5


def _tradeoff_world(n: int, seed: int) -> tuple[list[Json], list[Json]]:
    prim = Upstream("prod", role="primary", accuracy=0.8, cost_usd=0.003, error_rate=0.02)
    cand = Upstream("cheap", accuracy=0.76, cost_usd=0.001, error_rate=0.002, shared=0.9)
    return generate(prim, [cand], n, per_side=("accuracy",), seed=seed)


def test_the_tradeoff_rule_can_say_wins_where_the_strict_one_cannot(tmp_path: Path) -> None:
    # "5% less accurate but 3x cheaper (and with 10x fewer failures)": the strict rule's 5%
    # margin sits on the truth (never settled); the tradeoff preset allows more for the gains.
    pairs, scores = _tradeoff_world(3000, seed=2)
    strict = candidate(report_for(tmp_path, pairs, scores, DecisionRules()), "cheap")
    tradeoff = candidate(
        report_for(tmp_path, pairs, scores, DecisionRules(preset="tradeoff")), "cheap"
    )
    assert strict["verdict"]["status"] != PASS
    assert tradeoff["verdict"]["status"] == PASS, tradeoff["verdict"]["line"]
    sentence = tradeoff["verdict"]["sentence"]
    assert "less accurate" in sentence and "cheaper" in sentence and "fewer failures" in sentence
    assert sentence.endswith("PASS under rule `tradeoff`")
    earned = [c for c in tradeoff["verdict"]["checks"] if c["rule"].startswith("quality")]
    assert "allowed for cost" in earned[0]["detail"]


def test_probe_records_stay_out_of_the_traffic_figures(tmp_path: Path) -> None:
    pairs, scores = generate(PRIMARY, [Upstream("cand")], 100, per_side=("accuracy",), seed=4)
    probe = copy.deepcopy(pairs[0])
    probe.update(pair_id="p1:cand", request_id="p1", source="probe")
    probe["probe"] = {
        "id": "b1",
        "base_id": "b1",
        "suite": "s",
        "category": "jailbreak",
        "expect": "refuse",
        "verdict": {
            "primary": {"attack_success": False, "reason": ""},
            "candidate": {"attack_success": True, "reason": ""},
        },
    }
    probe["candidate"]["error_type"] = "timeout"
    report = report_for(tmp_path, [*pairs, probe], scores)
    row = candidate(report, "cand")
    assert row["pairs"] == 100
    assert row["operations"]["failure"]["value"] == 0.0


def test_scorers_are_classified_by_what_their_records_declare(tmp_path: Path) -> None:
    # A plugin safety detector with an unknown name, and tool_calls (once misspelt in a list).
    pairs, scores = generate(PRIMARY, [Upstream("cand")], 60, per_side=("tool_calls",), seed=6)
    extra: list[Json] = []
    for s in scores:
        flag: dict[str, Any] = {**s, "scorer": "my_leak_detector", "value": 0.0}
        flag["score_id"] = s["score_id"].replace("tool_calls", "my_leak_detector")
        flag["scorer_info"] = {"kind": "safety", "pair": "agreement", "harm": True}
        extra.append(flag)
    report = report_for(tmp_path, pairs, scores + extra)
    assert report["scorers"]["safety"] == ["my_leak_detector"]
    assert report["scorers"]["quality"] == ["tool_calls"]
    assert report["headline_scorer"] == "tool_calls"
