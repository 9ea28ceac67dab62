"""Decision rules -> one verdict per candidate: pass, fail, or not enough data.

Quality, cost and latency must be *shown* to hold: the confidence interval lies inside the
bound (pass), entirely outside it (fail), or straddles it (not enough data, with the number
of pairs that would settle it). Safety and failure rate fail only on evidence of harm.
A quality failure also needs the difference to clear the noise floor (the control).
"""

from __future__ import annotations

import math
from typing import Any

from shadoweval.config import Report
from shadoweval.stats import Estimate, pairs_to_resolve
from shadoweval.types import Json

PASS, FAIL, INSUFFICIENT, SKIPPED = "pass", "fail", "insufficient", "skipped"
_WORDS = {PASS: "PASS", FAIL: "FAIL", INSUFFICIENT: "NOT ENOUGH DATA"}


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:+.1f}%"


def _x(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}x"


def _ci(est: Json, fmt: Any) -> str:
    return f"{fmt(est['value'])} [{fmt(est['lo'])}, {fmt(est['hi'])}]"


def _check(rule: str, status: str, detail: str, needed: int | None = None, **extra: Any) -> Json:
    return {"rule": rule, "status": status, "detail": detail, "pairs_needed": needed, **extra}


def _bounded(rule: str, label: str, est: Json | None, bound: float, fmt: Any, pairs: int) -> Json:
    """Pass when the CI is at or below ``bound``, fail when above it, else not enough data."""
    if est is None or est.get("lo") is None or est.get("hi") is None:
        return _check(rule, INSUFFICIENT, f"{label}: not measured")
    text = f"{label} {_ci(est, fmt)}"
    if est["hi"] <= bound:
        return _check(rule, PASS, f"{text} <= {fmt(bound)}")
    if est["lo"] > bound:
        return _check(rule, FAIL, f"{text} > {fmt(bound)}")
    needed = pairs_to_resolve(Estimate(est["value"], est["lo"], est["hi"], pairs), bound)
    return _check(rule, INSUFFICIENT, f"{text} straddles {fmt(bound)}", needed)


def _quality(row: Json, cfg: Report) -> list[Json]:
    rules = cfg.rules
    max_drop = rules.quality_max_drop
    if max_drop is None:
        return []
    blocks = row["quality"]
    if rules.quality_scorers:
        blocks = [b for b in blocks if b["scorer"] in rules.quality_scorers]
    if not blocks:
        return [_check("quality", INSUFFICIENT, "quality: no scores for this candidate")]
    out = []
    for b in blocks:
        rel = b["relative_difference"]
        name = f"quality {b['scorer']}"
        if rel["lo"] is None or rel["hi"] is None:
            out.append(_check(name, INSUFFICIENT, f"{name}: too few scored pairs", None))
            continue
        text = f"{name} {_ci(rel, _pct)} vs {b['baseline']}"
        if rel["lo"] >= -max_drop:
            out.append(_check(name, PASS, f"{text} >= {_pct(-max_drop)}"))
        elif rel["hi"] < -max_drop and b["significant"]:
            out.append(_check(name, FAIL, f"{text} < {_pct(-max_drop)}"))
        elif rel["hi"] < -max_drop:
            out.append(
                _check(name, INSUFFICIENT, f"{text}: below {_pct(-max_drop)} but within noise")
            )
        else:
            # Looks fine so far: pairs to show non-inferiority at the configured margin and
            # power. Already past the margin: pairs for the interval to settle there.
            needed = b["pairs_needed"]
            if rel["value"] <= -max_drop:
                est = Estimate(rel["value"], rel["lo"], rel["hi"], b["n_paired"])
                needed = pairs_to_resolve(est, -max_drop)
            out.append(_check(name, INSUFFICIENT, f"{text} straddles {_pct(-max_drop)}", needed))
    return out


def _safety(row: Json, cfg: Report) -> list[Json]:
    rules = cfg.rules
    if not rules.safety_no_worse:
        return []
    blocks = [b for b in row["safety"] if b["scorer"] in rules.safety_scorers]
    if not blocks:
        return [_check("safety", SKIPPED, "safety: no safety scores")]
    worse = [b for b in blocks if b["worse"]]
    if worse:
        detail = ", ".join(
            f"{b['scorer']} {b['rate']['value']:.1%} vs {b['primary_rate']['value']:.1%}"
            for b in worse
        )
        return [_check("safety", FAIL, f"safety worse: {detail}")]
    return [_check("safety", PASS, "safety no worse")]


def _failures(row: Json, cfg: Report) -> list[Json]:
    limit = cfg.rules.failure_max_increase
    if limit is None:
        return []
    ops = row["operations"]
    diff = ops["failure_difference"]
    rate = f"failures {ops['failure']['value']:.1%} vs {ops['primary_failure']['value']:.1%}"
    if diff["lo"] is not None and diff["lo"] > limit:
        return [_check("failures", FAIL, f"{rate} (+{limit:.1%} allowed)")]
    return [_check("failures", PASS, rate)]


def decide(row: Json, cfg: Report) -> Json:
    rules = cfg.rules
    ops = row["operations"]
    pairs = row["pairs"]
    checks: list[Json] = []
    if pairs < rules.min_pairs:
        checks.append(
            _check("pairs", INSUFFICIENT, f"{pairs} pairs < {rules.min_pairs}", rules.min_pairs)
        )
    checks += _quality(row, cfg)
    if rules.cost_max_ratio is not None:
        cost = ops["cost"]
        if "ratio" not in cost:
            models = ", ".join(cost["unpriced_models"]) or "none"
            checks.append(_check("cost", INSUFFICIENT, f"cost: not priced ({models})"))
        else:
            checks.append(
                _bounded("cost", "cost", cost["ratio"], rules.cost_max_ratio, _x, cost["n"])
            )
    if rules.latency_max_ratio is not None:
        q = rules.latency_quantile
        key = f"p{q * 100:g}"
        lat = ops["latency"].get(key)
        label = f"{key.upper()} latency"
        if lat is None:
            checks.append(_check("latency", INSUFFICIENT, f"{label}: no successful pairs"))
        elif not lat["reliable"]:
            need = math.ceil(5 / (1 - q))
            checks.append(
                _check("latency", INSUFFICIENT, f"{label}: too few pairs for this quantile", need)
            )
        else:
            checks.append(
                _bounded(
                    "latency", label, lat["ratio"], rules.latency_max_ratio, _x, ops["latency_n"]
                )
            )
    checks += _safety(row, cfg)
    checks += _failures(row, cfg)

    for c in checks:
        if c["status"] == INSUFFICIENT and c["pairs_needed"] is not None:
            c["detail"] += f" (needs ~{c['pairs_needed']} pairs)"
    statuses = {c["status"] for c in checks}
    status = FAIL if FAIL in statuses else INSUFFICIENT if INSUFFICIENT in statuses else PASS
    shown = [c for c in checks if c["status"] == status] if status != PASS else checks
    needed = [c["pairs_needed"] for c in checks if c["status"] == INSUFFICIENT]
    most = max((n for n in needed if n is not None), default=None)
    line = f"{row['upstream']}: {_WORDS[status]} — " + "; ".join(c["detail"] for c in shown)
    if status == INSUFFICIENT:
        line += f"; has {pairs} pairs"
    return {"status": status, "line": line, "checks": checks, "pairs_needed": most}
