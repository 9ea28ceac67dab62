"""The proxy's configuration file: ``Config`` with its sections, ``parse`` and ``load``."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator

from shadoweval.config.base import (
    Model,
    check_name,
    check_upstream_headers,
    check_url,
    parse_duration,
    read_yaml,
    regex_problem,
    validate,
)
from shadoweval.config.kafka import KafkaSecurity, check_servers, check_topic, split_servers
from shadoweval.config.probes import BUILTIN_SUITES, Probes
from shadoweval.config.report import Report
from shadoweval.headers import CREDENTIALS, header_problem
from shadoweval.types import Route


def _check_candidate_url(value: str) -> str:
    return check_url(value, query=True)


class Listen(Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Relay processes on the proxy port (SO_REUSEPORT: the kernel spreads connections over
    # them). One per core given to the pod; more than one needs the shadow worker.
    processes: int = Field(1, ge=1, le=64)


class AdminListen(Model):
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


class UpstreamTLS(Model):
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


class Retry(Model):
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


class Primary(Model):
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

    _name = field_validator("name")(check_name)
    _url = field_validator("url")(check_url)

    @model_validator(mode="after")
    def _tls_scheme(self) -> Primary:
        _tls_needs_https(self.url, self.tls)
        return self


class CircuitBreaker(Model):
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


class CandidateMatch(Model):
    """Which requests a candidate is offered (every key set must match; within a key, any
    value). Globs as in shell patterns (``gpt-4o*``); a value without ``*?[`` is exact."""

    models: list[str] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    # The x-shadoweval-task header's value.
    tasks: list[str] = Field(default_factory=list)
    # Request header name -> glob of its value (names case-insensitive).
    headers: dict[str, str] = Field(default_factory=dict)


class CandidateBudget(Model):
    """Spend caps of a candidate; unset = no cap. Shadows beyond one are dropped{budget}."""

    # Priced with the pricing table as answers arrive; the day rolls at 00:00 UTC.
    usd_per_day: float | None = Field(None, ge=0, allow_inf_nan=False)
    # Over the campaign (since the proxy started, carried over a reload).
    max_requests: int | None = Field(None, ge=0)
    max_pairs: int | None = Field(None, ge=0)


class CandidateSchedule(Model):
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


class Candidate(Model):
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

    _name = field_validator("name")(check_name)
    # A query is allowed: merged with the caller's (the candidate's names win).
    _url = field_validator("url")(_check_candidate_url)

    _headers = field_validator("headers")(check_upstream_headers)

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


class Conversations(Model):
    """The store of Responses turns that ``candidates[].stateful: rebuild`` rebuilds
    conversations from (only built when a candidate asks for it); least recently used turns
    are evicted past either bound."""

    max_turns: int = Field(10_000, ge=1, le=10_000_000)
    max_bytes: int = Field(64 * _MIB, ge=64 * 1024, le=16 * 1024 * _MIB)


class Sampling(Model):
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


class Limits(Model):
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


class FileSink(Model):
    kind: Literal["file"] = "file"
    path: str = Field("pairs.jsonl", min_length=1)
    max_bytes: int = Field(100 * _MIB, ge=1024, le=1024 * 1024 * _MIB)
    backups: int = Field(5, ge=0, le=1000)
    buffer_records: int = Field(10_000, ge=1, le=_MAX_BUFFER_RECORDS)
    # Also the longest a record waits in memory, so what a SIGKILL can lose (reliability.md).
    flush_interval_s: float = Field(0.5, gt=0, le=60, allow_inf_nan=False)


class MemorySink(Model):
    kind: Literal["memory"]
    max_records: int = Field(100_000, ge=1, le=10 * _MAX_BUFFER_RECORDS)


class KafkaSink(Model):
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

    _topic = field_validator("topic", "scores_topic")(check_topic)

    _servers_in = field_validator("bootstrap_servers", mode="before")(split_servers)
    _servers = field_validator("bootstrap_servers")(check_servers)

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


class CustomRedaction(Model):
    name: str
    pattern: str
    replacement: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        problem = regex_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Redaction(Model):
    enabled: bool = True
    builtin: list[BuiltinRedaction] = Field(default_factory=lambda: list(_DEFAULT_REDACTIONS))
    custom: list[CustomRedaction] = Field(default_factory=list)


# A recorded header value is cut to this many characters (a tenant or team name, not a
# payload).
RECORD_HEADER_MAX_CHARS = 256


class Record(Model):
    """What a pair record keeps of the request besides its body."""

    # Request headers copied into each pair record's ``headers`` object (names lowercased,
    # values redacted and cut at 256 characters): for ``report --by header:NAME`` and for
    # ``plan`` to apply ``match.headers``. Credentials are refused.
    headers: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("headers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        names = []
        for name in value:
            problem = header_problem(name, "x")
            if problem is not None:
                raise ValueError(problem)
            if name.lower() in CREDENTIALS:
                raise ValueError(f"{name!r} is a credential; it is never recorded")
            names.append(name.lower())
        return list(dict.fromkeys(names))


class ModelPrice(Model):
    """USD per million tokens; cached input defaults to the input price."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    # Input written to a prompt cache (Anthropic: 1.25x the input price); unset = input price.
    cache_write_input_per_mtok: float | None = Field(None, ge=0)


class UpstreamCost(Model):
    """Fixed cost of a self-hosted upstream (GPU hours), accrued over wall time."""

    per_hour: float = Field(..., ge=0)


class Pricing(Model):
    # Keys are model names; a versioned name ("gpt-4o-2024-08-06") matches the longest
    # key it starts with ("gpt-4o").
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    upstreams: dict[str, UpstreamCost] = Field(default_factory=dict)


class MetricsConfig(Model):
    # Distinct model-name label values before the rest fold into "other".
    model_label_limit: int = Field(50, ge=1, le=10_000)
    loop_lag_interval_s: float = Field(0.25, gt=0)


class ShadowWorker(Model):
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


class CampaignState(Model):
    # A file the candidates' budget and schedule counters are kept in across restarts
    # (docs/campaigns.md); none: they start from zero with the process.
    path: str | None = None
    interval_s: float = Field(10.0, ge=0.1, le=3600, allow_inf_nan=False)


class Shutdown(Model):
    grace_s: float = Field(30.0, ge=0, le=_MAX_CALL_S, allow_inf_nan=False)
    shadow_grace_s: float = Field(5.0, ge=0, le=_MAX_CALL_S, allow_inf_nan=False)


class Tracing(Model):
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
        return None if value is None else check_url(value)

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            problem = header_problem(key, val)
            if problem is not None:
                raise ValueError(problem)
        return value


class Config(Model):
    listen: Listen = Field(default_factory=Listen)
    admin: AdminListen = Field(default_factory=AdminListen)
    primary: Primary
    candidates: list[Candidate] = Field(default_factory=list)
    conversations: Conversations = Field(default_factory=Conversations)
    sampling: Sampling = Field(default_factory=Sampling)
    sink: SinkConfig = Field(default_factory=FileSink)
    redaction: Redaction = Field(default_factory=Redaction)
    record: Record = Field(default_factory=Record)
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
    campaign_state: CampaignState = Field(default_factory=CampaignState)
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

    def digest(self) -> str:
        """A short stable hash of the configuration as validated (env overrides included):
        what ``shadoweval_config_info{hash}`` shows, and what a shadow is tagged with so the
        pairing process records it under the configuration it was offered under."""
        text = json.dumps(self.for_children(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
        """Sink and campaign-state files that could not be written (checked at start,
        never created here)."""
        problems = []
        if isinstance(self.sink, FileSink):
            problems += _file_problem("sink.path", self.sink.path)
        elif isinstance(self.sink, KafkaSink) and self.sink.spill_path:
            problems += _file_problem("sink.spill_path", self.sink.spill_path)
        if self.campaign_state.path is not None:
            problems += _file_problem("campaign_state.path", self.campaign_state.path)
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


def parse(raw: Any, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    return validate(Config, raw, source, environ)


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw, dict) and raw.get("pricing_file") and "pricing" not in raw:
        raw["pricing"] = load_pricing(path.parent / str(raw["pricing_file"]))
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


def load_pricing(path: Path) -> Any:
    return read_yaml(path, "pricing_file")
