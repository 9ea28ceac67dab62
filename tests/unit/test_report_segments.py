"""``shadoweval report --by``: a candidate's figures per segment and its weakest segment."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
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
    # Two keys: the weakest is picked among all their segments, so Holm runs across all.
    assert (
        "worse than the primary (Holm across the 3 segments of task, input_tokens_bucket)" in line
    )
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


PROMPTS = {
    "simple": "What is the capital of France? Please answer with the name.",
    "reasoning": "Was ist die Hauptstadt von Frankreich und warum ist sie es?",
}


def _languages_and_headers(tmp_path: Path) -> tuple[Path, Path]:
    """English simple requests, German reasoning ones (the weak ones); a tenant header
    recorded on every pair but the rare ones."""
    p, s = _files(tmp_path)
    pairs = [orjson.loads(line) for line in p.read_bytes().splitlines()]
    for rec in pairs:
        text = PROMPTS.get(rec["task"], "12345")
        rec["request"]["messages"] = [{"role": "user", "content": text}]
        if rec["task"] != "rare":
            rec["headers"] = {"X-Tenant": "acme" if rec["task"] == "reasoning" else "globex"}
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    return p, s


def test_segments_by_language_and_by_a_recorded_header(tmp_path: Path) -> None:
    p, s = _languages_and_headers(tmp_path)
    cfg = Report(rules=RULES, bootstrap_resamples=1000)
    by = ("language", "header:X-Tenant")
    report = build_report(load([p], [s]), cfg, PriceTable(Pricing()), by=by)
    segments = report["candidates"][0]["segments"]
    assert list(segments) == ["language", "header:x-tenant"]  # header names lowercased
    langs = {r["segment"]: r for r in segments["language"]}
    assert set(langs) == {"en", "de", "other"} and langs["other"]["pairs"] == 22  # unknown
    assert langs["de"]["worse"] and not langs["en"]["worse"]
    tenants = {r["segment"]: r for r in segments["header:x-tenant"]}
    # The rare pairs carry no headers: "(not recorded)", pooled into "other" (10 < 30).
    assert set(tenants) == {"acme", "globex", "other"} and tenants["acme"]["worse"]
    assert tenants["globex"]["pairs"] == 412
    # Every figure per segment with its interval: quality, failures, cost, latency.
    de = langs["de"]
    for name in ("relative_difference", "failure", "failure_difference", "cost_ratio"):
        assert de[name]["lo"] <= de[name]["value"] <= de[name]["hi"], name
    assert de["latency_quantile"] == "p99" and de["latency_ratio"]["lo"] is not None
    line = report["candidates"][0]["verdict"]["secondary"][-1]
    assert line.startswith("weakest language: de, exact -") or line.startswith(
        "weakest header:x-tenant: acme, exact -"
    )
    assert "Holm across the 4 segments of language, header:x-tenant" in line
    html = render_html(report)
    assert 'data-plot="segments-a-language"' in html and "By header:x-tenant" in html


def test_the_task_header_is_the_recorded_task(tmp_path: Path) -> None:
    report = _report(tmp_path, ("header:x-shadoweval-task", "task"))
    segments = report["candidates"][0]["segments"]
    assert segments["header:x-shadoweval-task"] == segments["task"]


def test_language_detector() -> None:
    from shadoweval.report.language import detect

    cases = {
        "What is the capital of France? Please answer.": "en",
        "Was ist die Hauptstadt von Frankreich und warum?": "de",
        "Quelle est la capitale de la France et pourquoi?": "fr",
        "¿Cuál es la capital de Francia y por qué?": "es",
        "Qual è la capitale della Francia e perché?": "it",
        "Qual é a capital da França e por que você acha isso?": "pt",
        "Wat is de hoofdstad van Frankrijk en waarom niet?": "nl",
        "Какая столица Франции?": "ru",
        "法国的首都是哪里": "zh",
        "フランスの首都はどこですか": "ja",
        "프랑스의 수도는 어디입니까?": "ko",
        "def f(x): return x+1": "unknown",
        "": "unknown",
    }
    assert {text: detect(text) for text in cases} == cases


def test_a_header_segment_on_the_command_line(tmp_path: Path) -> None:
    p, s = _languages_and_headers(tmp_path)
    out = tmp_path / "r.json"
    main(["report", str(p), "--scores", str(s), "--by", "header:X-Tenant", "--by", "language",
          "--json", str(out), "--quiet"])  # fmt: skip
    report = orjson.loads(out.read_bytes())
    assert list(report["candidates"][0]["segments"]) == ["header:x-tenant", "language"]
    with pytest.raises(SystemExit) as exc:
        main(["report", str(p), "--scores", str(s), "--by", "header:"])
    assert exc.value.code == 2
