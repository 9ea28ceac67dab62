"""``shadoweval report`` on synthetic pairs and scores with known properties."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from shadoweval import stats
from shadoweval.cli import main
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
from shadoweval.config.report_settings import load_report_settings
from shadoweval.pricing import PriceTable
from shadoweval.report import Filters, build_report, load, parse_time
from shadoweval.report.html import render as render_html
from shadoweval.report.terminal import render as render_terminal
from shadoweval.testing.synthetic import Upstream, generate

Json = dict[str, Any]
SCORE_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "shadoweval/schemas/score.v1.schema.json").read_text()
)
# Only the quality rule, unless a test turns others on.
QUALITY_ONLY = DecisionRules(
    quality_max_drop=0.05,
    cost_max_ratio=None,
    latency_max_ratio=None,
    safety_no_worse=False,
    failure_max_increase=None,
)


def write(path: Path, records: list[Json]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def report_for(
    tmp_path: Path,
    pairs: list[Json],
    scores: list[Json],
    rules: DecisionRules = QUALITY_ONLY,
    pricing: Pricing | None = None,
    **settings: Any,
) -> Json:
    p = write(tmp_path / "pairs.jsonl", pairs)
    s = write(tmp_path / "scores.jsonl", scores)
    cfg = Report(rules=rules, bootstrap_resamples=1000, **settings)
    return build_report(load([p], [s]), cfg, PriceTable(pricing or Pricing()))


def row(report: Json, upstream: str) -> Json:
    rows = [*report["candidates"], report["noise_floor"] or {}]
    return next(r for r in rows if r.get("upstream") == upstream)


def quality(report: Json, upstream: str, scorer: str) -> Json:
    return next(b for b in row(report, upstream)["quality"] if b["scorer"] == scorer)


PRIMARY = Upstream("prod", role="primary", model="prod-model", accuracy=0.8)


def test_synthetic_records_follow_both_schemas(validate_pair: Callable[[Json], None]) -> None:
    pairs, scores = generate(
        PRIMARY,
        [Upstream("a", flags={"toxicity": 0.1}), Upstream("ctl", role="control")],
        20,
        pair_scorers=("semantic",),
        judge=True,
    )
    for pair in pairs:
        validate_pair(pair)
    validator = jsonschema.Draft202012Validator(SCORE_SCHEMA)
    for score in scores:
        assert not list(validator.iter_errors(score))


# -- the noise floor ------------------------------------------------------------------------


def test_pair_scorer_reads_candidates_against_the_control(tmp_path: Path) -> None:
    # The primary disagrees with itself 10% of the time (control agreement 0.9). A candidate
    # that agrees as often is no different; one that agrees 65% of the time is worse.
    others = [
        Upstream("control", role="control", agreement=0.9),
        Upstream("same", agreement=0.9),
        Upstream("worse", agreement=0.65),
    ]
    pairs, scores = generate(PRIMARY, others, 1000, per_side=(), pair_scorers=("exact",), seed=1)
    report = report_for(tmp_path, pairs, scores)
    same, worse = quality(report, "same", "exact"), quality(report, "worse", "exact")
    assert same["baseline"] == worse["baseline"] == "control"
    assert not same["significant"]
    assert same["difference"]["lo"] < 0 < same["difference"]["hi"]
    assert worse["significant"] and worse["difference"]["hi"] < 0
    assert same["noise_floor"]["upstream"] == "control"
    assert row(report, "same")["verdict"]["status"] == "pass"
    assert row(report, "worse")["verdict"]["status"] == "fail"
    assert report["gate"] == "fail"

    # Without the control the same data reads as a 10% drop against the reference 1.0: it
    # is shown, but agreement cannot tell nondeterminism from regression, so it decides
    # nothing and the verdict says what is missing (a false FAIL here blocked CI gates).
    no_control = [p for p in pairs if p["candidate"]["role"] != "control"]
    blind = report_for(tmp_path, no_control, scores)
    assert quality(blind, "same", "exact")["baseline"] == "reference"
    assert not quality(blind, "same", "exact")["readable"]
    verdict = row(blind, "same")["verdict"]
    assert verdict["status"] == "insufficient"
    assert "role: control" in verdict["line"]
    assert blind["gate"] != "fail"
    assert "no control upstream" in " ".join(blind["notes"])


def test_per_side_scorer_difference_noise_floor_and_mcnemar(tmp_path: Path) -> None:
    others = [
        Upstream("control", role="control", accuracy=0.8),
        Upstream("same", accuracy=0.8),
        Upstream("worse", accuracy=0.6),
    ]
    pairs, scores = generate(PRIMARY, others, 800, per_side=("exact",), seed=2)
    report = report_for(tmp_path, pairs, scores)
    same, worse = quality(report, "same", "exact"), quality(report, "worse", "exact")
    assert same["mode"] == "per_side" and same["baseline"] == "primary"
    assert not same["significant"]
    assert worse["significant"]
    assert worse["relative_difference"]["value"] == pytest.approx(-0.25, abs=0.06)
    floor = worse["noise_floor"]["difference"]
    assert floor["lo"] < 0 < floor["hi"]  # the control is no different from the primary
    assert worse["versus_control"]["hi"] < 0

    # McNemar in the report = McNemar on the records' own values.
    by_id = {(s["pair_id"], s["side"]): s["value"] for s in scores if s["scorer"] == "exact"}
    ids = [p["pair_id"] for p in pairs if p["candidate"]["upstream"] == "worse"]
    cand = [by_id[(i, "candidate")] for i in ids]
    prim = [by_id[(i, "primary")] for i in ids]
    expected = stats.mcnemar_paired(cand, prim)
    assert worse["mcnemar"]["b"] == expected.b and worse["mcnemar"]["c"] == expected.c
    assert worse["mcnemar"]["p_value"] == pytest.approx(expected.p_value)


def test_judge_pairwise_win_tie_loss_and_sign_test(tmp_path: Path) -> None:
    others = [Upstream("worse", accuracy=0.5, shared=0.0)]
    pairs, scores = generate(PRIMARY, others, 300, per_side=(), judge=True, seed=3)
    judge = quality(report_for(tmp_path, pairs, scores), "worse", "judge_pairwise")
    labels = [s["label"] for s in scores if s["scorer"] == "judge_pairwise"]
    counts = {k: labels.count(k) for k in ("win", "tie", "loss")}
    assert judge["judge"]["counts"] == counts
    assert judge["judge"]["win"]["value"] == pytest.approx(counts["win"] / len(labels))
    assert judge["judge"]["sign_test_p"] == pytest.approx(
        stats.binom_two_sided(counts["win"], counts["win"] + counts["loss"])
    )
    assert judge["baseline"] == "reference" and judge["baseline_mean"]["value"] == 0.5
    assert judge["difference"]["hi"] < 0


# -- operations, cost, safety, verdicts -----------------------------------------------------


ALL_RULES = DecisionRules(
    quality_max_drop=0.05,
    cost_max_ratio=0.5,
    latency_quantile=0.95,
    latency_max_ratio=1.2,
    safety_no_worse=True,
    failure_max_increase=0.01,
    min_pairs=30,
)
PRICES = Pricing.model_validate(
    {
        "models": {
            "prod-model": {"input_per_mtok": 10, "output_per_mtok": 30},
            "cheap-model": {"input_per_mtok": 1, "output_per_mtok": 3},
        }
    }
)


def test_cost_latency_failures_and_safety_decide_the_verdict(tmp_path: Path) -> None:
    flags = {"toxicity": 0.01}
    others = [
        Upstream("cheap", model="cheap-model", flags=flags),
        Upstream("slow", model="cheap-model", latency_s=1.0, flags=flags),
        Upstream("flaky", model="cheap-model", error_rate=0.2, retry_rate=0.3, flags=flags),
        Upstream("toxic", model="cheap-model", flags={"toxicity": 0.2}),
        Upstream("unpriced", model="mystery-model", flags=flags),
    ]
    primary = Upstream("prod", role="primary", model="prod-model", flags=flags)
    pairs, scores = generate(primary, others, 600, per_side=("exact",), seed=4)
    report = report_for(tmp_path, pairs, scores, ALL_RULES, PRICES)
    verdict = {r["upstream"]: r["verdict"] for r in report["candidates"]}
    failed = {
        u: {c["rule"] for c in v["checks"] if c["status"] == "fail"} for u, v in verdict.items()
    }
    assert verdict["cheap"]["status"] == "pass", verdict["cheap"]["line"]
    assert failed["slow"] == {"latency"}
    assert failed["flaky"] == {"failures"}
    assert failed["toxic"] == {"safety"}
    assert verdict["unpriced"]["status"] == "insufficient"
    assert "not priced (mystery-model)" in verdict["unpriced"]["line"]

    ops = row(report, "cheap")["operations"]
    # 100 input and 50 output tokens: $0.0025 vs $0.00025 a request.
    assert ops["cost"]["primary_per_request"]["value"] == pytest.approx(0.0025)
    assert ops["cost"]["candidate_per_1k"] == pytest.approx(0.25)
    assert ops["cost"]["ratio"]["value"] == pytest.approx(0.1)
    assert ops["latency"]["p95"]["ratio"]["hi"] < 1.2
    assert row(report, "slow")["operations"]["latency"]["p95"]["ratio"]["lo"] > 1.2
    flaky = row(report, "flaky")["operations"]
    assert flaky["failure"]["value"] == pytest.approx(0.2, abs=0.05)
    assert flaky["retry"]["value"] == pytest.approx(0.3, abs=0.06)
    assert flaky["errors"] == {"http_5xx": flaky["failure"]["value"] * 600}
    assert report["gate"] == "fail"


def test_record_cost_wins_over_the_pricing_table(tmp_path: Path) -> None:
    primary = Upstream("prod", role="primary", model="prod-model", cost_usd=0.01)
    others = [Upstream("a", model="cheap-model", cost_usd=0.0031)]
    pairs, scores = generate(primary, others, 50, seed=5)
    ops = row(report_for(tmp_path, pairs, scores, ALL_RULES, PRICES), "a")["operations"]
    assert ops["cost"]["ratio"]["value"] == pytest.approx(0.31)


def test_not_enough_data_says_how_many_pairs_are_needed(tmp_path: Path) -> None:
    others = [Upstream("a", accuracy=0.8, shared=0.5)]
    pairs, scores = generate(PRIMARY, others, 40, seed=6)
    report = report_for(tmp_path, pairs, scores, QUALITY_ONLY.model_copy(update={"min_pairs": 30}))
    verdict = row(report, "a")["verdict"]
    assert verdict["status"] == "insufficient"
    needed = verdict["pairs_needed"]
    assert needed is not None and needed > 40
    assert f"(needs ~{needed} pairs)" in verdict["line"] and verdict["line"].endswith(
        "has 40 pairs"
    )
    assert report["gate"] == "insufficient"
    few = report_for(tmp_path, pairs[:10], scores, QUALITY_ONLY)
    assert any(c["rule"] == "pairs" for c in row(few, "a")["verdict"]["checks"])


def test_tails_and_worst_examples(tmp_path: Path) -> None:
    others = [Upstream("a", accuracy=0.7)]
    pairs, scores = generate(PRIMARY, others, 200, seed=7)
    report = report_for(tmp_path, pairs, scores, worst_examples=3, score_floor=0.5)
    block = quality(report, "a", "exact")
    values = [s["value"] for s in scores if s["side"] == "candidate"]
    assert block["tails"]["below_floor"]["value"] == pytest.approx(values.count(0.0) / len(values))
    assert block["tails"]["p5"] == 0.0
    worst = block["worst"]
    assert len(worst) == 3 and all(w["value"] == 0.0 for w in worst)
    # The deficit orders ties: primary right, candidate wrong first.
    assert worst[0]["baseline_value"] == 1.0
    assert "[REDACTED:email]" in worst[0]["prompt"] and "@example.com" not in worst[0]["prompt"]


def test_timeline_buckets(tmp_path: Path) -> None:
    pairs, scores = generate(PRIMARY, [Upstream("a")], 120, spacing_s=60, seed=8)
    report = report_for(tmp_path, pairs, scores, time_buckets=4)
    timeline = row(report, "a")["timeline"]
    assert report["window"]["bucket_s"] == 1800
    assert sum(b["pairs"] for b in timeline) == 120
    assert all(b["quality"] is not None for b in timeline)


# -- loading, filters, outputs, CLI ---------------------------------------------------------


def test_loading_dedupes_filters_and_counts_what_it_skips(tmp_path: Path) -> None:
    pairs, scores = generate(PRIMARY, [Upstream("a")], 10, spacing_s=3600, seed=9)
    p = tmp_path / "pairs.jsonl"
    write(p, [*pairs, pairs[0]])
    with open(p, "ab") as fh:
        fh.write(b"not json\n[1]\n" + orjson.dumps({"schema": "other"}) + b"\n")
    rescored = {**scores[1], "value": 1.0 - scores[1]["value"]}
    s = write(tmp_path / "scores.jsonl", [*scores, rescored])
    ds = load([p], [s])
    assert len(ds.pairs) == 10
    assert ds.skipped["duplicate pair (re-delivery)"] == 1
    assert ds.skipped["invalid JSON line"] == 1
    assert ds.skipped["line is not a JSON object"] == 1
    key = (scores[1]["pair_id"], "exact", scores[1]["side"])
    assert ds.scores[key].value == rescored["value"]  # a re-score replaces

    since = parse_time(pairs[3]["ts"])
    until = parse_time(pairs[6]["ts"])
    window = load([p], [s], Filters(since=since, until=until))
    assert [r.request_id for r in window.pairs] == ["req000003", "req000004", "req000005"]
    assert len(load([p], [s], Filters(sources=frozenset({"replay"}))).pairs) == 0
    assert parse_time("2h") < parse_time("1h")
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_renderers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    others = [Upstream("control", role="control"), Upstream("a", model="cheap-model")]
    pairs, scores = generate(PRIMARY, others, 100, pair_scorers=("semantic",), judge=True)
    report = report_for(tmp_path, pairs, scores, ALL_RULES, PRICES)
    page = render_html(report)
    for plot in ("quality_cost", "latency", "scores-exact", "scores-semantic", "over_time_quality"):
        assert f'data-plot="{plot}"' in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    render_terminal(report, None, details=True)
    out = capsys.readouterr().out
    assert (
        "Candidates against the primary" in out and row(report, "a")["verdict"]["line"][:20] in out
    )


def test_cli_report_writes_json_and_html_and_gates(tmp_path: Path) -> None:
    others = [Upstream("control", role="control"), Upstream("good"), Upstream("bad", accuracy=0.5)]
    pairs, scores = generate(PRIMARY, others, 400, seed=10)
    p = write(tmp_path / "pairs.jsonl", pairs)
    s = write(tmp_path / "scores.jsonl", scores)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "report:\n  bootstrap_resamples: 500\n  rules:\n    cost_max_ratio: null\n"
        "    latency_max_ratio: null\n    failure_max_increase: null\n"
    )
    out_json, out_html = tmp_path / "out" / "report.json", tmp_path / "out" / "report.html"
    args = ["report", str(p), "--scores", str(s), "--config", str(rules)]
    code = main([*args, "--json", str(out_json), "--html", str(out_html), "--quiet"])
    report = json.loads(out_json.read_text())
    assert code == 1 and report["gate"] == "fail"
    assert {r["upstream"]: r["verdict"]["status"] for r in report["candidates"]} == {
        "bad": "fail",
        "good": "pass",
    }
    assert report["settings"]["bootstrap_resamples"] == 500
    assert out_html.read_text().startswith("<!doctype html>")

    good_only = write(
        tmp_path / "good.jsonl", [x for x in pairs if x["candidate"]["upstream"] != "bad"]
    )
    assert main(["report", str(good_only), "--scores", str(s), "--config", str(rules), "-q"]) == 0
    few = write(
        tmp_path / "few.jsonl", [x for x in pairs if x["candidate"]["upstream"] == "good"][:20]
    )
    assert main(["report", str(few), "--scores", str(s), "--config", str(rules), "-q"]) == 0
    assert (
        main(["report", str(few), "--scores", str(s), "--config", str(rules), "-q", "--strict"])
        == 1
    )
    assert main(["report", str(tmp_path / "missing.jsonl"), "-q"]) == 2


def test_report_settings_files(tmp_path: Path) -> None:
    standalone = tmp_path / "report.yaml"
    standalone.write_text("report: {confidence: 0.9, rules: {cost_max_ratio: 0.3}}\n")
    settings = load_report_settings(standalone, environ={"SHADOWEVAL_REPORT__SEED": "7"})
    assert settings.report.confidence == 0.9 and settings.report.seed == 7
    assert settings.report.rules.cost_max_ratio == 0.3
    # A proxy config works too; its pricing and redaction come along.
    proxy = tmp_path / "proxy.yaml"
    proxy.write_text(
        "primary: {url: 'http://127.0.0.1:9'}\n"
        "pricing: {models: {m: {input_per_mtok: 1, output_per_mtok: 2}}}\n"
        "report: {rules: {quality_scorers: [exact], latency_quantile: 0.95}}\n"
    )
    settings = load_report_settings(proxy, environ={})
    assert settings.report.rules.quality_scorers == ["exact"]
    assert "m" in settings.pricing.models
    bad = tmp_path / "bad.yaml"
    bad.write_text("report: {rules: {cost_max_ratoi: 0.3}}\n")
    with pytest.raises(ConfigError, match=r"report.rules.cost_max_ratoi: unknown key"):
        load_report_settings(bad, environ={})
