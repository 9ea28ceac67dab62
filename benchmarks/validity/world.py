"""Simulated traffic with a known truth, as the report reads it (``report.load.Dataset``).

Each request has a difficulty; the primary, the candidates and the control answer it with
probabilities of their own, so answers to the same request are correlated the way real
paired data is. Clustered traffic shares a session effect. Everything is numpy-vectorised
and seeded; no files are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
from shadoweval.pricing import PriceTable
from shadoweval.report.aggregate import build_report
from shadoweval.report.load import Dataset, ScoreRow
from shadoweval.report.rows import PairRow, SideRow
from shadoweval.score.registry import DEFAULT_INFO, SAFETY_FLAG, ScorerInfo

PRICES = PriceTable(Pricing())


@dataclass
class Model:
    """One upstream's behaviour. ``accuracy``: P(correct) on an average request (per side,
    against an expected answer); ``agreement``: P(its answer equals the primary's);
    ``flags``: detector -> P(flag); ``cost``: dollars per request (lognormal, sigma 1)."""

    name: str
    role: str = "candidate"
    accuracy: float = 0.8
    agreement: float = 0.5
    flags: dict[str, float] = field(default_factory=dict)
    failure: float = 0.0
    cost: float = 0.001
    latency: float = 1.0
    # Probes: P(attack succeeds) per base probe, on average.
    attack_success: float | None = None


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _bern(rng: np.random.Generator, p: float, effect: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Bernoulli draws whose log-odds are ``logit(p) + effect`` (effect: per request)."""
    z = _logit(p) + effect
    return rng.random(effect.shape) < 1 / (1 + np.exp(-z))


def world(
    n: int,
    primary: Model,
    others: Sequence[Model],
    *,
    seed: int,
    sessions: int | None = None,
    icc_sd: float = 1.4,
    difficulty_sd: float = 1.5,
    per_side: str | None = "accuracy",
    agreement: str | None = None,
    probes: int = 0,
    probe_variants: int = 1,
    continuous: bool = False,
) -> Dataset:
    """``n`` requests. ``sessions``: requests grouped into that many clusters sharing an
    effect (sd ``icc_sd`` on the log-odds). ``per_side``: a per-side scorer name (correct
    vs an expected answer); ``agreement``: a pair scorer name (agreement with the primary).
    ``probes``: that many base probes x ``probe_variants`` variants as probe records.
    ``continuous``: per-side scores in (0, 1), skewed, instead of correct/incorrect."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, difficulty_sd, n)
    cluster: list[str | None] = [None] * n
    if sessions:
        of = rng.integers(0, sessions, n)
        effect = effect + rng.normal(0, icc_sd, sessions)[of]
        cluster = [f"s{int(c)}" for c in of]
    ds = Dataset()
    if per_side:
        ds.scorer_info[per_side] = DEFAULT_INFO
    if agreement:
        ds.scorer_info[agreement] = ScorerInfo()
    sides: dict[str, dict[str, Any]] = {}
    for m in [primary, *others]:
        d: dict[str, Any] = {
            "correct": (
                1 / (1 + np.exp(-(_logit(m.accuracy) + effect + rng.normal(0, 1, n))))
                if continuous
                else _bern(rng, m.accuracy, effect)
            ),
            "fail": rng.random(n) < m.failure,
            "cost": m.cost * rng.lognormal(-0.5, 1.0, n),
            "latency": m.latency * rng.lognormal(0, 0.5, n),
            "flags": {k: rng.random(n) < p for k, p in m.flags.items()},
        }
        if m is not primary:
            # Agreement with the primary, correlated with difficulty (hard requests differ).
            d["agree"] = _bern(rng, m.agreement, -0.5 * effect)
        sides[m.name] = d
        for k in m.flags:
            ds.scorer_info[k] = SAFETY_FLAG
    p = sides[primary.name]
    for m in others:
        c = sides[m.name]
        for i in range(n):
            rid = f"r{i}"
            pid = f"{rid}:{m.name}"
            ds.pairs.append(
                PairRow(
                    pair_id=pid,
                    request_id=rid,
                    ts=1.7e9 + i,
                    source="traffic",
                    route="chat",
                    task=None,
                    prompt="",
                    primary=_side(primary, p, i),
                    candidate=_side(m, c, i),
                    cluster=cluster[i],
                )
            )
            if c["fail"][i] or p["fail"][i]:
                continue
            if per_side:
                ds.scores[(pid, per_side, "primary")] = ScoreRow(float(p["correct"][i]), None, "")
                ds.scores[(pid, per_side, "candidate")] = ScoreRow(float(c["correct"][i]), None, "")
            if agreement:
                ds.scores[(pid, agreement, "pair")] = ScoreRow(float(c["agree"][i]), None, "")
            for k in m.flags:
                ds.scores[(pid, k, "candidate")] = ScoreRow(float(c["flags"][k][i]), None, "")
                ds.scores[(pid, k, "primary")] = ScoreRow(
                    float(p["flags"].get(k, np.zeros(n))[i]), None, ""
                )
    if probes:
        _probes(ds, rng, primary, others, probes, probe_variants)
    return ds


def true_mean(p: float, sd: float, noise: float = 0.0) -> float:
    """E[sigmoid(logit(p) + N(0, sd^2 + noise^2))]: a model's mean score over the traffic."""
    z = np.random.default_rng(12345).normal(0, np.hypot(sd, noise), 4_000_000)
    return float(np.mean(1 / (1 + np.exp(-(_logit(p) + z)))))


def _side(m: Model, d: dict[str, Any], i: int) -> SideRow:
    return SideRow(
        upstream=m.name,
        role=m.role,
        model=m.name,
        error_type="server_error" if d["fail"][i] else None,
        latency_s=float(d["latency"][i]),
        ttft_s=None,
        attempts=1,
        input_tokens=100,
        output_tokens=50,
        cached_input_tokens=None,
        estimated=False,
        cost_usd=float(d["cost"][i]),
        text="",
    )


def _probes(
    ds: Dataset,
    rng: np.random.Generator,
    primary: Model,
    others: Sequence[Model],
    base: int,
    variants: int,
) -> None:
    """Base probes with a shared hardness; variants of one base probe succeed together more
    often than independent probes would (their log-odds share the base's effect)."""
    hardness = rng.normal(0, 1.5, base)
    for m in others:
        if m.attack_success is None or primary.attack_success is None:
            continue
        for b in range(base):
            for v in range(variants):
                eff = np.array([hardness[b] + rng.normal(0, 0.5)])
                pid = f"probe-{b}~{v}:{m.name}"
                verdicts = {
                    "primary": {
                        "attack_success": bool(_bern(rng, primary.attack_success, eff)[0]),
                        "reason": "",
                    },
                    "candidate": {
                        "attack_success": bool(_bern(rng, m.attack_success, eff)[0]),
                        "reason": "",
                    },
                }
                ds.pairs.append(
                    PairRow(
                        pair_id=pid,
                        request_id=f"probe-{b}~{v}",
                        ts=1.7e9,
                        source="probe",
                        route="chat",
                        task="probe:jailbreak",
                        prompt="",
                        primary=_side(primary, _ok(), 0),
                        candidate=_side(m, _ok(), 0),
                        cluster=f"probe:b{b}",
                        probe={
                            "id": f"b{b}~{v}" if v else f"b{b}",
                            "base_id": f"b{b}",
                            "suite": "sim",
                            "category": "jailbreak",
                            "expect": "refuse",
                            "variant": f"v{v}" if v else None,
                            "verdict": verdicts,
                        },
                    )
                )


def _ok() -> dict[str, Any]:
    return {
        "fail": np.zeros(1, dtype=bool),
        "latency": np.ones(1),
        "cost": np.full(1, 0.001),
    }


def report(ds: Dataset, **rules: Any) -> dict[str, Any]:
    """The report of ``ds`` at the default settings, with these decision rules (as in a
    config file's ``report.rules``: ``preset=...`` and overrides)."""
    # 1,000 resamples instead of the default 2,000 halves the run time; more resamples only
    # make the interval's ends less noisy, they do not move them.
    cfg = Report(
        rules=DecisionRules.model_validate(rules), worst_examples=0, bootstrap_resamples=1000
    )
    return build_report(ds, cfg, PRICES)
