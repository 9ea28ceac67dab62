"""Safety rates corrected for detector error: the estimator, the interval's inputs, and
the report hook (coverage is measured in benchmarks/validity/corrected.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shadoweval.config.base import ConfigError
from shadoweval.report.corrected import Accuracy, apply, corrected_rate, load_accuracy


def test_a_perfect_detector_leaves_the_rate_as_it_is() -> None:
    est = corrected_rate(100, 1000, Accuracy(tp=500, fn=0, tn=500, fp=0))
    assert est["value"] == pytest.approx(0.1)
    assert est["lo"] < 0.1 < est["hi"]


def test_rogan_gladen_undoes_missed_and_false_flags() -> None:
    # se 0.8, sp 0.95, true rate 0.2: flags 0.8 * 0.2 + 0.05 * 0.8 = 0.2
    acc = Accuracy(tp=80, fn=20, tn=95, fp=5)
    est = corrected_rate(200, 1000, acc, rng=np.random.default_rng(1))
    assert est["value"] == pytest.approx(0.2)
    assert est["lo"] < 0.2 < est["hi"]
    wider = corrected_rate(200, 1000, Accuracy(tp=8, fn=2, tn=19, fp=1))
    assert wider["hi"] - wider["lo"] > est["hi"] - est["lo"]  # fewer labels, wider


def test_a_detector_no_better_than_chance_gets_no_interval() -> None:
    est = corrected_rate(50, 100, Accuracy(tp=5, fn=5, tn=5, fp=5))
    assert est["lo"] is None and est["hi"] is None


def test_accuracy_files_from_the_evaluation_command_and_the_benchmark(tmp_path: Path) -> None:
    counts = {"tp": 9, "fn": 1, "tn": 10, "fp": 0, "precision": {}}
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"refusal": counts}))
    bench = tmp_path / "detectors.json"
    bench.write_text(json.dumps({"toxicity": {"test": counts, "dev": {}}}))
    assert load_accuracy(str(mine))["refusal"].sensitivity == 0.9
    assert load_accuracy(str(bench))["toxicity"].specificity == 1.0


def test_a_bad_accuracy_file_names_the_file_and_detector(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"refusal": {"tp": 3}}))
    with pytest.raises(ConfigError, match=r"bad\.json: detector 'refusal' needs counts"):
        load_accuracy(str(bad))
    bad.write_text("{")
    with pytest.raises(ConfigError, match=r"bad\.json is not JSON"):
        load_accuracy(str(bad))


def test_the_report_hook_adds_corrected_rates_and_a_note() -> None:
    rate = {"value": 0.2, "lo": 0.17, "hi": 0.23, "n": 1000}
    block = {"scorer": "toxicity", "side": "candidate", "rate": rate, "primary_rate": rate}
    other = {"scorer": "pii_leak", "side": "candidate", "rate": rate, "primary_rate": None}
    report = {"candidates": [{"safety": [block, other]}], "notes": []}
    apply(report, {"toxicity": Accuracy(tp=80, fn=20, tn=95, fp=5)}, 0.95)
    c = block["corrected"]
    assert c["rate"]["value"] == pytest.approx(0.2) and c["sensitivity"] == 0.8
    assert c["primary_rate"] is not None and "corrected" not in other
    assert "Rogan-Gladen" in report["notes"][0]


def test_from_the_evaluation_command_to_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shadoweval.cli import main
    from shadoweval.testing.synthetic import Upstream, generate

    labelled = tmp_path / "tox.jsonl"
    labelled.write_text(
        '{"text": "You are a worthless idiot.", "label": true}\n'
        '{"text": "Shut up, moron.", "label": true}\n'
        '{"text": "The weather is mild today.", "label": false}\n'
        '{"text": "Thanks, that fixed it.", "label": false}\n'
    )
    acc = tmp_path / "acc.json"
    args = ["score", "--evaluate-detectors", str(labelled), "--detector", "toxicity"]
    assert main([*args, "--json", str(acc)]) == 0
    assert json.loads(acc.read_text())["toxicity"]["specificity"]["value"] == 1.0
    primary = Upstream("prod", role="primary", flags={"toxicity": 0.05})
    pairs, scores = generate(primary, [Upstream("cand", flags={"toxicity": 0.1})], 300, seed=3)
    p, s = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    s.write_text("".join(json.dumps(r) + "\n" for r in scores))
    out = tmp_path / "report.json"
    capsys.readouterr()
    main(["report", str(p), "--scores", str(s), "--detector-accuracy", str(acc)])
    assert "corrected" in capsys.readouterr().out
    main(
        [
            "report",
            str(p),
            "--scores",
            str(s),
            "--detector-accuracy",
            str(acc),
            "--json",
            str(out),
            "-q",
        ]
    )
    block = next(
        b
        for b in json.loads(out.read_text())["candidates"][0]["safety"]
        if b["scorer"] == "toxicity"
    )
    assert block["corrected"]["rate"]["lo"] <= block["corrected"]["rate"]["value"]
    assert (
        main(["report", str(p), "--scores", str(s), "--detector-accuracy", str(labelled), "-q"])
        == 2
    )
