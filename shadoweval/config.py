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


class Primary(_Model):
    """The production upstream: every request goes here and its answer goes back untouched."""

    name: str = "primary"
    url: str
    connect_timeout_s: float = Field(10.0, gt=0)
    # LLM generations can legitimately last minutes.
    timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(0, ge=0, description="0 = unlimited")

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


SinkConfig = Annotated[FileSink | MemorySink, Field(discriminator="kind")]

BuiltinRedaction = Literal["email", "phone", "credit_card", "bearer_token", "api_key", "ipv4"]


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
    builtin: list[BuiltinRedaction] = Field(
        default_factory=lambda: ["email", "phone", "credit_card", "bearer_token", "api_key"]
    )
    custom: list[CustomRedaction] = Field(default_factory=list)


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
    """``SHADOWEVAL_PRIMARY__URL=...`` sets ``primary.url``; list items by index (``CANDIDATES__0__URL``)."""
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
    return parse(raw, str(path), environ)
