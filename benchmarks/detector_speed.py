"""What the safety detectors cost: pairs per CPU-second for each detector and for the
default scoring set, on this checkout and (optionally) on another one for comparison.

    git worktree add ../shadoweval-main main        # once, for the comparison
    .venv/bin/python benchmarks/detector_speed.py --baseline-src ../shadoweval-main

Uses the synthetic pairs of benchmarks/scorers.py (answers of ~12, ~120 and ~480 words,
a system prompt, tool calls) and its measuring functions; each figure is the best of
--repeats runs, in CPU-seconds (time.process_time), which other processes on the machine
do not inflate. The baseline is the same script run in a child process with PYTHONPATH set
to --baseline-src. Writes benchmarks/results/detector_speed.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
import scorers

DETECTORS = ["refusal", "over_refusal", "pii_leak", "secret_leak", "canary_leak", "toxicity"]
RESULTS = Path(__file__).parent / "results"


async def measure(pairs: int, repeats: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for length, words in scorers.LENGTHS.items():
        records = scorers.make_pairs(pairs if length == "short" else pairs // 4, words)
        for name in [*DETECTORS, "default set"]:
            best = 0.0
            for _ in range(repeats):
                if name == "default set":
                    rate = await scorers.bench_default_set(records)
                else:
                    rate = await scorers.bench_scorer(name, records, scorers._config())
                best = max(best, rate["pairs_per_cpu_s"])
            out.setdefault(name, {})[length] = best
    return out


async def gated(pairs: int) -> dict[str, float]:
    """The refusal scorer on short answers that each hold a gate word ("not"), with the
    embedding classifier (``model: true``), the n-gram classifier (the default) and the
    patterns alone: what a classifier costs per answer it reads (every text distinct, so
    its cache does not help)."""
    records = scorers.make_pairs(pairs, scorers.LENGTHS["short"], seed=7)
    for i, r in enumerate(records):
        for side in ("primary", "candidate"):
            r[side]["output_text"] = f"That is not item {i} {side}: " + r[side]["output_text"]
    from shadoweval.score.detectors import refusal_ngram

    out = {}
    shipped = refusal_ngram.shared
    for label, model, ngram in (
        ("embedding classifier (model: true)", True, True),
        ("n-gram classifier (default)", False, True),
        ("patterns only", False, False),
    ):
        refusal_ngram.shared = shipped if ngram else lambda: None  # type: ignore[assignment]
        cfg = scorers._config(safety={"canaries": [], "refusal": {"model": model}})
        rate = await scorers.bench_scorer("refusal", records, cfg)
        out[label] = rate["pairs_per_cpu_s"]
    refusal_ngram.shared = shipped  # type: ignore[assignment]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-src", type=Path, help="another checkout to compare with")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = ap.parse_args()
    this = asyncio.run(measure(args.pairs, args.repeats))
    if args.json:
        print(json.dumps(this))
        return 0
    base: dict[str, dict[str, float]] | None = None
    if args.baseline_src is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
        cmd = [sys.executable, __file__, "--json", "--pairs", str(args.pairs),
               "--repeats", str(args.repeats)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        base = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [
        "# Safety detector cost",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}), load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}. Pairs per CPU-second, best of "
        f"{args.repeats}; answers of ~12, ~120 and ~480 words."
        + (" In parentheses: the baseline checkout, then this/baseline." if base else ""),
        "",
        "| scorer | short | medium | long |",
        "|---|---:|---:|---:|",
    ]
    for name, by_len in this.items():
        cells = []
        for length in scorers.LENGTHS:
            v = by_len[length]
            if base and name in base:
                b = base[name][length]
                cells.append(f"{v:,.0f} ({b:,.0f}, {v / b:.2f}x)")
            else:
                cells.append(f"{v:,.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    negated = asyncio.run(gated(max(20, args.pairs // 20)))
    lines += [
        "",
        "Refusal on short answers that each hold a gate word (pairs per CPU-second; two",
        "answers read per pair):",
        "",
        "| refusal second reading | pairs per CPU-second |",
        "|---|---:|",
        *(f"| {k} | {v:,.0f} |" for k, v in negated.items()),
    ]
    data: dict[str, Any] = {"this": this, "baseline": base, "gated": negated, "args": {
        **vars(args), "baseline_src": bool(args.baseline_src)}}  # fmt: skip
    harness.write_results(RESULTS / "detector_speed", data, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
