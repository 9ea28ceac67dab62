"""Typed configuration: YAML file + ``SHADOWEVAL_*`` environment overrides, validated once.

Every section is a frozen pydantic model with ``extra="forbid"`` so a typo is an error that
names the key. Loading has no side effects: no sockets, no logging set-up, no files opened
besides the config itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yarl import URL

ENV_PREFIX = "SHADOWEVAL_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_url(value: str) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if url.query_string or url.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be 1-63 characters of letters, digits, '_', '.', '-' (it becomes a metric label)"
        )
    return value


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class AdminListen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


RetryOn = Literal["connect", "timeout", "http_429", "http_5xx"]


_DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("connect", "http_429", "http_5xx")


class Retry(_Model):
    """Retries with exponential backoff and full jitter; ``Retry-After`` is honoured."""

    max_attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.2, ge=0)
    max_backoff_s: float = Field(5.0, ge=0)
    retry_on: list[RetryOn] = Field(default_factory=lambda: list(_DEFAULT_RETRY_ON))
    respect_retry_after: bool = True
    # A Retry-After longer than this is not waited for: the attempt counts as failed.
    max_retry_after_s: float = Field(30.0, ge=0)


def _no_primary_retry() -> Retry:
    return Retry(max_attempts=1, retry_on=["connect"])


class Primary(_Model):
    """The production upstream: every request goes here and its answer goes back untouched."""

    name: str = "primary"
    url: str
    connect_timeout_s: float = Field(10.0, gt=0)
    # LLM generations can legitimately last minutes.
    timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(0, ge=0, description="0 = unlimited")
    # Off by default: retrying a non-idempotent generation is the caller's decision. Retries
    # happen only before any byte has been relayed to the caller.
    retry: Retry = Field(default_factory=_no_primary_retry)

    _name = field_validator("name")(_check_name)
    _url = field_validator("url")(_check_url)


class Candidate(_Model):
    """A model that receives sampled copies of the traffic; its answers never reach the caller."""

    name: str
    url: str
    role: Literal["candidate", "control"] = "candidate"
    model: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    forward_caller_auth: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = None
    system_prompt_mode: Literal["replace", "prepend"] = "replace"
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    concurrency: int = Field(8, ge=1, le=4096)
    queue_size: int = Field(256, ge=1, le=1_000_000)
    connect_timeout_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    retry: Retry = Field(default_factory=Retry)

    _name = field_validator("name")(_check_name)
    _url = field_validator("url")(_check_url)

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if key.lower() in ("authorization", "host", "content-length"):
                raise ValueError(f"{key!r} cannot be set here (use api_key_env for credentials)")
            if "\r" in val or "\n" in val or "\r" in key or "\n" in key:
                raise ValueError(f"header {key!r} contains a line break")
        return value

    @model_validator(mode="after")
    def _auth_rules(self) -> Candidate:
        if self.forward_caller_auth and self.role != "control":
            raise ValueError(
                "forward_caller_auth is only allowed for role: control (the primary's own "
                "endpoint); a candidate never receives the caller's credentials"
            )
        if self.forward_caller_auth and self.api_key_env:
            raise ValueError("set either forward_caller_auth or api_key_env, not both")
        return self


class Sampling(_Model):
    rate: float = Field(1.0, ge=0.0, le=1.0)
    # "header:<name>" hashes that request header, "body" hashes the request body; unset
    # samples at random. A keyed decision is stable: the same input is always in or out.
    key: str | None = None
    max_per_second: float | None = Field(None, gt=0)
    salt: str = ""

    @field_validator("key")
    @classmethod
    def _key_shape(cls, value: str | None) -> str | None:
        if value is None or value == "body":
            return value
        if value.startswith("header:") and len(value) > len("header:"):
            return value
        raise ValueError("must be 'body' or 'header:<header-name>'")


class Limits(_Model):
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Bounded copy of each answer kept for the pair record; the caller always gets all bytes.
    capture_max_bytes: int = Field(1024 * 1024, ge=1024)


class FileSink(_Model):
    kind: Literal["file"] = "file"
    path: str = "pairs.jsonl"
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=0)
    buffer_records: int = Field(10_000, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)


class MemorySink(_Model):
    kind: Literal["memory"]
    max_records: int = Field(100_000, ge=1)


# Kafka's own rule for topic names (kafka.common.internals.Topic).
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _check_topic(value: str) -> str:
    if not _TOPIC_RE.match(value) or value in (".", ".."):
        raise ValueError("must be 1-249 characters of letters, digits, '.', '_', '-'")
    return value


class KafkaSecurity(_Model):
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    # A file, not a value: the secret stays out of config files, env dumps and logs.
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism is required when protocol is {self.protocol}")
        if self.sasl_mechanism is not None:
            if not sasl:
                raise ValueError(
                    f"sasl_mechanism is set but protocol is {self.protocol} "
                    "(use SASL_SSL, or SASL_PLAINTEXT on a trusted network)"
                )
            if not self.sasl_username:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username")
            if not self.sasl_password_file:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_password_file")
        elif self.sasl_username or self.sasl_password_file:
            raise ValueError("sasl_username/sasl_password_file are set but sasl_mechanism is not")
        tls = self.protocol in ("SSL", "SASL_SSL")
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        stray = [name for name, value in files.items() if value]
        if stray and not tls:
            raise ValueError(f"{', '.join(stray)} set but protocol {self.protocol} has no TLS")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        return self


class KafkaSink(_Model):
    kind: Literal["kafka"]
    bootstrap_servers: list[str]
    topic: str = "shadoweval.pairs"
    # Created by `shadoweval kafka init` for the offline scorer's results.
    scores_topic: str = "shadoweval.scores"
    client_id: str = "shadoweval"
    acks: Literal[0, 1, "all"] = "all"
    enable_idempotence: bool = True
    # zstd and lz4/snappy need cramjam; the sink falls back to gzip (with a log line) without it.
    compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = "zstd"
    linger_ms: int = Field(10, ge=0, le=60_000)
    max_batch_size: int = Field(256 * 1024, ge=1024, description="bytes per partition batch")
    # Larger records are counted as failed; keep it <= the broker's message.max.bytes.
    max_request_size: int = Field(1024 * 1024, ge=1024)
    request_timeout_ms: int = Field(30_000, ge=1000)
    key: Literal["request_id", "sampling_key"] = "request_id"
    buffer_records: int = Field(10_000, ge=1)
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # Topic settings used by `shadoweval kafka init` only.
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1, le=32767)
    retention_ms: int | None = Field(
        None, ge=-1, description="-1 = forever; unset = broker default"
    )
    # On shutdown, records Kafka did not acknowledge are appended here as JSONL.
    spill_path: str | None = None

    _topic = field_validator("topic", "scores_topic")(_check_topic)

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_shape(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one host:port")
        for server in value:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in server:
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("retention_ms")
    @classmethod
    def _retention(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("must be positive, or -1 to keep records forever")
        return value

    @model_validator(mode="after")
    def _acks_for_idempotence(self) -> KafkaSink:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError(
                f"acks: {self.acks} is not allowed with enable_idempotence: true "
                "(idempotence needs acks: all; or set enable_idempotence: false)"
            )
        if self.topic == self.scores_topic:
            raise ValueError("topic and scores_topic must differ")
        return self


SinkConfig = Annotated[FileSink | MemorySink | KafkaSink, Field(discriminator="kind")]

BuiltinRedaction = Literal["email", "phone", "credit_card", "bearer_token", "api_key", "ipv4"]


_DEFAULT_REDACTIONS: tuple[BuiltinRedaction, ...] = (
    "email",
    "phone",
    "credit_card",
    "bearer_token",
    "api_key",
)


class CustomRedaction(_Model):
    name: str
    pattern: str
    replacement: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Redaction(_Model):
    enabled: bool = True
    builtin: list[BuiltinRedaction] = Field(default_factory=lambda: list(_DEFAULT_REDACTIONS))
    custom: list[CustomRedaction] = Field(default_factory=list)


class ModelPrice(_Model):
    """USD per million tokens; cached input defaults to the input price."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class UpstreamCost(_Model):
    """Fixed cost of a self-hosted upstream (GPU hours), accrued over wall time."""

    per_hour: float = Field(..., ge=0)


class Pricing(_Model):
    # Keys are model names; a versioned name ("gpt-4o-2024-08-06") matches the longest
    # key it starts with ("gpt-4o").
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    upstreams: dict[str, UpstreamCost] = Field(default_factory=dict)


class MetricsConfig(_Model):
    # Distinct model-name label values before the rest fold into "other".
    model_label_limit: int = Field(50, ge=1, le=10_000)
    loop_lag_interval_s: float = Field(0.25, gt=0)


class Shutdown(_Model):
    grace_s: float = Field(30.0, ge=0)
    shadow_grace_s: float = Field(5.0, ge=0)


class Config(_Model):
    listen: Listen = Field(default_factory=Listen)
    admin: AdminListen = Field(default_factory=AdminListen)
    primary: Primary
    candidates: list[Candidate] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)
    sink: SinkConfig = Field(default_factory=FileSink)
    redaction: Redaction = Field(default_factory=Redaction)
    limits: Limits = Field(default_factory=Limits)
    shutdown: Shutdown = Field(default_factory=Shutdown)
    pricing: Pricing = Field(default_factory=Pricing)
    # A YAML file with the `pricing` section (models/upstreams); relative to the config file.
    pricing_file: str | None = None
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen = {self.primary.name}
        for cand in self.candidates:
            if cand.name in seen:
                raise ValueError(f"upstream name {cand.name!r} is used twice")
            seen.add(cand.name)
        return self

    def missing_credentials(self) -> list[str]:
        """Candidates whose ``api_key_env`` names an unset environment variable."""
        return [
            f"candidates[{c.name}].api_key_env: environment variable {c.api_key_env} is not set"
            for c in self.candidates
            if c.api_key_env and not os.environ.get(c.api_key_env)
        ]


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        suffix = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        if isinstance(got, dict):
            suffix = ""
        lines.append(f"  {loc}: {msg}{suffix}")
    return "\n".join(lines)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``SHADOWEVAL_PRIMARY__URL=...`` sets ``primary.url``; list items go by index
    (``SHADOWEVAL_CANDIDATES__0__URL``)."""
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        # Other SHADOWEVAL_* variables (e.g. for the CLI) are not config keys.
        if not all(path) or path[0] not in Config.model_fields:
            continue
        node: Any = raw
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{key}: list index {part!r} is out of range")
                idx = int(part)
                if last:
                    node[idx] = yaml.safe_load(value)
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = yaml.safe_load(value)
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"{key}: {'.'.join(path[:i])} is not a section")
    return raw


def parse(raw: Any, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    raw = _apply_env(raw, os.environ if environ is None else environ)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and raw.get("pricing_file") and "pricing" not in raw:
        raw["pricing"] = _load_pricing(path.parent / str(raw["pricing_file"]))
    return parse(raw, str(path), environ)


def _load_pricing(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"pricing_file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pricing_file: {path} is not valid YAML: {exc}") from None
