"""A pair record as one row: what the report reads of it (numbers, ids, short snippets)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class SideRow:
    upstream: str
    role: str
    model: str | None
    error_type: str | None
    latency_s: float
    ttft_s: float | None
    attempts: int
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    estimated: bool
    cost_usd: float | None
    text: str

    @property
    def ok(self) -> bool:
        return self.error_type is None


@dataclass(slots=True)
class PairRow:
    pair_id: str
    request_id: str
    ts: float  # unix seconds
    source: str
    route: str
    task: str | None
    prompt: str
    primary: SideRow
    candidate: SideRow
    # Requests that are not independent share a cluster: the hashed sampling key (a
    # session or user when sampling.key names one), a probe's base probe. None = itself.
    cluster: str | None = None
    # Probe records only: the record's ``probe`` object (id, base_id, category, verdicts).
    probe: dict[str, Any] | None = None
    # Request headers the record carries (a ``headers`` object, names lowercased), for
    # ``--by header:NAME``; None when the record has none.
    headers: dict[str, str] | None = None


def snippet(text: str | None, limit: int) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def prompt_text(request: Any) -> str:
    """The caller's last user turn (chat), or the prompt / input of the other routes."""
    if not isinstance(request, dict):
        return ""
    messages = request.get("messages")
    if isinstance(messages, list):
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return _content_text(msg.get("content"))
    for key in ("prompt", "input"):
        value = request.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return " ".join(_content_text(v) for v in value)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content
        ).strip()
    if isinstance(content, dict):
        return _content_text(content.get("content") or content.get("text"))
    return ""


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


SideValues = tuple[
    str,
    str,
    str | None,
    str | None,
    float,
    float | None,
    int,
    int | None,
    int | None,
    int | None,
    bool,
    float | None,
]  # SideRow's fields but the text, in its order


def side_values(obj: Any) -> SideValues:
    """A side's numbers and names, checked as the report reads them (ValueError, KeyError:
    not a side). Written for speed (two per pair record): the common types are tested
    inline, anything else goes through as_float / as_int, which decide as before."""
    if not isinstance(obj, dict):
        raise ValueError("side is not an object")
    get = obj.get
    raw_usage = get("usage")
    usage: dict[str, Any] = raw_usage if type(raw_usage) is dict else {}
    latency = get("latency_s")
    if not (type(latency) is float and latency - latency == 0.0):
        latency = as_float(latency)
        if latency is None:
            raise ValueError("side has no latency_s")
    ttft, cost = get("ttft_s"), get("cost_usd")
    attempts = get("attempts")
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    cached = usage.get("cached_input_tokens")
    model, error_type = get("model"), get("error_type")
    return (
        str(obj["upstream"]),
        str(obj["role"]),
        model if type(model) is str else None,
        error_type if type(error_type) is str else None,
        latency,
        None
        if ttft is None
        else ttft
        if type(ttft) is float and ttft - ttft == 0.0
        else as_float(ttft),
        (attempts if type(attempts) is int else as_int(attempts)) or 1,
        tokens_in if type(tokens_in) is int else as_int(tokens_in),
        tokens_out if type(tokens_out) is int else as_int(tokens_out),
        cached if type(cached) is int else as_int(cached),
        bool(usage.get("estimated")),
        None
        if cost is None
        else cost
        if type(cost) is float and cost - cost == 0.0
        else as_float(cost),
    )


def side_text(obj: dict[str, Any], limit: int) -> str:
    """What the report shows of a side's answer: its text, else its tool calls, else its
    error."""
    get = obj.get
    text = get("output_text")
    if not text and get("tool_calls"):
        text = orjson.dumps(obj["tool_calls"]).decode()
    if not text and get("error"):
        text = f"[error] {obj['error']}"
    return snippet(text if isinstance(text, str) else None, limit)


def headers_of(obj: Any) -> dict[str, str] | None:
    if not isinstance(obj, dict):
        return None
    return {str(k).lower(): v for k, v in obj.items() if isinstance(v, str)}
