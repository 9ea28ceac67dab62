"""The gate's false failure rate with candidates identical to the primary, with and
without a control, one and three candidates, through the real ``build_report``."""

from __future__ import annotations

from typing import Any

from benchmarks.validity.world import Model, report, world


def gate_false_failures(runs: int, n: int, full: bool = False) -> dict[str, Any]:
    """Candidates identical to the primary (the same model sampled again: the same accuracy,
    agreement 0.5 with the primary's answer, the same flag rates and failures). The cost and
    latency rules are off or generous (an identical candidate truly fails "half the price")."""
    flags = {
        k: 0.03 for k in ("pii_leak", "secret_leak", "toxicity", "canary_leak", "over_refusal")
    }
    configs = [
        (k, control, scorers)
        for k in (1, 3)
        for control in (False, True)
        for scorers in ("agreement only", "agreement + per side")
        # The defect was without a control; with one, agreement alone is read against it.
        if not (full and control and scorers == "agreement only")
    ]
    rows = []
    for k, control, scorers in configs:
        others = [Model(f"same{i}", flags=flags, failure=0.02) for i in range(k)]
        if control:
            others.append(Model("control", "control", flags=flags, failure=0.02))
        fails = per_cand = insufficient = 0
        for seed in range(runs):
            ds = world(
                n,
                Model("prod", "primary", flags=flags, failure=0.02),
                others,
                seed=seed,
                agreement="exact",
                per_side=None if scorers == "agreement only" else "accuracy",
            )
            r = report(ds, cost_max_ratio=None, latency_max_ratio=1.2)
            st = [c["verdict"]["status"] for c in r["candidates"]]
            fails += r["gate"] == "fail"
            per_cand += sum(s == "fail" for s in st)
            insufficient += r["gate"] == "insufficient"
        rows.append(
            [
                k,
                "yes" if control else "no",
                scorers,
                n,
                fails / runs,
                per_cand / (runs * k),
                insufficient / runs,
            ]
        )
    return {
        "name": "gate false failures with identical candidates",
        "target": "gate fails <= 0.05 (stated: <= 0.025, Holm across every check of every candidate)",
        "columns": [
            "identical candidates",
            "control",
            "scorers",
            "pairs",
            "gate FAIL rate",
            "per-candidate FAIL rate",
            "gate NOT ENOUGH DATA rate",
        ],
        "rows": rows,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    return [gate_false_failures(30 if quick else 100, 300 if quick else 1000, full=not quick)]


if __name__ == "__main__":
    import json
    import sys

    for table in run("--quick" in sys.argv):
        print(json.dumps(table, indent=1))
