"""The validity suite (benchmarks/validity) keeps running: each part on a tiny budget. The
figures themselves come from `benchmarks/validity/run.py`, not from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.validity import verdict, world


def test_the_world_knows_its_truth() -> None:
    # The mean of sigmoid(logit(p) + N(0, 0)) is p itself.
    assert abs(world.true_mean(0.3, 0.0) - 0.3) < 1e-9
    ds = world.world(50, world.Model("prod", "primary"), [world.Model("cand")], seed=1)
    assert len(ds.pairs) == 50
    report = world.report(ds)
    assert report["candidates"][0]["verdict"]["sentence"].startswith("cand: ")


def test_each_part_produces_its_table() -> None:
    # The gate and sentence parts run the same report on bigger worlds: too slow here.
    tables = [verdict.quality_coverage(1, (30,)), verdict.operations_coverage(1, (100,))]
    for t in tables:
        assert t["rows"] and all(len(r) == len(t["columns"]) for r in t["rows"])
