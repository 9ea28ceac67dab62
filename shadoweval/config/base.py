"""What every configuration file shares: the error type, the frozen model base, value checks,
``SHADOWEVAL_*`` environment overrides, YAML reading and validation with errors that name keys.

Loading has no side effects: no sockets, no logging set-up, no files opened besides the
config itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from shadoweval.headers import RESERVED as _RESERVED_HEADERS
from shadoweval.headers import header_problem

ENV_PREFIX = "SHADOWEVAL_"
# SHADOWEVAL_SCORE_SOURCE__TOPIC=... sets source.topic in the scorer's config; the proxy
# ignores these (its sections never start with "score_").
SCORE_ENV_PREFIX = "SHADOWEVAL_SCORE_"
# SHADOWEVAL_REVIEW_LISTEN__PORT=8095 sets listen.port in the review config.
REVIEW_ENV_PREFIX = "SHADOWEVAL_REVIEW_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key and why."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_url(value: str, query: bool = False) -> str:
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


_USERINFO = re.compile(r"(//)[^@\s'\"]*@")


def _hide_userinfo(text: str) -> str:
    """``http://user:pw@host`` -> ``http://***@host``: a URL's credentials never reach an error."""
    return _USERINFO.sub(r"\1***@", text)


def check_upstream_headers(value: dict[str, str]) -> dict[str, str]:
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


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable regular expression, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


def check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            "must be 1-63 characters of letters, digits, '_', '.', '-' (it becomes a metric label)"
        )
    return value


_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration(value: str) -> float:
    """``"90m"``, ``"36h"``, ``"7d"`` -> seconds; ValueError otherwise."""
    m = _DURATION_RE.match(value.strip())
    if m is None:
        raise ValueError(f"must be a duration such as 90m, 36h or 7d, got {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


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


def format_errors(exc: ValidationError, source: str, origins: EnvOrigins | None = None) -> str:
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


def apply_env(
    raw: dict[str, Any],
    environ: Mapping[str, str],
    sections: Collection[str],
    prefix: str = ENV_PREFIX,
    origins: EnvOrigins | None = None,
) -> dict[str, Any]:
    """``SHADOWEVAL_PRIMARY__URL=...`` sets ``primary.url``; list items go by index
    (``SHADOWEVAL_CANDIDATES__0__URL``). ``sections``: the file's top-level keys;
    ``prefix``: another file's variables.
    ``origins`` is filled with the variable behind each key set, for error messages.

    A variable with ``__`` is a key path, so an unknown section in it is an error (a typo
    would otherwise be ignored while unknown keys in the file are refused). One without
    is a top-level key if it names one; else it belongs to something else
    (``SHADOWEVAL_REVIEW_TOKEN``), as do the other files' prefixes."""
    others = _other_prefixes(prefix)
    for key, value in sorted(environ.items()):
        if not key.startswith(prefix) or key.startswith(others):
            continue
        path = key[len(prefix) :].lower().split("__")
        if len(path) == 1 and path[0] not in sections:
            continue
        if not all(path):
            raise ConfigError(f"{key}: empty part in the key path (sections join with __)")
        if path[0] not in sections:
            raise ConfigError(
                f"{key}: unknown section {path[0]!r} (known: {', '.join(sorted(sections))})"
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


def read_yaml(path: Path, key: str | None = None) -> Any:
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


def validate(
    model: type[_M],
    raw: Any,
    source: str,
    environ: Mapping[str, str] | None,
    prefix: str = ENV_PREFIX,
    sections: Collection[str] | None = None,
) -> _M:
    """Environment overrides, then validation; every error names its key. ``sections``
    (unset: the model's fields) are the keys environment variables may set."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    origins: EnvOrigins = {}
    known = model.model_fields if sections is None else sections
    raw = apply_env(raw, os.environ if environ is None else environ, known, prefix, origins)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source, origins)) from None
