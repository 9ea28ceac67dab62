"""Safety rates corrected for detector error: what the flag rate would be with a perfect
detector, given the detector's measured sensitivity and specificity.

A detector with sensitivity ``se`` and specificity ``sp`` flags a share
``q = se * p + (1 - sp) * (1 - p)`` of answers whose true rate is ``p``; Rogan and Gladen's
estimator inverts it, ``p = (q + sp - 1) / (se + sp - 1)``, clipped to [0, 1]. The interval
is a parametric bootstrap that carries all three uncertainties, as garak reports its rates:
each draw takes ``q``, ``se`` and ``sp`` from their Jeffreys posteriors (Beta(k + 1/2,
n - k + 1/2): defined when a labelled set had no miss at all, where a binomial resample would
pretend the detector is perfect) and applies the estimator; the interval is the draws'
central percentiles. Coverage is measured in benchmarks/validity/corrected.py.

The detector figures are the counts ``shadoweval score --evaluate-detectors FILE --detector
NAME --json OUT`` writes (or benchmarks/detectors.py's results, whose test split is used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shadoweval.config.base import ConfigError

DRAWS = 4000
METHOD = "Rogan-Gladen, parametric bootstrap (Jeffreys draws of rate, sensitivity, specificity)"
# A detector no better than chance in more than this share of draws: no interval.
MAX_DEGENERATE = 0.025


@dataclass(frozen=True, slots=True)
class Accuracy:
    """A detector's measured counts on labelled answers."""

    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp)


def _counts(name: str, obj: Any, path: str) -> Accuracy:
    if isinstance(obj, dict) and "tp" not in obj and isinstance(obj.get("test"), dict):
        obj = obj["test"]  # benchmarks/detectors.py's file: figures per split
    try:
        acc = Accuracy(*(int(obj[k]) for k in ("tp", "fn", "tn", "fp")))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: detector {name!r} needs counts tp, fn, tn and fp") from None
    if min(acc.tp, acc.fn, acc.tn, acc.fp) < 0 or not acc.tp + acc.fn or not acc.tn + acc.fp:
        raise ConfigError(f"{path}: detector {name!r} needs labelled positives and negatives")
    return acc


def load_accuracy(path: str) -> dict[str, Accuracy]:
    """``{detector: counts}`` from a JSON file; a bad file is one line naming it."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read detector accuracy file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"detector accuracy file {path} is not JSON ({exc.msg})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected an object of detector name to counts")
    return {str(name): _counts(str(name), obj, path) for name, obj in raw.items()}


def corrected_rate(
    flagged: int,
    n: int,
    acc: Accuracy,
    confidence: float = 0.95,
    draws: int = DRAWS,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """The corrected rate with its interval: ``{"value", "lo", "hi", "n"}`` (``lo``/``hi``
    None when the detector is too close to chance for an interval)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    se, sp = acc.sensitivity, acc.specificity
    value = _rogan_gladen(np.array(flagged / n), np.array(se), np.array(sp))
    q = rng.beta(flagged + 0.5, n - flagged + 0.5, draws)
    se_d = rng.beta(acc.tp + 0.5, acc.fn + 0.5, draws)
    sp_d = rng.beta(acc.tn + 0.5, acc.fp + 0.5, draws)
    est = _rogan_gladen(q, se_d, sp_d)
    ok = np.isfinite(est)
    if ok.mean() < 1 - MAX_DEGENERATE:
        lo = hi = None
    else:
        a = (1 - confidence) / 2
        lo, hi = (float(v) for v in np.quantile(est[ok], [a, 1 - a]))
    return {"value": float(value), "lo": lo, "hi": hi, "n": n}


def _rogan_gladen(q: np.ndarray, se: np.ndarray, sp: np.ndarray) -> np.ndarray:
    youden = se + sp - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(youden > 0, (q + sp - 1) / youden, np.nan)
    return np.clip(p, 0.0, 1.0)


def apply(report: dict[str, Any], accuracy: dict[str, Accuracy], confidence: float) -> None:
    """Add ``corrected`` (candidate and primary) to each safety block whose detector has
    measured figures, and say so in the report's notes."""
    used: set[str] = set()
    for row in report.get("candidates", []):
        for block in row.get("safety", []):
            acc = accuracy.get(block["scorer"])
            if acc is None or block.get("side") != "candidate":
                continue
            used.add(block["scorer"])
            out: dict[str, Any] = {
                "method": METHOD,
                "sensitivity": round(acc.sensitivity, 4),
                "specificity": round(acc.specificity, 4),
                "rate": _from(block["rate"], acc, confidence),
                "primary_rate": _from(block.get("primary_rate"), acc, confidence),
            }
            block["corrected"] = out
    if used:
        report.setdefault("notes", []).append(
            f"safety rates corrected for detector error ({', '.join(sorted(used))}): {METHOD}"
        )


def _from(rate: dict[str, Any] | None, acc: Accuracy, confidence: float) -> dict[str, Any] | None:
    if not rate or rate.get("value") is None or not rate.get("n"):
        return None
    n = int(rate["n"])
    return corrected_rate(round(rate["value"] * n), n, acc, confidence)
