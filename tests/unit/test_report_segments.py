"""``shadoweval report --by``: a candidate's figures per segment and its weakest segment."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.config import DecisionRules, Pricing, Report
from shadoweval.pricing import PriceTable
from shadoweval.report import build_report, load
from shadoweval.report.html import render as render_html
from shadoweval.report.terminal import render as render_terminal
from shadoweval.testing.synthetic import Upstream, generate

Json = dict[str, Any]
PRIMARY = Upstream("prod", role="primary", model="prod-model", accuracy=0.8, cost_usd=0.002)
RULES = DecisionRules(
    quality_max_drop=0.05,
    cost_max_ratio=None,
    latency_max_ratio=None,
    safety_no_worse=False,
    failure_max_increase=None,
)


def _tagged(task: str, accuracy: float, n: int, seed: int) -> tuple[list[Json], list[Json]]:
    """Requests of one task; the candidate's accuracy on them is ``accuracy``."""
    cand = Upstream("a", accuracy=accuracy, shared=0.9, cost_usd=0.001)
    pairs, scores = generate(PRIMARY, [cand], n, seed=seed)
    for rec in (*pairs, *scores):
        rec["task"] = task
        rec["request_id"] = f"{task}-{rec['request_id']}"
        rec["pair_id"] = f"{task}-{rec['pair_id']}"
        if "score_id" in rec:
            rec["score_id"] = f"{task}-{rec['score_id']}"
    return pairs, scores


def _files(tmp_path: Path) -> tuple[Path, Path]:
    pairs: list[Json] = []
    scores: list[Json] = []
    for task, accuracy, n, seed in (
        ("simple", 0.8, 400, 1),
        ("reasoning", 0.45, 400, 2),
        ("rare", 0.8, 10, 3),
        ("odd", 0.8, 12, 4),
    ):
        p, s = _tagged(task, accuracy, n, seed)
        pairs += p
        scores += s
    pp, sp = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    pp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    sp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scores))
    return pp, sp


def _report(tmp_path: Path, by: tuple[str, ...]) -> Json:
    p, s = _files(tmp_path)
    cfg = Report(rules=RULES, bootstrap_resamples=1000)
    return build_report(load([p], [s]), cfg, PriceTable(Pricing()), by=by)


def test_segments_name_the_weak_task_and_pool_the_small_ones(tmp_path: Path) -> None:
    report = _report(tmp_path, ("task", "input_tokens_bucket"))
    row = report["candidates"][0]
    tasks = {r["segment"]: r for r in row["segments"]["task"]}
    # rare (10) and odd (12) are under min_pairs (30): pooled, and still too few.
    assert set(tasks) == {"simple", "reasoning", "other"}
    assert tasks["other"]["pairs"] == 22 and tasks["other"]["small"]
    assert not tasks["other"]["reliable"] and tasks["other"]["p_worse"] is None
    reasoning, simple = tasks["reasoning"], tasks["simple"]
    assert reasoning["worse"] and not simple["worse"]
    assert reasoning["relative_difference"]["hi"] < 0 < simple["relative_difference"]["hi"]
    assert reasoning["scorer"] == "exact" and reasoning["pairs"] == 400
    assert reasoning["failure"]["value"] == 0.0
    assert reasoning["cost_ratio"]["value"] == pytest.approx(0.5)
    assert [r["segment"] for r in row["segments"]["input_tokens_bucket"]] == ["0-255"]
    line = row["verdict"]["secondary"][-1]
    assert line.startswith("weakest task: reasoning, exact -")
    assert "worse than the primary (Holm across the 3 task segments)" in line
    # The overall figures are those of the report without segments.
    plain = _report(tmp_path, ())["candidates"][0]
    assert "segments" not in plain
    assert plain["quality"] == row["quality"]
    assert plain["verdict"]["secondary"] == row["verdict"]["secondary"][:-1]


def test_segment_tables_and_the_cli_option(tmp_path: Path) -> None:
    p, s = _files(tmp_path)
    out = tmp_path / "report.json"
    code = main(["report", str(p), "--scores", str(s), "--by", "task", "--by", "route",
                 "--json", str(out), "-q"])  # fmt: skip
    assert code in (0, 1)
    report = orjson.loads(out.read_bytes())
    assert report["filters"]["by"] == ["task", "route"]
    row = report["candidates"][0]
    assert [r["segment"] for r in row["segments"]["route"]] == ["chat"]
    html = render_html(report)
    assert "By task" in html and "reasoning" in html
    text = io.StringIO()
    render_terminal(report, text)
    assert "a: by task (exact)" in text.getvalue()


def test_an_unknown_segment_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, s = _files(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(p), "--scores", str(s), "--by", "colour"])
    assert exc.value.code == 2
    assert "--by" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown segment"):
        build_report(load([p], [s]), Report(), PriceTable(Pricing()), by=("colour",))
