"""The model-based refusal check: combined with the patterns, named in the explanation,
and absent without the semantic extra."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import SafetySettings
from shadoweval.score import embeddings
from shadoweval.score.detectors import refusal_model, refusal_ngram
from shadoweval.score.detectors.refusal import RefusalDetector
from shadoweval.score.detectors.refusal_model import ModelReading
from shadoweval.score.scorers.safety import _detector


class _Fixed:
    """A stand-in classifier: says yes to everything it is asked about."""

    name = "embedding classifier"
    threshold = 0.5
    wants = staticmethod(refusal_model.RefusalModel.wants)

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, text: str) -> ModelReading:
        self.asked.append(text)
        return ModelReading(0.9, True)


def test_the_model_reads_only_what_the_patterns_let_through() -> None:
    model = _Fixed()
    d = RefusalDetector(model=model)  # type: ignore[arg-type]
    assert d("I can't help with that.").method == "patterns"
    r = d("Sorry, that one is beyond me today.")
    assert r.refused and r.method == "model"
    assert "embedding classifier p=0.90" in r.explanation
    assert d("Paris is the capital of France.").label is None  # no gate word: not encoded
    assert model.asked == ["Sorry, that one is beyond me today."]


def test_without_the_semantic_extra_the_patterns_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent() -> None:
        raise ConfigError("no weights")

    monkeypatch.setattr(embeddings, "default_model_path", absent)
    assert refusal_model.load() is None
    assert RefusalDetector(model=None)("Sorry, that one is beyond me today.").label is None


def test_the_shipped_model_loads_and_reads_a_refusal() -> None:
    model = refusal_model.shared()
    if model is None:
        pytest.skip("the semantic extra is not installed")
    assert model("I'm sorry, but I can't help with that request.").probability > 0.5
    assert model("The train leaves at nine from platform four.").probability < 0.5


def test_the_evaluation_command_runs_with_a_scorer_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shadoweval.cli import main

    labelled = tmp_path / "mine.jsonl"
    labelled.write_text('{"text": "Our policy says no: contact a human agent.", "label": true}\n')
    cfg = tmp_path / "scorer.yaml"
    cfg.write_text("safety:\n  refusal:\n    extra_patterns: ['\\bcontact a human agent\\b']\n")
    args = ["score", "--evaluate-detectors", str(labelled), "--detector", "refusal"]
    assert main(args) == 0
    assert counts(capsys.readouterr().out) == ["0", "0", "1", "0"]  # tp fp fn tn
    assert main([*args, "--config", str(cfg)]) == 0
    assert counts(capsys.readouterr().out) == ["1", "0", "0", "0"]


def counts(out: str) -> list[str]:
    """tp, fp, fn, tn of the table's "all" row."""
    row = next(line for line in out.splitlines() if line.startswith("all "))
    return row.split()[-4:]


def test_ngram_features_are_unit_length_and_casefolded() -> None:
    f = refusal_ngram.features("Sorry,   NO")
    assert abs(sum(v * v for v in f.values()) - 1.0) < 1e-9
    assert " no " in f and " NO " not in f  # whitespace collapsed, padded, casefolded


def test_an_ngram_classifier_reads_what_the_patterns_let_through() -> None:
    model = refusal_ngram.NgramRefusalModel({"sor": 40.0}, bias=-1.0, threshold=0.5)
    d = RefusalDetector(model=model)
    r = d("Sorry, that one is beyond me today.")
    assert r.refused and r.method == "model"
    assert "n-gram classifier p=" in r.explanation
    assert d("The store opens at nine.").label is None  # no gate word: not read


def test_the_shipped_ngram_classifier_is_the_default_second_reading() -> None:
    model = refusal_ngram.shared()
    assert model is not None
    assert model("Lo siento, no puedo ayudarte con eso.").probability > 0.5
    assert model("The train leaves at nine from platform four.").probability < 0.5
    assert _detector(SafetySettings())._model is model
