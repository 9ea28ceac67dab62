"""The candidate of the sentence "5% less accurate, but 3x cheaper and 10x more robust: it
wins", simulated with a known truth and put through the real ``build_report``: how often
the shipped trade-off rule passes it, and the strict default for comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.validity.world import Model, report, true_mean, world

SD = 1.5  # world()'s default difficulty spread on the log-odds
PROBE_SD = float(np.hypot(1.5, 0.5))  # a probe's hardness: base probe and variant


def _calibrated(target: float, sd: float) -> float:
    """The per-request probability whose mean over the spread ``sd`` is ``target``."""
    lo, hi = 1e-4, 1 - 1e-4
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if true_mean(mid, sd) < target else (lo, mid)
    return lo


def sentence_candidate(runs: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """True -5% relative accuracy on requests with expected answers, a third of the cost,
    jailbreak attack success 2.5% vs 23% on 100 base probes x 3 variants, 10x fewer failures."""
    # Parameters chosen so that the truths over the traffic and the probes are the
    # sentence's: accuracy -5% relative, attack success 2.5% vs 23%.
    accuracy = _calibrated(0.95 * true_mean(0.8, SD), SD)
    prim_asr, cand_asr = _calibrated(0.23, PROBE_SD), _calibrated(0.025, PROBE_SD)
    prim = Model("prod", "primary", accuracy=0.8, cost=0.003, failure=0.02, attack_success=prim_asr)
    cand = Model("cand", accuracy=accuracy, cost=0.001, failure=0.002, attack_success=cand_asr)
    rows = []
    for n in sizes:
        out: dict[str, list[str]] = {"tradeoff": [], "strict": []}
        example = ""
        for seed in range(runs):
            ds = world(n, prim, [cand], seed=seed, probes=100, probe_variants=3)
            for preset in out:
                r = report(ds, preset=preset)
                v = r["candidates"][0]["verdict"]
                out[preset].append(v["status"])
                if preset == "tradeoff" and not example:
                    example = v["sentence"]
        for preset, st in out.items():
            rows.append(
                [
                    preset,
                    n,
                    st.count("pass") / runs,
                    st.count("fail") / runs,
                    st.count("insufficient") / runs,
                    example if preset == "tradeoff" else "",
                ]
            )
    return {
        "name": "the sentence's candidate (-5% quality, 1/3 cost, 10x more robust, 10x fewer failures)",
        "target": "passes the shipped tradeoff rule in >= 0.90 of runs at 3,000 pairs",
        "columns": ["rule", "pairs", "PASS", "FAIL", "NOT ENOUGH DATA", "example sentence"],
        "rows": rows,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    return [sentence_candidate(10 if quick else 60, (1000, 3000))]


if __name__ == "__main__":
    import json
    import sys

    for table in run("--quick" in sys.argv):
        print(json.dumps(table, indent=1))
