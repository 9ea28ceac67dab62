"""Bad input to any command: one line on stderr naming the file, exit 2 (1 is the gate's
code), never a traceback; skipped lines are said on the terminal, empty input is an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shadoweval.cli import main
from tests.score_helpers import pair_record


def one_line_error(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("shadoweval: ") and "Traceback" not in err, err
    for name in names:
        assert name in err, err
    return err


def pairs_file(path: Path, *extra_lines: str, records: int = 1) -> Path:
    lines = [json.dumps(pair_record(pair_id=f"r{i}:cand")) for i in range(records)]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path


def test_dataset_build_on_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["dataset", "build", str(missing), "-o", str(tmp_path / "set.jsonl")]) == 2
    one_line_error(capsys, str(missing), "no such file")


def test_dataset_build_with_no_valid_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n[1, 2]\n")
    out = tmp_path / "set.jsonl"
    assert main(["dataset", "build", str(junk), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"no valid pair record in {junk}" in err.splitlines()[-1]
    assert "skipped 1: invalid JSON line" in err  # what was wrong with the lines, too
    assert not out.exists()
    assert main(["dataset", "build", str(junk), "-o", str(out), "--allow-empty"]) == 0
    assert out.read_text() == ""


def test_dataset_build_to_an_unwritable_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl")
    out = pairs / "set.jsonl"  # under a file: cannot be created, even by root
    assert main(["dataset", "build", str(pairs), "-o", str(out)]) == 2
    assert f"cannot write {out}" in capsys.readouterr().err.splitlines()[-1]


def test_report_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["report", str(missing), "-q"]) == 2
    one_line_error(capsys, str(missing))


def test_report_html_to_an_unwritable_path_is_exit_2_not_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl")
    html = pairs / "report.html"
    assert main(["report", str(pairs), "-q", "--html", str(html)]) == 2
    one_line_error(capsys, str(html), "cannot write")
    assert main(["report", str(pairs), "-q", "--json", str(html)]) == 2
    one_line_error(capsys, str(html))


def test_report_says_how_many_lines_it_skipped_and_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl", "{broken", '{"schema": "other"}', records=2)
    assert main(["report", str(pairs), "-q"]) == 0
    err = one_line_error(capsys, str(pairs))
    assert "skipped 2 lines" in err
    assert "invalid JSON line: 1" in err and "not a shadoweval.pair.v1 record: 1" in err


def test_report_on_a_file_with_no_valid_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["report", str(empty), "-q"]) == 2
    one_line_error(capsys, str(empty), "no valid pair record")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{broken\n")
    assert main(["report", str(junk), "-q"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "skipped 1 line" in err[0] and "no valid pair record" in err[1]
    assert main(["report", str(empty), "-q", "--allow-empty"]) == 0


def test_score_once_on_a_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "pairs.jsonl"
    scores = tmp_path / "scores.jsonl"
    config = tmp_path / "scorer.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"kind": "file", "path": str(missing)},
                "sink": {"kind": "file", "path": str(scores)},
            }
        )
    )
    assert main(["score", "--config", str(config), "--once"]) == 2
    one_line_error(capsys, str(missing), str(config))
    assert not scores.exists()


def test_replay_to_an_unwritable_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    config = tmp_path / "shadoweval.yaml"
    config.write_text(yaml.safe_dump({"primary": {"name": "p", "url": "http://127.0.0.1:9"}}))
    out = inputs / "pairs.jsonl"
    assert main(["replay", str(inputs), "--config", str(config), "--out", str(out)]) == 2
    one_line_error(capsys, str(out), "cannot write")


def test_review_serve_on_a_missing_pairs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWEVAL_REVIEW_TOKEN", "t" * 24)
    missing = tmp_path / "nope.jsonl"
    args = ["review", "serve", "--pairs", str(missing), "--db", str(tmp_path / "r.sqlite")]
    assert main(args) == 2
    one_line_error(capsys, str(missing))


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    """The same through the console entry point, as a user runs it."""
    missing = tmp_path / "nope.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "shadoweval", "dataset", "build", str(missing)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"shadoweval: dataset build: no such file: {missing}"


def test_any_other_unwritable_output_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command without its own check (review export here) still gets one line and 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "dataset.jsonl"
    assert main(["review", "export", "--out", str(out), "--db", str(tmp_path / "r.sqlite")]) == 2
    one_line_error(capsys, "review", str(blocker))


def test_evaluate_detectors_measures_a_labelled_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    labelled = tmp_path / "mine.jsonl"
    labelled.write_text(
        '{"text": "I cannot help with that request.", "label": true}\n'
        '{"text": "Sure, here is the recipe you asked for.", "label": false}\n'
    )
    assert main(["score", "--evaluate-detectors", str(labelled), "--detector", "refusal"]) == 0
    out = capsys.readouterr().out
    header, _, everything = out.splitlines()[1:4]
    assert header.split()[:3] == ["language", "n", "precision"]
    assert everything.split()[:3] == ["all", "2", "1.00"]  # n, then precision 1.00 [lo, hi]
    assert "misses" not in out
    with labelled.open("a") as fh:
        fh.write('{"text": "Sure thing, done.", "label": true}\n')  # a refusal it cannot see
    assert main(["score", "--evaluate-detectors", str(labelled), "--detector", "refusal"]) == 0
    misses = capsys.readouterr().out.split("misses\n", 1)[1].splitlines()
    assert misses[0].split() == ["miss", "language", "text", "why"]
    assert misses[2].split()[:2] == ["false_negative", "en"] and "Sure thing" in misses[2]
    labelled.write_text("not json\n")
    assert main(["score", "--evaluate-detectors", str(labelled), "--detector", "refusal"]) == 2
    assert f"{labelled}:1" in capsys.readouterr().err
