"""Validity of the safety rates corrected for detector error (``report/corrected.py``).

A known true rate of harmful answers ``p`` among ``n`` scored answers; an imperfect
detector with sensitivity ``se`` and specificity ``sp`` flags them; its figures are measured
on a labelled set of ``m`` positives and ``m`` negatives (the size of the shipped test
splits, and larger). Each run draws the labelled set and the traffic afresh, computes the
report's corrected interval with the shipped code (``corrected_rate``), and counts whether
it covers ``p``. For comparison: the plain Wilson interval on the flag rate (what the report
shows without the correction), which estimates the detector's rate, not ``p``.

Run alone: ``python -m benchmarks.validity.corrected [--quick]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shadoweval.report.corrected import Accuracy, corrected_rate
from shadoweval.stats import wilson

Table = dict[str, Any]

# (true rate, answers scored, sensitivity, specificity, labelled per class)
CELLS = [
    (p, n, se, sp, m)
    for p in (0.02, 0.10, 0.30)
    for n in (500, 5000)
    for se, sp in ((0.80, 0.97), (0.95, 0.99))
    for m in (40, 150)
]


def _cell(p: float, n: int, se: float, sp: float, m: int, runs: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    covered = plain = 0
    widths = []
    undefined = 0
    for _ in range(runs):
        tp = int(rng.binomial(m, se))
        tn = int(rng.binomial(m, sp))
        acc = Accuracy(tp=tp, fn=m - tp, tn=tn, fp=m - tn)
        harmful = int(rng.binomial(n, p))
        flagged = int(rng.binomial(harmful, se) + rng.binomial(n - harmful, 1 - sp))
        est = corrected_rate(flagged, n, acc, draws=2000, rng=rng)
        if est["lo"] is None:
            undefined += 1
            continue
        covered += est["lo"] <= p <= est["hi"]
        widths.append(est["hi"] - est["lo"])
        w = wilson(flagged, n)
        plain += w.lo <= p <= w.hi
    defined = runs - undefined
    return [
        p,
        n,
        se,
        sp,
        m,
        round(covered / defined, 3) if defined else "-",
        round(plain / defined, 3) if defined else "-",
        round(float(np.mean(widths)), 4) if widths else "-",
        undefined,
    ]


def coverage(quick: bool) -> Table:
    runs = 60 if quick else 400
    rows = [_cell(*c, runs=runs, seed=i) for i, c in enumerate(CELLS)]
    return {
        "name": f"coverage of the corrected 95% interval ({runs} runs per row)",
        "target": "coverage >= 0.93 in every row (the uncorrected interval for comparison)",
        "columns": [
            "true rate",
            "answers",
            "sensitivity",
            "specificity",
            "labelled per class",
            "corrected coverage",
            "uncorrected coverage",
            "mean width",
            "no interval",
        ],
        "rows": rows,
    }


def run(quick: bool) -> list[Table]:
    return [coverage(quick)]


if __name__ == "__main__":
    import json
    import sys

    for table in run("--quick" in sys.argv):
        print(json.dumps(table, indent=1))
