"""Robustness from probes: coverage of the clustered attack-success intervals, the probe gate's
false failures and its power, against a known truth.

A simulated probe set has C base probes, each with 1-6 variants (uniform). Each base probe
has its own susceptibility: the more often attacked model's success probability q_c is drawn
from a beta distribution (intra-cluster correlation 0.3, so variants of one base probe tend
to fall together) and the other model's is q_c / R for R = 1, 2 or 10 (the candidate is the
former when it is less robust, the latter when more). On each variant the two models share
one uniform draw half of the time (the same wording breaks both) and draw independently
otherwise, so the two sides are paired as real probe runs are. The truth is each model's
expected ASR over base probes; their ratio is exactly R.

Every interval and decision is made by ``shadoweval.stats.paired_rates``, the function behind
both the report's robustness section and ``shadoweval probe --fail-on``; "reliable" and
"flagged worse/better" are ``shadoweval.report.robustness.reliable`` and ``direction``.

    .venv/bin/python -m benchmarks.validity.robustness [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shadoweval.report.robustness import direction, reliable
from shadoweval.stats import PairedRates, paired_rates, wilson

Table = dict[str, Any]
ICC = 0.3


@dataclass(frozen=True)
class Scenario:
    clusters: int
    base_asr: float
    ratio: float  # candidate ASR / baseline ASR, on every base probe
    variants: tuple[int, int] = (1, 6)  # variants per base probe, uniform
    icc: float = ICC


def _cluster_probs(rng: np.random.Generator, p: float, icc: float, size: int) -> NDArray[Any]:
    if icc <= 0:
        return np.full(size, p)
    k = (1 - icc) / icc
    return rng.beta(p * k, (1 - p) * k, size)


def truth(s: Scenario) -> tuple[float, float]:
    """(candidate ASR, baseline ASR) over the population of base probes."""
    return s.base_asr * s.ratio, s.base_asr


def _probs(rng: np.random.Generator, s: Scenario) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per base probe: (candidate, baseline) success probabilities."""
    if s.ratio <= 1:
        pb = _cluster_probs(rng, s.base_asr, s.icc, s.clusters)
        return s.ratio * pb, pb
    pc = _cluster_probs(rng, s.base_asr * s.ratio, s.icc, s.clusters)
    return pc, pc / s.ratio


def draw(
    rng: np.random.Generator, s: Scenario
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """(candidate successes, baseline successes, base probe of each probe)."""
    lo, hi = s.variants
    sizes = rng.integers(lo, hi + 1, s.clusters)
    pc, pb = _probs(rng, s)
    labels = np.repeat(np.arange(s.clusters), sizes)
    u = rng.random(labels.size)
    v = np.where(rng.random(labels.size) < 0.5, u, rng.random(labels.size))
    base = (u < pb[labels]).astype(np.float64)
    cand = (v < pc[labels]).astype(np.float64)
    return cand, base, labels


def _covers(lo: float, hi: float, value: float) -> bool:
    return bool(lo <= value <= hi)


def _share(values: Sequence[bool]) -> float | str:
    return round(float(np.mean(values)), 3) if values else "-"


def _coverage_row(rng: np.random.Generator, s: Scenario, runs: int) -> list[Any]:
    tc, tb = truth(s)
    flags: list[bool] = []
    cov: dict[str, list[bool]] = {k: [] for k in ("asr", "diff", "ratio", "wilson")}
    kept: dict[str, list[bool]] = {k: [] for k in ("asr", "diff", "ratio")}
    for _ in range(runs):
        cand, base, labels = draw(rng, s)
        r = paired_rates(cand, base, labels.tolist())
        hits = {
            "asr": _covers(r.first.lo, r.first.hi, tc),
            "diff": _covers(r.difference.lo, r.difference.hi, tc - tb),
            "ratio": _covers(r.ratio.lo, r.ratio.hi, tb / tc),
        }
        w = wilson(int(cand.sum()), int(cand.size))
        cov["wilson"].append(_covers(w.lo, w.hi, tc))
        ok = reliable(r)
        flags.append(ok)
        for k, hit in hits.items():
            cov[k].append(hit)
            if ok:
                kept[k].append(hit)
    return [
        s.clusters,
        f"{s.variants[0]}-{s.variants[1]}",
        s.base_asr,
        round(tc, 4),
        runs,
        _share(flags),
        _share(kept["asr"]),
        _share(kept["diff"]),
        _share(kept["ratio"]),
        _share(cov["asr"]),
        _share(cov["diff"]),
        _share(cov["ratio"]),
        _share(cov["wilson"]),
    ]


def coverage(rng: np.random.Generator, runs: int) -> Table:
    rows = []
    for clusters in (10, 20, 35, 50):
        for base in (0.02, 0.1, 0.3):
            for ratio in (1.0, 2.0, 0.1):
                rows.append(_coverage_row(rng, Scenario(clusters, base, ratio), runs))
    # No clustering at all (one probe per base probe) and no correlation between variants.
    rows.append(_coverage_row(rng, Scenario(100, 0.1, 2.0, (1, 1), 0.0), runs))
    rows.append(_coverage_row(rng, Scenario(35, 0.1, 2.0, (1, 6), 0.0), runs))
    return {
        "name": "coverage of the robustness intervals (95%, clustered by base probe)",
        "target": ">= 0.93 wherever reliable (columns 'reliable: ...'); the last column is "
        "the Wilson interval that treats variants as independent, for comparison",
        "columns": [
            "base probes",
            "variants",
            "baseline ASR",
            "candidate ASR",
            "runs",
            "reliable share",
            "reliable: candidate ASR",
            "reliable: difference",
            "reliable: ratio",
            "all: candidate ASR",
            "all: difference",
            "all: ratio",
            "all: Wilson (variants independent)",
        ],
        "rows": rows,
    }


def categories(rng: np.random.Generator, runs: int) -> Table:
    """One probe set of three categories: the overall row and each category's row."""
    specs = [Scenario(20, 0.02, 2.0), Scenario(20, 0.1, 2.0), Scenario(20, 0.3, 0.5)]
    truths = [truth(s) for s in specs]
    # Overall truth: categories weighted by their expected number of probes (equal here).
    tc = float(np.mean([t[0] for t in truths]))
    tb = float(np.mean([t[1] for t in truths]))
    overall: dict[str, list[bool]] = {"asr": [], "diff": [], "ratio": [], "flag": []}
    per: list[dict[str, list[bool]]] = [
        {"asr": [], "diff": [], "ratio": [], "flag": []} for _ in specs
    ]
    for _ in range(runs):
        parts = [draw(rng, s) for s in specs]
        for i, (cand, base, labels) in enumerate(parts):
            _record(per[i], paired_rates(cand, base, labels.tolist()), *truths[i])
        cand = np.concatenate([p[0] for p in parts])
        base = np.concatenate([p[1] for p in parts])
        labels = np.concatenate([p[2] + 1000 * i for i, p in enumerate(parts)])
        _record(overall, paired_rates(cand, base, labels.tolist()), tc, tb)
    rows = [_category_row("overall", 60, tb, tc, overall)]
    for name, s, (ctc, ctb), got in zip(
        ("jailbreak-like", "injection-like", "leakage-like"), specs, truths, per, strict=True
    ):
        rows.append(_category_row(name, s.clusters, ctb, ctc, got))
    return {
        "name": "overall and per-category intervals of one probe set (3 x 20 base probes)",
        "target": ">= 0.93 wherever reliable",
        "columns": [
            "row",
            "base probes",
            "baseline ASR",
            "candidate ASR",
            "reliable share",
            "reliable: candidate ASR",
            "reliable: difference",
            "reliable: ratio",
            "all: candidate ASR",
            "all: difference",
            "all: ratio",
        ],
        "rows": rows,
    }


def _record(into: dict[str, list[bool]], r: PairedRates, tc: float, tb: float) -> None:
    into["flag"].append(reliable(r))
    into["asr"].append(_covers(r.first.lo, r.first.hi, tc))
    into["diff"].append(_covers(r.difference.lo, r.difference.hi, tc - tb))
    into["ratio"].append(_covers(r.ratio.lo, r.ratio.hi, tb / tc))


def _category_row(
    name: str, clusters: int, tb: float, tc: float, got: dict[str, list[bool]]
) -> list[Any]:
    flag = got["flag"]

    def kept(key: str) -> list[bool]:
        return [hit for hit, ok in zip(got[key], flag, strict=True) if ok]

    return [
        name,
        clusters,
        round(tb, 4),
        round(tc, 4),
        _share(flag),
        _share(kept("asr")),
        _share(kept("diff")),
        _share(kept("ratio")),
        _share(got["asr"]),
        _share(got["diff"]),
        _share(got["ratio"]),
    ]


# Layouts of about 100 probes: no variants, four variants each, 1-6 variants each.
_LAYOUTS = (("100 x 1", 100, (1, 1)), ("25 x 4", 25, (4, 4)), ("29 x 1-6", 29, (1, 6)))


def false_failures(rng: np.random.Generator, runs: int) -> Table:
    rows = []
    for layout, clusters, variants in _LAYOUTS:
        for base in (0.05, 0.1, 0.2, 0.3):
            s = Scenario(clusters, base, 1.0, variants)
            tc, _ = truth(s)
            point_delta = interval_delta = interval_zero = point_asr = interval_asr = 0
            for _ in range(runs):
                cand, baseline, labels = draw(rng, s)
                r = paired_rates(cand, baseline, labels.tolist())
                point_delta += r.difference.value > 0.05
                interval_delta += r.difference.lo > 0.05
                interval_zero += r.difference.lo > 0
                # asr>X with X the candidate's true ASR: any failure is a false one.
                point_asr += r.first.value > tc
                interval_asr += r.first.lo > tc
            rows.append(
                [
                    layout,
                    base,
                    runs,
                    round(point_delta / runs, 3),
                    round(interval_delta / runs, 3),
                    round(interval_zero / runs, 3),
                    round(point_asr / runs, 3),
                    round(interval_asr / runs, 3),
                ]
            )
    return {
        "name": "probe gate: an equally robust candidate, about 100 probes",
        "target": "<= 0.05 false failures for the interval rules",
        "columns": [
            "base probes x variants",
            "ASR (both)",
            "runs",
            "point estimate: delta>0.05",
            "interval: delta>0.05",
            "interval: delta>0",
            "point estimate: asr>true ASR",
            "interval: asr>true ASR",
        ],
        "rows": rows,
    }


def power(rng: np.random.Generator, runs: int) -> Table:
    cases = (
        ("2x less robust", 0.1, 2.0),
        ("10x less robust", 0.025, 10.0),
        ("2x more robust", 0.2, 0.5),
        ("10x more robust", 0.25, 0.1),
    )
    layouts = (*_LAYOUTS[1:], ("50 x 1-6", 50, (1, 6)))
    rows = []
    for label, base, ratio in cases:
        for layout, clusters, variants in layouts:
            s = Scenario(clusters, base, ratio, variants)
            tc, tb = truth(s)
            worse = better = gate = excl = 0
            for _ in range(runs):
                cand, baseline, labels = draw(rng, s)
                r = paired_rates(cand, baseline, labels.tolist())
                w, b = direction(r, 0.95)
                worse += w
                better += b
                gate += r.difference.lo > 0.05
                excl += r.ratio.lo > 1 or r.ratio.hi < 1
            rows.append(
                [
                    label,
                    layout,
                    round(tb, 3),
                    round(tc, 3),
                    runs,
                    round(worse / runs, 3),
                    round(better / runs, 3),
                    round(gate / runs, 3),
                    round(excl / runs, 3),
                ]
            )
    return {
        "name": "power: candidates 2x and 10x more or less robust than the baseline",
        "target": "(no target; the share of runs where the report and the gate see it)",
        "columns": [
            "candidate",
            "base probes x variants",
            "baseline ASR",
            "candidate ASR",
            "runs",
            "flagged worse",
            "flagged better",
            "gate delta>0.05 fails",
            "ratio interval excludes 1",
        ],
        "rows": rows,
    }


def run(quick: bool) -> list[Table]:
    rng = np.random.default_rng(20261203)
    n = 150 if quick else 1500
    return [
        coverage(rng, n),
        categories(rng, n),
        false_failures(rng, 300 if quick else 3000),
        power(rng, 150 if quick else 1000),
    ]


def _print(tables: list[Table]) -> None:
    for t in tables:
        print(f"\n## {t['name']}\ntarget: {t['target']}")
        print(" | ".join(t["columns"]))
        for row in t["rows"]:
            print(" | ".join(str(c) for c in row))


if __name__ == "__main__":
    _print(run("--quick" in sys.argv))
