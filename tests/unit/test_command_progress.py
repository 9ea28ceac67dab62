"""What the long commands show while they work when stderr is not a terminal (a CI log):
a few plain progress lines ending at 100%, never a bar's control characters. `replay` and
`probe` are checked in their integration tests (they need fake upstreams)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shadoweval.cli import main
from tests.score_helpers import pair_record


def progress_lines(err: str, label: str) -> list[str]:
    assert "\r" not in err and "\x1b" not in err, err  # no bar redrawn in a log
    return [line for line in err.splitlines() if line.startswith(f"{label} ")]


def pairs_file(path: Path, records: int) -> Path:
    lines = [json.dumps(pair_record(pair_id=f"r{i}:cand")) for i in range(records)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_score_once_shows_the_share_of_the_file_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl", 40)
    config = tmp_path / "scorer.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {"kind": "file", "path": str(pairs), "batch_max_records": 4},
                "sink": {"kind": "file", "path": str(tmp_path / "scores.jsonl")},
                "scorers": {"default": ["exact"]},
            }
        )
    )
    assert main(["score", "--config", str(config), "--once"]) == 0
    captured = capsys.readouterr()
    shown = progress_lines(captured.err, "scored")
    assert shown and shown[-1] == "scored 100%" and len(shown) <= 11, captured.err
    assert captured.out.startswith("scored 40 pairs")


def test_dataset_build_shows_the_share_of_the_input_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl", 30)
    out = tmp_path / "set.jsonl"
    assert main(["dataset", "build", str(pairs), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    shown = progress_lines(captured.err, "read")
    assert shown and shown[-1] == "read 100%" and len(shown) <= 11, captured.err
    assert out.exists()
