"""The report's numbers against a frozen report: the same synthetic input, built by the
engine of the time the fixture was written (tests/data/report_frozen.json). Counts, point
estimates, statuses and the gate must be equal; interval bounds within bootstrap noise.

Regenerate the fixture (only when a change of figures is intended and explained):

    python -m tests.unit.test_report_frozen
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
from shadoweval.pricing import PriceTable
from shadoweval.report import build_report, load
from shadoweval.testing.synthetic import Upstream, generate

Json = dict[str, Any]
FIXTURE = Path(__file__).parent.parent / "data" / "report_frozen.json"
PRIMARY = Upstream("prod", role="primary", model="prod-model", accuracy=0.8, cost_usd=0.002)
OTHERS = [
    Upstream("prod-again", role="control", model="prod-model", accuracy=0.8, cost_usd=0.002),
    Upstream(
        "worse",
        model="worse-model",
        accuracy=0.65,
        latency_s=0.4,
        cost_usd=0.001,
        flags={"toxicity": 0.06},
        error_rate=0.03,
        stream=True,
    ),
    Upstream("same", model="same-model", accuracy=0.8, latency_s=0.9, retry_rate=0.05),
]
TASKS = ("simple", "reasoning", "code")
RULES = DecisionRules(quality_max_drop=0.05, cost_max_ratio=2.0, latency_max_ratio=1.5)
BY = ("task",)
# Fields read off the intervals (p-values, sentences) move with them.
FROM_INTERVALS = {
    *("p_worse", "p_better", "p_fail", "line", "lines", "detail", "secondary", "sentence"),
    "generated_at",
}
RUN_PATHS = {"/inputs/pairs", "/inputs/scores"}  # the run's own file names
N_REQUESTS = 900


def inputs(directory: Path) -> tuple[Path, Path]:
    """Three tasks, one session in five clustered, a streaming candidate with flags."""
    pairs, scores = generate(
        PRIMARY,
        OTHERS,
        N_REQUESTS,
        seed=11,
        per_side=("exact", "token_f1"),
        pair_scorers=("semantic",),
        judge=True,
    )
    for rec in (*pairs, *scores):
        i = int(rec["request_id"][3:])
        rec["task"] = TASKS[i % len(TASKS)]
        if rec["schema"] == "shadoweval.pair.v1" and i % 5 == 0:
            rec["sampling_key"] = f"session-{i // 10}"
    p, s = directory / "pairs.jsonl", directory / "scores.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    s.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scores))
    return p, s


def report(directory: Path) -> Json:
    p, s = inputs(directory)
    cfg = Report(rules=RULES, bootstrap_resamples=2000, worst_examples=2)
    return build_report(load([p], [s], engine="duckdb"), cfg, PriceTable(Pricing()), by=BY)


def _walk(node: Any, path: str, out: dict[str, Any], intervals: dict[str, Json]) -> None:
    if isinstance(node, dict):
        if {"value", "lo", "hi", "n"} <= node.keys():
            out[f"{path}/value"], out[f"{path}/n"] = node["value"], node["n"]
            intervals[path] = node
            return
        for k, v in node.items():
            if k not in FROM_INTERVALS:
                _walk(v, f"{path}/{k}", out, intervals)
    elif isinstance(node, list):
        if path in RUN_PATHS:
            return
        for i, v in enumerate(node):
            _walk(v, f"{path}/{i}", out, intervals)
    elif path not in RUN_PATHS:
        out[path] = node


def _same(a: Any, b: Any, path: str) -> bool:
    if "/verdict/" in path and path.endswith("pairs_needed") and a and b:
        # Read off an interval's distance to the bound: it moves with the interval.
        return bool(abs(a - b) <= 0.3 * a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return bool(a == b)


def test_report_numbers_match_the_frozen_report(tmp_path: Path) -> None:
    frozen = orjson.loads(FIXTURE.read_bytes())
    new = report(tmp_path)
    old_leaves: dict[str, Any] = {}
    old_int: dict[str, Json] = {}
    new_leaves: dict[str, Any] = {}
    new_int: dict[str, Json] = {}
    _walk(frozen, "", old_leaves, old_int)
    _walk(new, "", new_leaves, new_int)
    # What the frozen report has, the new one has the same (it may add figures).
    missing = old_leaves.keys() - new_leaves.keys()
    assert missing == set(), sorted(missing)
    differ = {k for k in old_leaves if not _same(old_leaves[k], new_leaves[k], k)}
    assert differ == set(), sorted(differ)[:20]
    compared = 0
    for path, o in old_int.items():
        nw = new_int[path]
        if o["lo"] is None or o["hi"] is None:
            assert nw["lo"] is None or nw["hi"] is None or o["lo"] == o["hi"], path
            continue
        width = o["hi"] - o["lo"]
        # Two bootstraps of 2000 draws: each bound moves by a few % of the width.
        for bound in ("lo", "hi"):
            assert abs(nw[bound] - o[bound]) <= 0.2 * width + 1e-12, (path, o, nw)
        compared += 1
    assert compared > 100


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = report(Path(tmp))
    FIXTURE.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"wrote {FIXTURE}")
