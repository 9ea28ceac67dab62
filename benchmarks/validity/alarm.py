"""Validity of the regression alarm (``shadoweval score``'s sequential test).

Simulated score streams with a known truth go through the alarm's own e-process
(``stats.regression_log_evidence``, the code ``RegressionMonitor`` runs) at the defaults
(``regression.max_drop`` 0.05 relative, family-wise ``alpha`` 0.05, ``candidates`` 3), with
each monitor's threshold from ``score.alarm.alpha_share``. Every monitor is looked at after
every pair (continuous peeking); a run counts as a false alarm when any monitor of it ever
crosses.

- False alarms: candidates identical to the primary (the same per-request quality, fresh
  draws) and, the hardest null, candidates exactly ``max_drop`` worse; 1, 3 and 5
  candidates (5: two beyond the declared family), and 3 candidates x 3 scorers
  (``regression.scorers`` naming three, so the family is 9). Requests vary in difficulty
  (Beta-distributed), which the primary, every candidate and every scorer share.
- Power: one candidate 3%, 5% and 10% (relative) worse, binary and continuous scores,
  baseline means 0.6 / 0.75 / 0.9, sides independent (no pairing gain: the hardest case),
  20,000 pairs per stream. 3% and 5% are within the 5% margin: there H0 holds and the rate
  is a false-alarm rate.

Run alone: ``python -m benchmarks.validity.alarm [--quick]`` writes
``benchmarks/results/validity_alarm.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from shadoweval.config.scorer import RegressionAlarm
from shadoweval.score.alarm import alpha_share
from shadoweval.stats import regression_excess, regression_log_evidence, wilson

Table = dict[str, Any]

DEFAULTS = RegressionAlarm()
PAIRS = 20_000
CHUNK = 64  # streams per numpy pass: ~10 MB per (streams, pairs) array at 20,000 pairs


def _first_crossing(excess: np.ndarray, log_thresholds: np.ndarray) -> np.ndarray:
    """Pairs until each stream's e-process first reaches its threshold (inf: never)."""
    out = np.full(excess.shape[0], np.inf)
    for lo in range(0, excess.shape[0], CHUNK):
        log_e, _ = regression_log_evidence(excess[lo : lo + CHUNK])
        hit = log_e >= log_thresholds[lo : lo + CHUNK, None]
        crossed = hit.any(axis=1)
        out[lo : lo + CHUNK][crossed] = hit[crossed].argmax(axis=1) + 1
    return out


def _peaks(excess: np.ndarray) -> np.ndarray:
    """Each stream's largest log e-value over the run (it alarms iff this reaches the
    log threshold: what continuous peeking sees)."""
    return np.concatenate(
        [
            regression_log_evidence(excess[lo : lo + CHUNK])[0].max(axis=1)
            for lo in range(0, excess.shape[0], CHUNK)
        ]
    )


def _scores(
    rng: np.random.Generator, q: np.ndarray, scale: float, binary: bool, shape: tuple[int, ...]
) -> np.ndarray:
    """Scores with mean scale * q per request: Bernoulli, or Beta with concentration 4."""
    mean = np.broadcast_to(np.clip(scale * q, 1e-6, 1 - 1e-6), shape)
    if binary:
        return (rng.random(shape) < mean).astype(np.float64)
    k = 4.0
    return np.asarray(rng.beta(mean * k, (1 - mean) * k), dtype=np.float64)


def _false_alarms(quick: bool) -> Table:
    runs, pairs = (100, 5_000) if quick else (500, PAIRS)
    rng = np.random.default_rng(1616)
    alpha, max_drop = DEFAULTS.alpha, DEFAULTS.max_drop
    rows: list[list[Any]] = []
    for truth, scale in (("identical", 1.0), ("max_drop worse (boundary)", 1 - max_drop)):
        for candidates, scorers in ((1, 1), (3, 1), (5, 1), (3, 3)):
            monitors = candidates * scorers
            family = DEFAULTS.candidates * scorers
            shares = np.array([alpha_share(j, family, alpha) for j in range(monitors)])
            k = k_each = 0  # runs with a false alarm: family-wise shares, alpha each
            step = max(1, CHUNK // monitors)
            for lo in range(0, runs, step):  # a few runs at a time: memory stays small
                n = min(step, runs - lo)
                # Request difficulty (mean 0.8) shared by the primary and every candidate.
                q = rng.beta(4.0, 1.0, (n, 1, pairs))
                baseline = _scores(rng, q, 1.0, True, (n, scorers, pairs))
                candidate = _scores(rng, q, scale, True, (n, monitors, pairs))
                b = np.tile(baseline, (1, candidates, 1))  # scorer s of every candidate
                z = regression_excess(candidate, b, max_drop).reshape(n * monitors, pairs)
                peak = _peaks(z).reshape(n, monitors)
                k += int((peak >= np.log(1 / shares)).any(axis=1).sum())
                k_each += int((peak >= np.log(1 / alpha)).any(axis=1).sum())
            est = wilson(k, runs)
            rows.append(
                [truth, candidates, scorers, monitors, runs, pairs, k / runs, est.hi, k_each / runs]
            )
    return {
        "name": "false alarms under continuous peeking",
        "target": f"some monitor alarms in at most alpha = {alpha:g} of the runs",
        "columns": [
            "candidates are",
            "candidates",
            "scorers each",
            "monitors",
            "runs",
            "pairs per run",
            "false alarm rate",
            "95% upper bound",
            "with alpha per monitor (before)",
        ],
        "rows": rows,
    }


def _power(quick: bool) -> Table:
    runs = 30 if quick else 200
    rng = np.random.default_rng(1617)
    share = alpha_share(0, DEFAULTS.candidates, DEFAULTS.alpha)  # one of the default 3
    rows: list[list[Any]] = []
    for binary in (True, False):
        for mean in (0.6, 0.75, 0.9):
            for drop in (0.03, 0.05, 0.10):
                first = np.concatenate(
                    [
                        _first_crossing(
                            regression_excess(
                                _scores(
                                    rng, np.full((n, PAIRS), mean), 1 - drop, binary, (n, PAIRS)
                                ),
                                _scores(rng, np.full((n, PAIRS), mean), 1.0, binary, (n, PAIRS)),
                                DEFAULTS.max_drop,
                            ),
                            np.full(n, math.log(1 / share)),
                        )
                        for n in (min(CHUNK, runs - lo) for lo in range(0, runs, CHUNK))
                    ]
                )
                detected = float(np.isfinite(first).mean())
                median = float(np.median(first))
                rows.append(
                    [
                        "binary" if binary else "continuous",
                        mean,
                        f"{drop:.0%}",
                        runs,
                        detected,
                        int(median) if math.isfinite(median) else "-",
                    ]
                )
    return {
        "name": f"power in {PAIRS:,}-pair streams",
        "target": (
            "a 10% relative drop detected in >= 95% of streams; 3% and 5% are within "
            f"max_drop {DEFAULTS.max_drop:g} (no regression to find: at most alpha)"
        ),
        "columns": [
            "scores",
            "baseline mean",
            "relative drop",
            "runs",
            "detected",
            "median pairs to alarm",
        ],
        "rows": rows,
    }


def run(quick: bool) -> list[Table]:
    return [_false_alarms(quick), _power(quick)]


def _main() -> None:
    from benchmarks.validity.run import markdown

    ap = argparse.ArgumentParser(description="validity of the regression alarm")
    ap.add_argument("--quick", action="store_true", help="fewer simulated runs")
    args = ap.parse_args()
    start = time.perf_counter()
    results = {"quick": args.quick, "parts": {"alarm": run(args.quick)}}
    results["seconds"] = {"alarm": round(time.perf_counter() - start, 1)}
    out = Path(__file__).resolve().parent.parent / "results"
    name = "validity_alarm-quick" if args.quick else "validity_alarm"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    print(f"{results['seconds']['alarm']} s; wrote {out / name}.json and .md")


if __name__ == "__main__":
    _main()
