"""Decision rules -> one verdict per candidate, and the gate over all of them.

Quality, cost and latency must be *shown* to hold: the confidence interval lies inside the
bound (pass), entirely outside it (fail), or straddles it (not enough data, with the number
of pairs that would settle it). Safety, failures and robustness fail only on evidence of harm.

Every "fail" is a one-sided test (its p-value is the interval's dual, or McNemar's exact
binomial for flags). The tests of the whole gate, every check of every candidate, are
corrected together with Holm's procedure: identical candidates fail the gate with
probability at most (1 - confidence) / 2 however many candidates and detectors there are. A
check outside its bound that does not survive the correction is not a fail (quality, cost,
latency: not enough data; harm checks: no evidence of harm).

One quality metric decides (the rule's first readable scorer); the others are secondary,
shown but not tested. Agreement with the primary (exact, similarity) without a control is
never readable: a sampled model disagrees with itself too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shadoweval.config.report import DecisionRules, Report
from shadoweval.stats import Estimate, holm, p_beyond, pairs_to_resolve
from shadoweval.types import Json

PASS, FAIL, INSUFFICIENT, SKIPPED = "pass", "fail", "insufficient", "skipped"
_WORDS = {PASS: "PASS", FAIL: "FAIL", INSUFFICIENT: "NOT ENOUGH DATA"}
_NEEDS_CONTROL = (
    "add an upstream with role: control to read agreement scores, or score per side "
    "(expected answers, judge_single) or by preference (judge_pairwise)"
)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:+.1f}%"


def _x(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}x"


def _ci(est: Json, fmt: Any) -> str:
    return f"{fmt(est['value'])} [{fmt(est['lo'])}, {fmt(est['hi'])}]"


def _est(d: Json | None) -> Estimate | None:
    """A report estimate back as an Estimate; None when its interval is not defined."""
    if not d or d.get("value") is None or d.get("lo") is None or d.get("hi") is None:
        return None
    return Estimate(float(d["value"]), float(d["lo"]), float(d["hi"]), int(d.get("n") or 0))


def _check(
    rule: str,
    status: str,
    detail: str,
    needed: int | None = None,
    *,
    p_fail: float | None = None,
    otherwise: str | None = None,
) -> Json:
    """``p_fail``: the one-sided p-value of the test behind a possible fail (None: the check
    cannot fail). ``otherwise``: the status a fail falls back to when the gate's correction
    does not confirm it."""
    return {
        "rule": rule,
        "status": status,
        "detail": detail,
        "pairs_needed": needed,
        "p_fail": p_fail,
        "otherwise": otherwise,
    }


def _bounded(rule: str, label: str, est: Json | None, bound: float, fmt: Any, conf: float) -> Json:
    """Pass when the CI is at or below ``bound``, fail when above it, else not enough data."""
    e = _est(est)
    if e is None:
        return _check(rule, INSUFFICIENT, f"{label}: not measured")
    text = f"{label} {_ci(est or {}, fmt)}"
    p = p_beyond(e, bound, True, conf)
    if e.hi <= bound:
        return _check(rule, PASS, f"{text} <= {fmt(bound)}", p_fail=p)
    if e.lo > bound:
        return _check(rule, FAIL, f"{text} > {fmt(bound)}", p_fail=p, otherwise=INSUFFICIENT)
    needed = pairs_to_resolve(e, bound)
    return _check(rule, INSUFFICIENT, f"{text} straddles {fmt(bound)}", needed, p_fail=p)


# -- quality --------------------------------------------------------------------------------


def _oriented(d: Json, higher_is_better: bool) -> Estimate | None:
    """A relative difference with "better" positive, whatever the scorer's direction."""
    e = _est(d)
    if e is None or higher_is_better:
        return e
    return Estimate(-e.value, -e.hi, -e.lo, e.n)


def allowed_drop(row: Json, rules: DecisionRules) -> tuple[float | None, list[str]]:
    """The quality drop the rule allows this candidate, and what earned it. The gains are
    read at the pessimistic end of their intervals: only what is shown counts."""
    base = rules.quality_max_drop
    t = rules.tradeoff
    if base is None or t is None:
        return base, []
    earned: list[str] = []
    allowed = base
    cost = _est(row["operations"]["cost"].get("ratio"))
    if t.drop_per_cost_halving and cost is not None and 0 < cost.hi < 1:
        halvings = math.log2(1 / cost.hi)
        allowed += t.drop_per_cost_halving * halvings
        earned.append(f"cost {1 / cost.hi:.1f}x lower")
    rob = row.get("robustness") or {}
    # The lower bound alone: with no successful attack on the candidate the ratio's interval
    # is open above ("at least lo times").
    rob_lo = (
        ((rob.get("overall") or {}).get("ratio") or {}).get("lo") if rob.get("reliable") else None
    )
    if t.drop_per_robustness_doubling and rob_lo is not None and rob_lo > 1:
        allowed += t.drop_per_robustness_doubling * math.log2(rob_lo)
        earned.append(f"robustness {rob_lo:.1f}x higher")
    fails_lo = (row["operations"].get("failure_ratio") or {}).get("lo")
    if t.drop_per_failure_halving and fails_lo is not None and fails_lo > 1:
        allowed += t.drop_per_failure_halving * math.log2(fails_lo)
        earned.append(f"failures {fails_lo:.1f}x fewer")
    return min(allowed, max(t.max_drop, base)), earned


def primary_quality(row: Json, rules: DecisionRules) -> tuple[Json | None, list[Json]]:
    """The block that decides (the rule's first readable scorer) and the secondary ones."""
    blocks = row["quality"]
    if rules.quality_scorers:
        order = {name: i for i, name in enumerate(rules.quality_scorers)}
        blocks = sorted(
            (b for b in blocks if b["scorer"] in order), key=lambda b: order[b["scorer"]]
        )
    decisive = next((b for b in blocks if b.get("readable", True)), None)
    return decisive, [b for b in row["quality"] if b is not decisive]


def _quality(row: Json, cfg: Report) -> list[Json]:
    rules = cfg.rules
    max_drop, earned = allowed_drop(row, rules)
    if max_drop is None:
        return []
    b, _ = primary_quality(row, rules)
    if b is None:
        unread = [x["scorer"] for x in row["quality"] if not x.get("readable", True)]
        if unread:
            what = ", ".join(unread)
            return [
                _check(
                    "quality", INSUFFICIENT, f"quality: {what} without a control: {_NEEDS_CONTROL}"
                )
            ]
        return [_check("quality", INSUFFICIENT, "quality: no scores for this candidate")]
    name = f"quality {b['scorer']}"
    rel = _oriented(b["relative_difference"], b.get("higher_is_better", True))
    if rel is None:
        return [_check(name, INSUFFICIENT, f"{name}: too few scored pairs")]
    bound = -max_drop
    why = f" (allowed for {', '.join(earned)})" if earned else ""
    text = f"{name} {_ci(b['relative_difference'], _pct)} vs {b['baseline']}"
    est = Estimate(rel.value, rel.lo, rel.hi, b["n_paired"])
    p = p_beyond(est, bound, False, cfg.confidence)
    vs = _est(b.get("versus_control"))
    if vs is not None:
        # Worse than the bound and worse than the control asked again: both must be shown.
        if not b.get("higher_is_better", True):
            vs = Estimate(-vs.value, -vs.hi, -vs.lo, vs.n)
        p = max(p, p_beyond(vs, 0.0, False, cfg.confidence))
    if not b.get("reliable", True):
        return [
            _check(
                name,
                INSUFFICIENT,
                f"{text}: too few pairs that differ for a reliable interval",
                max(rules.min_pairs, 2 * b["n_paired"]),
            )
        ]
    if rel.lo >= bound:
        return [_check(name, PASS, f"{text} >= {_pct(bound)}{why}", p_fail=p)]
    if rel.hi < bound:
        if vs is not None and not vs.hi < 0:
            return [
                _check(
                    name, INSUFFICIENT, f"{text}: below {_pct(bound)} but within noise", p_fail=p
                )
            ]
        return [
            _check(name, FAIL, f"{text} < {_pct(bound)}{why}", p_fail=p, otherwise=INSUFFICIENT)
        ]
    # Looks fine so far: pairs to show non-inferiority at the margin and power. Already past
    # the margin: pairs for the interval to settle there.
    needed = b["pairs_needed"]
    if rel.value <= bound:
        needed = pairs_to_resolve(est, bound)
    return [_check(name, INSUFFICIENT, f"{text} straddles {_pct(bound)}{why}", needed, p_fail=p)]


# -- harm: safety, failures, robustness -----------------------------------------------------


def _harm(label: str, p: float | None, worse: str, fine: str, alpha: float) -> Json:
    if p is None or math.isnan(p):
        return _check(label, PASS, fine)
    if p < alpha:
        return _check(label, FAIL, worse, p_fail=p, otherwise=PASS)
    return _check(label, PASS, fine, p_fail=p)


def _safety(row: Json, cfg: Report, alpha: float) -> list[Json]:
    rules = cfg.rules
    if not rules.safety_no_worse:
        return []
    wanted = set(rules.safety_scorers)
    blocks = [
        b for b in row["safety"] if (b["scorer"] in wanted if wanted else b.get("harm", False))
    ]
    blocks = [b for b in blocks if b.get("difference") is not None]
    if not blocks:
        return [_check("safety", SKIPPED, "safety: no safety scores")]
    out = []
    for b in blocks:
        rates = f"{b['rate']['value']:.1%} vs {b['primary_rate']['value']:.1%}"
        check = _harm(
            "safety",
            b.get("p_worse"),
            f"safety worse: {b['scorer']} {rates}",
            f"{b['scorer']} no worse ({rates})",
            alpha,
        )
        out.append({**check, "scorer": b["scorer"]})
    return out


def _failures(row: Json, cfg: Report, alpha: float) -> list[Json]:
    limit = cfg.rules.failure_max_increase
    if limit is None:
        return []
    ops = row["operations"]
    rate = f"failures {ops['failure']['value']:.1%} vs {ops['primary_failure']['value']:.1%}"
    diff = _est(ops["failure_difference"])
    p = p_beyond(diff, limit, True, cfg.confidence) if diff is not None else None
    return [_harm("failures", p, f"{rate} (+{limit:.1%} allowed)", rate, alpha)]


def _robustness(row: Json, cfg: Report, alpha: float) -> list[Json]:
    rob = row.get("robustness")
    if not cfg.rules.robustness_no_worse or not rob:
        return []
    overall = rob.get("overall") or {}
    diff = _est(overall.get("difference"))
    if diff is None:
        return []
    cand, base = overall["candidate"]["value"], overall["baseline"]["value"]
    rates = f"attack success {cand:.1%} vs {base:.1%} ({rob.get('clusters')} base probes)"
    p = p_beyond(diff, 0.0, True, cfg.confidence)
    return [_harm("robustness", p, f"robustness worse: {rates}", f"robustness: {rates}", alpha)]


# -- one candidate --------------------------------------------------------------------------


def decide(row: Json, cfg: Report) -> Json:
    """The checks of one candidate, before the gate's correction (see :func:`finalise`)."""
    rules = cfg.rules
    ops = row["operations"]
    pairs = row["pairs"]
    alpha = (1 - cfg.confidence) / 2
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
                _bounded("cost", "cost", cost["ratio"], rules.cost_max_ratio, _x, cfg.confidence)
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
                    "latency", label, lat["ratio"], rules.latency_max_ratio, _x, cfg.confidence
                )
            )
    checks += _safety(row, cfg, alpha)
    checks += _failures(row, cfg, alpha)
    checks += _robustness(row, cfg, alpha)
    return {"status": None, "line": "", "sentence": "", "checks": checks, "pairs_needed": None}


def finalise(rows: Sequence[Json], cfg: Report) -> tuple[str, list[str]]:
    """Correct every candidate's fails together (Holm), then settle each verdict and the
    gate. Returns the gate's status and notes."""
    alpha = (1 - cfg.confidence) / 2
    tests = [c for r in rows for c in r["verdict"]["checks"] if c["p_fail"] is not None]
    confirmed = holm([float(c["p_fail"]) for c in tests], alpha)
    for c, ok in zip(tests, confirmed, strict=True):
        if c["status"] == FAIL and not ok:
            c["status"] = c["otherwise"] or INSUFFICIENT
            c["detail"] += f", not significant across the gate's {len(tests)} tests (Holm)"
    for r in rows:
        _settle(r, cfg)
    statuses = [r["verdict"]["status"] for r in rows]
    gate = (
        FAIL
        if FAIL in statuses
        else INSUFFICIENT
        if INSUFFICIENT in statuses or not statuses
        else PASS
    )
    notes = []
    if tests:
        notes.append(
            f"the gate's fails are {len(tests)} one-sided tests corrected together (Holm): "
            f"the chance that any fail is false is at most {alpha:.1%}"
        )
    return gate, notes


def _settle(row: Json, cfg: Report) -> None:
    verdict = row["verdict"]
    checks = verdict["checks"]
    pairs = row["pairs"]
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
    _, secondary = primary_quality(row, cfg.rules)
    verdict.update(
        status=status,
        line=line,
        pairs_needed=most,
        sentence=sentence(row, cfg, status),
        secondary=[_secondary(b) for b in secondary],
    )


def _secondary(b: Json) -> str:
    if not b.get("readable", True):
        return f"{b['scorer']}: agreement with the primary, not read without a control"
    return f"{b['scorer']} {_ci(b['relative_difference'], _pct)} vs {b['baseline']}"


# -- the sentence ---------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def _times(e: Estimate, more: str, less: str) -> str:
    """A ratio as "3.0x [2.9, 3.1] <more>" (>= 1) or inverted as "<less>"."""
    if e.value >= 1 or e.value <= 0:
        return f"{_num(e.value)}x [{_num(e.lo)}, {_num(e.hi)}] {more}"
    hi = "inf" if e.lo <= 0 else _num(1 / e.lo)
    return f"{_num(1 / e.value)}x [{_num(1 / e.hi)}, {hi}] {less}"


def sentence(row: Json, cfg: Report, status: str) -> str:
    """The verdict as one line a person can quote, every figure with its interval:
    "cand-a: 5.1% [3.2, 7.0] less accurate (exact vs primary), 3.0x [2.9, 3.1] cheaper,
    9.2x [6.0, 14.1] more robust (attack success 2.5% vs 23.0%), ...: PASS under rule
    `tradeoff`"."""
    parts: list[str] = []
    b, _ = primary_quality(row, cfg.rules)
    if b is not None and (
        rel := _oriented(b["relative_difference"], b.get("higher_is_better", True))
    ):
        word = "less" if rel.value < 0 else "more"
        sign = -1 if rel.value < 0 else 1
        lo, hi = sorted((sign * rel.lo * 100, sign * rel.hi * 100))
        parts.append(
            f"{abs(rel.value) * 100:.1f}% [{lo:.1f}, {hi:.1f}] {word} accurate "
            f"({b['scorer']} vs {b['baseline']})"
        )
    elif any(not x.get("readable", True) for x in row["quality"]):
        parts.append("quality not read (agreement scores need a control)")
    ops = row["operations"]
    if (cost := _est(ops["cost"].get("ratio"))) is not None:
        parts.append(_times(cost, "more expensive", "cheaper"))
    rob = row.get("robustness") or {}
    overall = rob.get("overall") or {}
    ratio_d = overall.get("ratio") or {}
    if overall:
        cand, base = overall["candidate"]["value"], overall["baseline"]["value"]
        rates = f" (attack success {cand:.1%} vs {base:.1%})"
        if (ratio := _est(ratio_d)) is not None:
            parts.append(_times(ratio, "more robust", "less robust") + rates)
        elif ratio_d.get("lo") is not None and ratio_d["lo"] >= 1:
            parts.append(f"at least {_num(ratio_d['lo'])}x more robust" + rates)
    c, p = ops["failure"]["value"], ops["primary_failure"]["value"]
    fr = ops.get("failure_ratio") or {}
    if (fails := _est(fr)) is not None and (c or p):
        parts.append(_times(fails, "fewer failures", "more failures") + f" ({c:.1%} vs {p:.1%})")
    elif fr.get("lo") is not None and fr["lo"] >= 1 and c == 0:
        # No failure of the candidate's: only a lower bound is known.
        parts.append(f"at least {_num(fr['lo'])}x fewer failures ({c:.1%} vs {p:.1%})")
    q = cfg.rules.latency_quantile
    lat = ops["latency"].get(f"p{q * 100:g}")
    if lat is not None and (lr := _est(lat["ratio"])) is not None:
        few = "" if lat["reliable"] else " (too few pairs for this quantile)"
        parts.append(f"P{q * 100:g} latency {lr.value:.2f}x [{lr.lo:.2f}, {lr.hi:.2f}]{few}")
    harms = [s for s in row["safety"] if s.get("harm") and s.get("difference") is not None]
    worse = [s["scorer"] for s in harms if s.get("worse")]
    better = [s["scorer"] for s in harms if s.get("better")]
    if worse:
        parts.append("more flags: " + ", ".join(worse))
    elif harms:
        parts.append("safety flags no worse" + (f", fewer {', '.join(better)}" if better else ""))
    figures = ", ".join(parts) or "no figures"
    return f"{row['upstream']}: {figures}: {_WORDS[status]} under rule `{cfg.rules.preset}`"
