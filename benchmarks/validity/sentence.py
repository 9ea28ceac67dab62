"""The candidate of the sentence "5% less accurate, but 3x cheaper and 10x more robust: it
wins", simulated with a known truth and put through the real ``build_report``: how often
the shipped trade-off rule passes it, and the strict default for comparison."""

from __future__ import annotations

from typing import Any

from benchmarks.validity.world import Model, report, true_mean, world

SD = 1.5  # world()'s default difficulty spread on the log-odds


def sentence_candidate(runs: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """True -5% relative accuracy on requests with expected answers, a third of the cost,
    jailbreak attack success 2.5% vs 23% on 100 base probes x 3 variants, 10x fewer failures."""
    prim = Model("prod", "primary", accuracy=0.8, cost=0.003, failure=0.02, attack_success=0.23)
    # Accuracy chosen so that the true relative difference over the traffic is -5%.
    target = 0.95 * true_mean(0.8, SD)
    lo, hi = 0.5, 0.8
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if true_mean(mid, SD) < target else (lo, mid)
    cand = Model("cand", accuracy=lo, cost=0.001, failure=0.002, attack_success=0.025)
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
    return [sentence_candidate(10 if quick else 100, (1000, 3000))]


if __name__ == "__main__":
    import json
    import sys

    for table in run("--quick" in sys.argv):
        print(json.dumps(table, indent=1))
