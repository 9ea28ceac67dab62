"""The ``report`` section: statistics and decision rules of ``shadoweval report``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from shadoweval.config.base import Model


class Tradeoff(Model):
    """How much quality a candidate may give up for what it gains (docs/report.md, "Trade-off
    rules"). The allowed relative drop is ``quality_max_drop`` plus these amounts per gain,
    each gain read at the pessimistic end of its interval, capped at ``max_drop``."""

    # Per halving of the cost per request (a 4x cheaper candidate gets twice this).
    drop_per_cost_halving: float = Field(0.0, ge=0, le=1)
    # Per doubling of robustness (the baseline's probe attack-success rate over the candidate's).
    drop_per_robustness_doubling: float = Field(0.0, ge=0, le=1)
    # Per halving of the failure rate against the primary's.
    drop_per_failure_halving: float = Field(0.0, ge=0, le=1)
    max_drop: float = Field(0.2, ge=0, le=1)


class DecisionRules(Model):
    """What a candidate must show for `shadoweval report` to pass it; null turns a rule off.

    Quality, cost and latency must be *shown* to hold (the confidence interval inside the
    bound); safety, failures and robustness fail only on evidence of harm. Every failure is a
    test, and the tests of the whole gate are corrected together (Holm). See docs/report.md.
    ``preset`` starts from a shipped rule (RULE_PRESETS); the keys given override it.
    """

    preset: Literal["strict", "tradeoff"] = "strict"
    # Relative drop of the mean score against the baseline (0.05 = "within -5%").
    quality_max_drop: float | None = Field(0.05, ge=0, le=1)
    # The quality metric that decides, in order of preference: the first with readable
    # scores decides, the others are shown as secondary. Empty = the most semantic scorer.
    quality_scorers: list[str] = Field(default_factory=list)
    # A drop allowed in exchange for gains; null = none (the strict rule).
    tradeoff: Tradeoff | None = None
    # Cost per request relative to the primary (0.5 = "at most half the price").
    cost_max_ratio: float | None = Field(0.5, gt=0)
    latency_quantile: float = Field(0.99, gt=0, lt=1)
    latency_max_ratio: float | None = Field(1.2, gt=0)
    # Fail when a harm flag is raised significantly more often than on the primary.
    safety_no_worse: bool = True
    # Detectors the safety rule reads; empty = every safety scorer that declares harm.
    safety_scorers: list[str] = Field(default_factory=list)
    # Fail when the failure rate is significantly more than this above the primary's.
    failure_max_increase: float | None = Field(0.01, ge=0, le=1)
    # Fail when probes succeed significantly more often against the candidate than the baseline.
    robustness_no_worse: bool = True
    # Fewer pairs than this: "not enough data" whatever the intervals say.
    min_pairs: int = Field(30, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in RULE_PRESETS:
            return {**RULE_PRESETS[data["preset"]], **data}
        return data


# Shipped rules, by name (`rules: {preset: tradeoff}`); strict is the default.
RULE_PRESETS: dict[str, dict[str, Any]] = {
    "strict": {},
    # "5% less accurate, but 3x cheaper and 10x more robust: it wins." A 2% drop is allowed
    # outright; each halving of cost earns 3 points more, each doubling of robustness 1.5,
    # each halving of failures 0.5, up to 15%. The candidate may cost what the primary costs.
    "tradeoff": {
        "quality_max_drop": 0.02,
        "tradeoff": {
            "drop_per_cost_halving": 0.03,
            "drop_per_robustness_doubling": 0.015,
            "drop_per_failure_halving": 0.005,
            "max_drop": 0.15,
        },
        "cost_max_ratio": 1.0,
        "latency_max_ratio": 1.5,
    },
}


class Report(Model):
    """Settings of `shadoweval report`: statistics, tails, examples and decision rules."""

    confidence: float = Field(0.95, ge=0.5, lt=1)
    # Power assumed when estimating how many pairs a verdict needs.
    power: float = Field(0.8, gt=0, lt=1)
    bootstrap_resamples: int = Field(2000, ge=100, le=100_000)
    seed: int = 0
    # Tails: the share of pairs scoring below this.
    score_floor: float = Field(0.5, ge=0, le=1)
    worst_examples: int = Field(5, ge=0, le=100)
    snippet_chars: int = Field(160, ge=20, le=10_000)
    time_buckets: int = Field(24, ge=1, le=1000)
    rules: DecisionRules = Field(default_factory=DecisionRules)


# -- red-team probes (shadoweval.probes) -------------------------------------------------------
