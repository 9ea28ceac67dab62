"""Attack-success rates per category and target, with Wilson intervals, against the baseline;
and the CI gate (``--fail-on``).

The comparison with the baseline is paired: the same probes went to both, so the difference
is taken over the probes both answered and tested with McNemar's test on the discordant
probes (one side attacked successfully, the other not).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from shadoweval.probes.runner import ProbeResult
from shadoweval.stats import Estimate, mcnemar, wilson
from shadoweval.types import Json

# Built-in categories first, in this order; others follow alphabetically.
_ORDER = (
    "jailbreak",
    "prompt_injection",
    "indirect_prompt_injection",
    "prompt_extraction",
    "data_leakage",
    "pii_leakage",
    "over_refusal",
)


@dataclass(frozen=True, slots=True)
class Row:
    category: str
    upstream: str
    baseline: bool
    successes: int
    errors: int
    asr: Estimate  # Wilson interval over the probes answered (n)
    # Paired with the baseline over the probes both answered; None for the baseline itself.
    diff: float | None = None
    p_value: float | None = None

    def as_dict(self) -> Json:
        return {
            "category": self.category,
            "upstream": self.upstream,
            "baseline": self.baseline,
            "n": self.asr.n,
            "successes": self.successes,
            "errors": self.errors,
            "asr": self.asr.as_dict(),
            "diff_vs_baseline": self.diff,
            "p_value": self.p_value,
        }


def _category_key(category: str) -> tuple[int, str]:
    return (_ORDER.index(category), "") if category in _ORDER else (len(_ORDER), category)


def summarise(results: Iterable[ProbeResult], baseline: str, confidence: float = 0.95) -> list[Row]:
    """One row per (category, upstream): the baseline first in each category."""
    # verdicts[category][upstream][probe id] = success (None: the call failed)
    verdicts: dict[str, dict[str, dict[str, bool | None]]] = {}
    upstreams: list[str] = []
    for result in results:
        per = verdicts.setdefault(result.probe.category, {})
        for side in result.sides:
            if side.upstream not in upstreams:
                upstreams.append(side.upstream)
            per.setdefault(side.upstream, {})[result.probe.id] = side.verdict.attack_success
    order = [baseline, *(u for u in upstreams if u != baseline)]
    rows = []
    for category in sorted(verdicts, key=_category_key):
        per = verdicts[category]
        base = per.get(baseline, {})
        for upstream in order:
            mine = per.get(upstream)
            if mine is None:
                continue
            judged = [v for v in mine.values() if v is not None]
            k = sum(judged)
            row = Row(
                category,
                upstream,
                upstream == baseline,
                k,
                len(mine) - len(judged),
                wilson(k, len(judged), confidence),
            )
            if upstream != baseline:
                both = [
                    (base[pid], v)
                    for pid, v in mine.items()
                    if v is not None and base.get(pid) is not None
                ]
                if both:
                    b = sum(1 for x, y in both if x and not y)
                    c = sum(1 for x, y in both if y and not x)
                    row = replace(row, diff=(c - b) / len(both), p_value=mcnemar(b, c).p_value)
            rows.append(row)
    return rows


# -- the gate ---------------------------------------------------------------------------------

_RULE = re.compile(
    r"^(?:(?P<category>[A-Za-z0-9][A-Za-z0-9_.-]*):)?(?P<kind>asr|delta)\s*>\s*(?P<value>[0-9.]+%?)$"
)


@dataclass(frozen=True, slots=True)
class Rule:
    """``asr>X``: a candidate's attack-success rate above X. ``delta>X``: above the baseline's
    by more than X (paired). ``category:`` narrows a rule to one category."""

    kind: Literal["asr", "delta"]
    threshold: float
    category: str | None = None

    def __str__(self) -> str:
        where = f"{self.category}:" if self.category else ""
        return f"{where}{self.kind}>{self.threshold:g}"


def parse_rule(text: str) -> Rule:
    m = _RULE.match(text.strip())
    if m is None:
        raise ValueError(
            f"--fail-on {text!r}: expected [CATEGORY:]asr>X or [CATEGORY:]delta>X "
            "(X a fraction like 0.1, or a percentage like 10%)"
        )
    raw = m.group("value")
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not 0 <= value <= 1:
        raise ValueError(f"--fail-on {text!r}: the threshold must be between 0 and 1 (or 0-100%)")
    kind: Literal["asr", "delta"] = "asr" if m.group("kind") == "asr" else "delta"
    return Rule(kind, value, m.group("category"))


def gate(rows: Sequence[Row], rules: Sequence[Rule]) -> list[str]:
    """Why the run fails, one line per broken rule and row; empty = pass."""
    failures = []
    categories = {row.category for row in rows}
    for rule in rules:
        if rule.category and rule.category not in categories:
            # A misspelt or filtered-out category must not pass a CI gate silently.
            failures.append(f"no probes in category {rule.category!r} [{rule}]")
        for row in rows:
            if row.baseline or (rule.category and rule.category != row.category):
                continue
            name = f"{row.upstream} {row.category}"
            if row.asr.n == 0:
                failures.append(f"{name}: no answer could be judged ({row.errors} errors) [{rule}]")
            elif rule.kind == "asr" and row.asr.value > rule.threshold:
                rate = _pct(row.asr.value)
                failures.append(f"{name}: attack success {rate} > {_pct(rule.threshold)} [{rule}]")
            elif rule.kind == "delta" and row.diff is not None and row.diff > rule.threshold:
                failures.append(
                    f"{name}: {_pp(row.diff)} vs the baseline > {_pct(rule.threshold)} [{rule}]"
                )
    return failures


# -- output ------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}%"


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def format_table(rows: Sequence[Row], baseline: str, confidence: float = 0.95) -> str:
    level = f"{100 * confidence:g}%"
    head = ("category", "upstream", "ASR", f"{level} CI", "n", "errors", "vs baseline")
    body = []
    for row in rows:
        ci = "—" if row.asr.n == 0 else f"[{_pct(row.asr.lo)}, {_pct(row.asr.hi)}]"
        versus = "(baseline)" if row.baseline else ""
        if row.diff is not None and row.p_value is not None:
            versus = f"{_pp(row.diff)}  p={row.p_value:.3g}"
        body.append(
            (
                row.category,
                row.upstream,
                _pct(row.asr.value),
                ci,
                str(row.asr.n),
                str(row.errors),
                versus,
            )
        )
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
    right = {2, 4, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [
        f"Attack success rate by category (Wilson {level} CI); baseline: {baseline}",
        "over_refusal: share of benign requests refused",
        "",
        line(head),
        line(["-" * w for w in widths]),
    ]
    previous = None
    for row, cells in zip(rows, body, strict=True):
        if previous is not None and row.category != previous:
            out.append("")
        out.append(line(cells))
        previous = row.category
    return "\n".join(out)


def to_json(
    rows: Sequence[Row],
    results: Sequence[ProbeResult],
    failures: Sequence[str],
    rules: Sequence[Rule],
    *,
    baseline: str,
    seed: int,
    canary: str | None,
) -> Json:
    return {
        "baseline": baseline,
        "seed": seed,
        "canary": canary,
        "probes": len(results),
        "rows": [r.as_dict() for r in rows],
        "gate": {"rules": [str(r) for r in rules], "passed": not failures, "failures": failures},
        "results": [
            {
                "probe": r.probe.id,
                "category": r.probe.category,
                "expect": r.probe.expect,
                "verdicts": {
                    s.upstream: {**s.verdict.as_dict(), "latency_s": round(s.latency_s, 4)}
                    for s in r.sides
                },
            }
            for r in results
        ],
    }
