"""The report's intervals and verdicts against a known truth, through the real
``build_report`` (the same code ``shadoweval report`` runs, at the default settings: 95%
confidence, the default rules unless a table says otherwise; 1,000 bootstrap resamples).

Tables: coverage of the quality interval (binary, skewed continuous, rare binary,
clustered; n = 30 to 1,000) and of the operations and safety intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.validity.world import Model, report, true_mean, world

SD = 1.5  # world()'s default difficulty spread on the log-odds
ICC_SD = 1.4


def _covers(est: dict[str, Any], truth: float) -> tuple[bool, bool, bool]:
    """(covered, interval wholly above the truth, wholly below)."""
    lo, hi = est.get("lo"), est.get("hi")
    if lo is None or hi is None:
        return False, False, False
    return lo <= truth <= hi, lo > truth, hi < truth


def _quality_case(
    name: str, prim: float, cand: float, *, continuous: bool = False, clustered: bool = False
) -> tuple[str, Callable[[int, int], Any], float]:
    sd = float(np.hypot(SD, ICC_SD)) if clustered else SD
    noise = 1.0 if continuous else 0.0
    truth = true_mean(cand, sd, noise) / true_mean(prim, sd, noise) - 1

    def make(n: int, seed: int) -> Any:
        return world(
            n,
            Model("prod", "primary", accuracy=prim),
            [Model("cand", accuracy=cand)],
            seed=seed,
            sessions=max(3, n // 10) if clustered else None,
            icc_sd=ICC_SD,
            continuous=continuous,
        )

    return name, make, truth


def quality_coverage(runs: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    cases = [
        _quality_case("binary 0.80 vs 0.76", 0.8, 0.76),
        _quality_case("skewed continuous", 0.7, 0.66, continuous=True),
        _quality_case("rare binary 4% vs 2%", 0.04, 0.02),
        _quality_case("clustered (10 per session)", 0.8, 0.76, clustered=True),
    ]
    rows = []
    for name, make, truth in cases:
        for n in sizes:
            got = []
            for seed in range(runs):
                r = report(make(n, seed))
                b = next(b for b in r["candidates"][0]["quality"] if b["scorer"] == "accuracy")
                cov, above, below = _covers(b["relative_difference"], truth)
                got.append((cov, above, below, b["reliable"]))
            arr = np.array(got, dtype=bool)
            rel = arr[:, 3]
            rows.append(
                [
                    name,
                    n,
                    round(truth, 4),
                    float(arr[:, 0].mean()),
                    float(arr[:, 1].mean()),
                    float(arr[:, 2].mean()),
                    float(rel.mean()),
                    float(arr[rel, 0].mean()) if rel.any() else "-",
                ]
            )
    return {
        "name": "quality interval (relative difference) coverage",
        "target": ">= 0.93 where the report calls the interval reliable; misses on each side <= 0.025 nominal",
        "columns": [
            "data",
            "n",
            "true relative difference",
            "coverage",
            "wholly above truth",
            "wholly below truth",
            "share reliable",
            "coverage where reliable",
        ],
        "rows": rows,
    }


def operations_coverage(runs: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Cost ratio (lognormal, heavy-tailed costs), failure difference (2% vs 1%), the P99
    latency ratio (where the report calls the quantile reliable) and a flag difference."""
    prim = Model("prod", "primary", cost=0.003, failure=0.01, latency=1.0, flags={"pii_leak": 0.03})
    cand = Model("cand", cost=0.001, failure=0.02, latency=0.8, flags={"pii_leak": 0.05})
    # Truths: the lognormal's mean scales with the parameter; the failure difference is the
    # rate difference; the latency quantile ratio is the scale ratio; flags: the difference.
    truths = {"cost ratio": 1 / 3, "failure difference": 0.01, "P99 latency ratio": 0.8}
    truths["pii_leak difference"] = 0.02
    rows = []
    for n in sizes:
        hits: dict[str, list[tuple[bool, bool]]] = {k: [] for k in truths}
        for seed in range(runs):
            r = report(world(n, prim, [cand], seed=seed, per_side=None))
            row = r["candidates"][0]
            ops = row["operations"]
            lat = ops["latency"].get("p99")
            safety = {b["scorer"]: b for b in row["safety"]}
            got = {
                "cost ratio": (ops["cost"].get("ratio"), n >= 30),
                "failure difference": (ops["failure_difference"], True),
                "P99 latency ratio": (lat["ratio"] if lat else None, bool(lat and lat["reliable"])),
                "pii_leak difference": (safety.get("pii_leak", {}).get("difference"), True),
            }
            for k, (est, ok) in got.items():
                hits[k].append((_covers(est or {}, truths[k])[0], ok))
        for k, v in hits.items():
            arr = np.array(v, dtype=bool)
            ok = arr[:, 1]
            rows.append(
                [
                    k,
                    n,
                    truths[k],
                    float(arr[:, 0].mean()),
                    float(ok.mean()),
                    float(arr[ok, 0].mean()) if ok.any() else "-",
                ]
            )
    return {
        "name": "operations and safety interval coverage",
        "target": ">= 0.93 where the report calls the interval reliable",
        "columns": [
            "interval",
            "n",
            "truth",
            "coverage",
            "share reliable",
            "coverage where reliable",
        ],
        "rows": rows,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    runs = 30 if quick else 150
    sizes = (30, 100, 300) if quick else (30, 100, 300, 1000)
    return [
        quality_coverage(runs, sizes),
        operations_coverage(runs, sizes[1:]),
    ]


if __name__ == "__main__":
    import json
    import sys

    for table in run("--quick" in sys.argv):
        print(json.dumps(table, indent=1))
