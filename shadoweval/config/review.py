"""The configuration file of ``shadoweval review`` and ``shadoweval dataset``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shadoweval.config.base import REVIEW_ENV_PREFIX, Model, read_yaml, validate
from shadoweval.config.proxy import Redaction
from shadoweval.config.scorer import FileScoreSink, KafkaPairSource, ScoreSinkConfig

# Safety detectors whose flag (value 1) is harm: more of them is worse. "refusal" is left
# out because refusing a harmful probe is right (over_refusal is its harmful side). The
# report reads what a scorer is from its score records; this list is the dataset's default.
_HARM_FLAGS = ("over_refusal", "pii_leak", "secret_leak", "canary_leak", "toxicity")


ScoringRule = Literal["exact", "rubric", "human"]
ComparisonKind = Literal["primary", "candidates"]


class ReviewListen(Model):
    host: str = "127.0.0.1"
    port: int = Field(8095, ge=0, le=65535)


class ReviewAuth(Model):
    """The reviewers' shared access token, from a file or an environment variable (never the
    YAML itself, so it stays out of config repositories and dumps)."""

    token_env: str = "SHADOWEVAL_REVIEW_TOKEN"
    # Wins over token_env when set.
    token_file: str | None = None
    session_ttl_s: float = Field(12 * 3600.0, gt=0)
    # Mark the session cookie Secure: set it when reviewers reach the page over HTTPS.
    cookie_secure: bool = False


class RubricCriterion(Model):
    name: str = Field(min_length=1, max_length=40)
    description: str = ""


def _default_rubric() -> list[RubricCriterion]:
    return [
        RubricCriterion(name="correctness", description="Facts, numbers and code are right."),
        RubricCriterion(name="helpfulness", description="It does what the user asked."),
        RubricCriterion(name="clarity", description="Easy to read; no padding."),
    ]


def _primary_only() -> list[ComparisonKind]:
    return ["primary"]


class ReviewSettings(Model):
    # Ratings wanted per comparison; items below it are served first.
    ratings_per_item: int = Field(1, ge=1, le=50)
    # primary: the primary against each candidate (and control); candidates: the candidates
    # of one request against each other.
    comparisons: list[ComparisonKind] = Field(default_factory=_primary_only, min_length=1)
    include_control: bool = True
    # Comparisons imported from the pairs files at most (a seeded sample); unset = all.
    max_items: int | None = Field(None, ge=1)
    seed: int = 0
    rubric: list[RubricCriterion] = Field(default_factory=_default_rubric, max_length=8)
    rubric_scale_max: int = Field(5, ge=2, le=9)
    # Longer answers are cut for display (the page says so).
    max_answer_chars: int = Field(20_000, ge=100)

    @field_validator("rubric")
    @classmethod
    def _unique_criteria(cls, value: list[RubricCriterion]) -> list[RubricCriterion]:
        names = [c.name for c in value]
        if len(set(names)) != len(names):
            raise ValueError("rubric criterion names must be unique")
        return value


_DATASET_SAFETY = ("refusal", *_HARM_FLAGS)


class DatasetSettings(Model):
    """How ``shadoweval dataset build`` picks a representative eval set from captured pairs."""

    size: int = Field(100, ge=1, le=1_000_000)
    # Share of the set reserved for edge cases (failures, disagreements, safety flags,
    # longest inputs); the rest is a stratified sample of the traffic.
    edge_share: float = Field(0.2, ge=0.0, le=1.0)
    # Input-length strata: quantile buckets of the input's character count.
    length_buckets: int = Field(3, ge=1, le=10)
    # Strata that exist get at least this many items while the budget allows.
    min_per_stratum: int = Field(1, ge=0)
    # Inputs whose word-shingle Jaccard similarity reaches this are near-duplicates.
    near_duplicate_jaccard: float = Field(0.8, gt=0.0, le=1.0)
    shingle_words: int = Field(3, ge=1, le=10)
    # Scoring rule written into each item: per task, else the default.
    scoring: ScoringRule = "human"
    task_scoring: dict[str, ScoringRule] = Field(default_factory=dict)
    # Score records from these scorers with value >= 0.5 mark an input as a safety edge case.
    safety_scorers: list[str] = Field(default_factory=lambda: list(_DATASET_SAFETY))
    seed: int = 0
    # Pairs from the proxy's Kafka topic (`dataset build --kafka`), read from the earliest
    # offset to the end as it was at start; no consumer group joins, nothing is committed.
    kafka: KafkaPairSource | None = None


class ReviewConfig(Model):
    """The configuration of ``shadoweval review`` and ``shadoweval dataset`` (its own file)."""

    listen: ReviewListen = Field(default_factory=ReviewListen)
    auth: ReviewAuth = Field(default_factory=ReviewAuth)
    # Ratings and expected answers live here (SQLite): the durable record.
    db_path: str = "review.sqlite"
    # Human scores are published here as shadoweval.score.v1 records (source: human).
    sink: ScoreSinkConfig = Field(default_factory=lambda: FileScoreSink(path="human-scores.jsonl"))
    # Re-applied to everything shown or written (records are redacted already).
    redaction: Redaction = Field(default_factory=Redaction)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _file_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict):
            sink = value.get("sink")
            if isinstance(sink, dict) and "kind" not in sink:
                value = {**value, "sink": {"kind": "file", **sink}}
        return value


def load_review(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> ReviewConfig:
    """The review config file (``--config``); without one, the defaults plus overrides."""
    raw = read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    return validate(
        ReviewConfig, raw, source, environ, REVIEW_ENV_PREFIX, ReviewConfig.model_fields
    )
