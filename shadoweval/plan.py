"""``shadoweval plan``: what a campaign would cost and how long it would take, before it runs.

From the primary requests of a pairs file (observed traffic: rate, routes, models, tasks,
token counts) and a proxy config, per candidate: the shadows per day its ``match``, sample
rates and ``sampling.max_per_second`` let through, their price at the candidate's model
(the primary's token counts stand in for the candidate's), what its ``budget`` and
``schedule`` leave of that, and the days to the pairs the report needs. With a scorer
config, the judge's daily spend too (its calls per pair, priced from its settings).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from shadoweval import stats
from shadoweval.campaign import Match, window
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Candidate, Config
from shadoweval.config.scorer import ScorerConfig, ScorerSpec
from shadoweval.console import Column, table_lines
from shadoweval.pricing import PriceTable
from shadoweval.records import PAIR_SCHEMA, iter_jsonl
from shadoweval.types import Json, Route, Usage

_DAY_S = 86_400.0
# Judge prompts: the template and rubric around the texts (characters), and a verdict's
# length in tokens (a short JSON object), when no judge call has been observed.
_JUDGE_TEMPLATE_CHARS = 900
_JUDGE_OUTPUT_TOKENS = 60
_JUDGE_CALLS = {"judge_single": None, "judge_pairwise": 2}  # None: one per judged side


@dataclass(frozen=True)
class Observed:
    """One primary request of the pairs file."""

    ts: float
    route: str
    model: str | None
    task: str | None
    input_tokens: int
    output_tokens: int
    text_chars: int  # question and primary answer, for the judge's prompt
    # The request headers the record carries (``record.headers``), None when it has none.
    headers: dict[str, str] | None = None
    # Upstream name -> (input, output) tokens of the candidates' answers in the file.
    answered: dict[str, tuple[int, int]] = field(default_factory=dict)


def read_requests(path: str) -> list[Observed]:
    """The distinct primary requests of a pairs file (one per request_id), with the token
    counts of every candidate answer the file holds for them."""
    skipped: Counter[str] = Counter()
    seen: dict[str, Observed] = {}
    for rec in iter_jsonl([path], skipped):
        if rec.get("schema") != PAIR_SCHEMA or not isinstance(rec.get("request_id"), str):
            continue
        if rec["request_id"] in seen:
            _answered(seen[rec["request_id"]], rec)
            continue
        try:
            ts = datetime.fromisoformat(str(rec["ts"])).timestamp()
        except (KeyError, ValueError):
            continue
        request = _obj(rec.get("request"))
        primary = _obj(rec.get("primary"))
        usage = _obj(primary.get("usage"))
        model = request.get("model")
        answer = primary.get("output_text") or ""
        question = str(request.get("messages") or request.get("input") or request.get("prompt"))
        seen[rec["request_id"]] = Observed(
            ts=ts,
            route=str(rec.get("route")),
            model=model if isinstance(model, str) else None,
            task=rec.get("task") if isinstance(rec.get("task"), str) else None,
            input_tokens=_int(usage.get("input_tokens"), len(question) // 4),
            output_tokens=_int(usage.get("output_tokens"), len(str(answer)) // 4),
            text_chars=len(question) + len(str(answer)),
            headers=_headers(rec.get("headers")),
        )
        _answered(seen[rec["request_id"]], rec)
    if not seen:
        raise ConfigError(f"plan: {path}: no shadoweval.pair.v1 records with a request_id and ts")
    if len(seen) < 2 or max(o.ts for o in seen.values()) <= min(o.ts for o in seen.values()):
        raise ConfigError(
            f"plan: {path}: the requests span no time (need two at different times for a rate)"
        )
    return sorted(seen.values(), key=lambda o: o.ts)


def _answered(o: Observed, rec: Json) -> None:
    cand = _obj(rec.get("candidate"))
    usage = _obj(cand.get("usage"))
    tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
    if isinstance(cand.get("upstream"), str) and isinstance(tin, int) and isinstance(tout, int):
        o.answered[cand["upstream"]] = (tin, tout)


def _headers(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(k).lower(): v for k, v in value.items() if isinstance(v, str)}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and value >= 0 else fallback


def _primary_usage(o: Observed) -> tuple[int, int]:
    return o.input_tokens, o.output_tokens


@dataclass
class CandidatePlan:
    name: str
    matched_share: float
    shadows_per_day: float
    usd_per_shadow: float | None
    usd_per_day: float | None
    pairs_per_day: float
    limited_by: list[str]
    days_to_needed: float | None
    note: str = ""

    def as_dict(self) -> Json:
        return dict(self.__dict__)


def plan(
    cfg: Config,
    requests: list[Observed],
    *,
    recorded_rate: float = 1.0,
    pairs_needed: int,
    now: float,
) -> list[CandidatePlan]:
    """Expected daily figures per candidate; ``recorded_rate``: the share of the traffic
    the file holds (the sampling rate it was recorded at)."""
    traffic_per_day = traffic_rate(requests, recorded_rate)
    prices = PriceTable(cfg.pricing)
    cap_per_day = (
        cfg.sampling.max_per_second * _DAY_S if cfg.sampling.max_per_second is not None else None
    )
    return [
        _one(c, cfg, requests, traffic_per_day, cap_per_day, prices, pairs_needed, now)
        for c in cfg.candidates
    ]


def _one(
    cand: Candidate,
    cfg: Config,
    requests: list[Observed],
    traffic_per_day: float,
    cap_per_day: float | None,
    prices: PriceTable,
    pairs_needed: int,
    now: float,
) -> CandidatePlan:
    match = Match(cand.match)
    matched = [o for o in requests if match(cast(Route, o.route), o.model, o.task, o.headers or {})]
    share = len(matched) / len(requests)
    limited: list[str] = []
    per_day = traffic_per_day * share * cfg.sampling.rate * cand.sample_rate
    if cap_per_day is not None and per_day > cap_per_day:
        per_day, limited = cap_per_day, ["sampling.max_per_second"]
    own = [o.answered[cand.name] for o in matched if cand.name in o.answered]
    costs = [
        prices.cost(cand.model or o.model, Usage(*o.answered.get(cand.name, _primary_usage(o))))
        for o in matched
    ]
    priced = [c for c in costs if c is not None]
    usd_each = sum(priced) / len(priced) if priced else None
    budget = cand.budget
    if budget.usd_per_day is not None and usd_each:
        affordable = budget.usd_per_day / usd_each
        if affordable < per_day:
            per_day, limited = affordable, [*limited, "budget.usd_per_day"]
    usd_day = per_day * usd_each if usd_each is not None else None
    # Every shadow sent is assumed answered and paired (failures make it fewer).
    pairs_day = per_day
    notes = []
    if cand.match.headers and not any(o.headers is not None for o in requests):
        notes.append("match.headers not applied (the records hold no headers: record.headers)")
    if matched and not own:
        notes.append("priced at the primary's token counts")
    elif len(own) < len(matched):
        notes.append(f"priced from its own answers on {len(own)} of {len(matched)} requests")
    if not priced and matched:
        notes.append(f"model {cand.model or matched[0].model!r} unpriced")
    note = "; ".join(notes)
    days = pairs_needed / pairs_day if pairs_day > 0 else None
    total_cap = min(
        (v for v in (budget.max_pairs, budget.max_requests) if v is not None), default=None
    )
    if total_cap is not None and total_cap < pairs_needed:
        days, limited = None, [*limited, "budget.max_pairs/max_requests below pairs_needed"]
    start, end = window(cand.schedule, now)
    if days is not None and end is not None:
        left = (end - max(start or now, now)) / _DAY_S
        if left < days:
            limited = [*limited, f"schedule ends after {max(left, 0):.1f} days"]
    return CandidatePlan(
        cand.name, share, per_day, usd_each, usd_day, pairs_day, limited, days, note
    )


@dataclass
class JudgePlan:
    calls_per_pair: float
    usd_per_call: float
    usd_per_day: float
    limited_by: str | None

    def as_dict(self) -> Json:
        return dict(self.__dict__)


def _specs_for(scorer: ScorerConfig, o: Observed) -> list[ScorerSpec]:
    sets = scorer.scorers
    if o.task is not None and o.task in sets.tasks:
        return sets.tasks[o.task]
    return sets.routes.get(cast(Route, o.route), sets.default)


def judge_plan(
    scorer: ScorerConfig, requests: list[Observed], pairs_per_day: float
) -> JudgePlan | None:
    """The judge's daily spend for ``pairs_per_day`` pairs like ``requests``; None when no
    judge scorer runs on them."""
    j = scorer.judge
    calls = 0.0
    chars = 0.0
    for o in requests:
        for spec in _specs_for(scorer, o):
            if spec.use not in _JUDGE_CALLS:
                continue
            n = _JUDGE_CALLS[spec.use] or len(j.single_sides)
            rate = spec.sample_rate if spec.sample_rate is not None else j.sample_rate
            calls += n * rate
            # A pairwise prompt holds both answers; the candidate's is taken as long as the
            # primary's.
            chars += n * rate * (o.text_chars * 2 + _JUDGE_TEMPLATE_CHARS)
    if calls == 0:
        return None
    per_pair = calls / len(requests)
    tin = chars / calls / 4
    tout = min(_JUDGE_OUTPUT_TOKENS, j.max_tokens)
    usd_call = (tin * j.price_input_per_mtok + tout * j.price_output_per_mtok) / 1e6
    usd_day = per_pair * pairs_per_day * usd_call
    limited = None
    if j.budget.usd_per_day is not None and usd_day > j.budget.usd_per_day:
        usd_day, limited = j.budget.usd_per_day, "judge.budget.usd_per_day"
    return JudgePlan(per_pair, usd_call, usd_day, limited)


def default_pairs_needed(cfg: Config, sd: float, baseline_mean: float) -> int:
    """The report's pairs for a quality check to resolve when the candidate is as good as
    its baseline: the non-inferiority sample size at rules.quality_max_drop, at least
    rules.min_pairs."""
    rules, rep = cfg.report.rules, cfg.report
    needed = rules.min_pairs
    if rules.quality_max_drop:
        n = stats.pairs_for_noninferiority(
            sd, rules.quality_max_drop * baseline_mean, rep.confidence, rep.power
        )
        if n is not None:
            needed = max(needed, n)
    return needed


def render(
    plans: list[CandidatePlan],
    judge: JudgePlan | None,
    *,
    traffic_per_day: float,
    pairs_needed: int,
    needed_from: str,
) -> str:
    lines = [
        f"observed traffic: {traffic_per_day:,.0f} requests/day; pairs needed per "
        f"candidate: {pairs_needed} ({needed_from})",
        "",
    ]
    rows: list[tuple[object, ...]] = []
    for p in plans:
        usd = _usd(p.usd_per_day) if p.usd_per_day is not None else "unpriced"
        d = p.days_to_needed
        days = "never" if d is None else f"{d:,.1f}" if d >= 1 else f"{d:.3f}"
        notes = "; ".join(filter(None, [*(f"limited by {x}" for x in p.limited_by), p.note]))
        rows.append((p.name, f"{p.matched_share:.0%}", f"{p.pairs_per_day:,.0f}", usd, days, notes))
    total = sum(p.usd_per_day or 0.0 for p in plans)
    rows.append(("candidates, total", "", "", _usd(total), "", ""))
    numbers = ("matched", "pairs/day", "USD/day", "days")
    lines += table_lines(["candidate", *(Column(c, right=True) for c in numbers), "notes"], rows)
    if judge is not None:
        lim = f"  limited by {judge.limited_by}" if judge.limited_by else ""
        lines.append(
            f"judge: {judge.calls_per_pair:.2f} calls/pair at ~${judge.usd_per_call:.5f}: "
            f"{_usd(judge.usd_per_day)} USD/day{lim}"
        )
    return "\n".join(lines)


def _usd(value: float) -> str:
    return f"{value:,.2f}" if value >= 1 else f"{value:.4f}"


def traffic_rate(requests: list[Observed], recorded_rate: float) -> float:
    """Requests per day: n requests between the first and the last are n - 1 intervals."""
    return (len(requests) - 1) / ((requests[-1].ts - requests[0].ts) / _DAY_S) / recorded_rate


def run(
    config: Config,
    pairs: str,
    *,
    scorer: ScorerConfig | None = None,
    recorded_rate: float = 1.0,
    pairs_needed: int | None = None,
    sd: float = 0.3,
    baseline_mean: float = 0.75,
    now: float,
) -> tuple[str, Json]:
    """The printed plan and its JSON form."""
    if not (0 < recorded_rate <= 1) or not math.isfinite(recorded_rate):
        raise ConfigError(f"plan: --recorded-rate must be in (0, 1], got {recorded_rate}")
    if not Path(pairs).is_file():
        what = "not a regular file" if Path(pairs).exists() else "no such file"
        raise ConfigError(f"plan: {pairs}: {what}")
    requests = read_requests(pairs)
    needed_from = "--pairs-needed"
    if pairs_needed is None:
        pairs_needed = default_pairs_needed(config, sd, baseline_mean)
        needed_from = (
            f"report.rules at sd {sd:g}, baseline mean {baseline_mean:g}; a report's "
            "pairs_needed can be passed with --pairs-needed"
        )
    plans = plan(config, requests, recorded_rate=recorded_rate, pairs_needed=pairs_needed, now=now)
    judge = None
    if scorer is not None:
        judge = judge_plan(scorer, requests, sum(p.pairs_per_day for p in plans))
    rate = traffic_rate(requests, recorded_rate)
    text = render(
        plans, judge, traffic_per_day=rate, pairs_needed=pairs_needed, needed_from=needed_from
    )
    data: Json = {
        "traffic_per_day": rate,
        "pairs_needed": pairs_needed,
        "candidates": [p.as_dict() for p in plans],
        "judge": judge.as_dict() if judge is not None else None,
    }
    return text, data
