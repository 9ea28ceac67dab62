"""The atheris target runs cleanly for a bounded number of inputs (a smoke run in CI; run it
for minutes by hand, see fuzz_openai.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).with_name("fuzz_openai.py")
REPO = TARGET.parents[2]


def test_atheris_target_finds_no_crash_in_a_short_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris has wheels for Linux x86_64 only")
    limits = ["-runs=4000", "-max_total_time=30", "-rss_limit_mb=1024"]
    proc = subprocess.run(
        [sys.executable, str(TARGET), *limits, f"-artifact_prefix={tmp_path}/"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done 4000 runs" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]
