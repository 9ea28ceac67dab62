"""Small shared types: roles, error types, and what one upstream call leaves behind."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["primary", "candidate", "control"]
# The surfaces of shadoweval.routes.SURFACES (a test keeps the two the same).
Route = Literal["chat", "completions", "embeddings", "responses", "messages"]

# A closed set: these become metric label values, so nothing else may appear.
ErrorType = Literal[
    "timeout",
    "connect",
    "http_4xx",
    "http_429",
    "http_5xx",
    "invalid_response",
    "truncated_stream",
    "client_disconnected",
    "invalid_request",
    "dropped_queue_full",
    "dropped_rate_limit",
    "dropped_shutdown",
    "internal",
]
ERROR_TYPES: tuple[str, ...] = get_args(ErrorType)

Json = dict[str, Any]

# Chunk timings kept per call (enough for TTFT and the inter-token gaps of long answers).
MAX_CHUNK_TIMES = 4096
# Once the copy is full, the last bytes of the body are kept too: a stream's final events
# (usage, finish reason) and a JSON answer's closing usage object are there.
TAIL_BYTES = 64 * 1024
DEFAULT_CAPTURE_LIMIT = 1024 * 1024


@dataclass(slots=True)
class Capture:
    """The raw observation of one upstream call, filled in on the hot path.

    Nothing is parsed here: parsing happens later, off the caller's path.
    """

    started: float  # time.perf_counter() when the request was sent
    status: int | None = None
    content_type: str = ""
    content_encoding: str = ""
    body: bytearray = field(default_factory=bytearray)
    # The caller got every byte; only this copy is bounded (by ``limit``, which also bounds
    # the decoded size of a compressed body). A cut copy is a capture limit, not a failure.
    body_truncated: bool = False
    limit: int = DEFAULT_CAPTURE_LIMIT
    tail: bytearray = field(default_factory=bytearray)  # the last TAIL_BYTES past the copy
    # (bytes received so far, seconds since `started`) after each chunk, bounded; lets the
    # parser find the time to first token without timing anything on the hot path.
    chunk_times: list[tuple[int, float]] = field(default_factory=list)
    latency_s: float = 0.0
    error_type: ErrorType | None = None
    error: str | None = None
    attempts: int = 1
    received: int = 0  # body bytes, whole (body keeps a bounded copy)

    def keep(self, chunk: bytes) -> None:
        """Account for one body chunk as it arrives: its timing, and a copy up to ``limit``."""
        self.received += len(chunk)
        if len(self.chunk_times) < MAX_CHUNK_TIMES:
            self.chunk_times.append((self.received, time.perf_counter() - self.started))
        room = self.limit - len(self.body)
        if room > 0:
            self.body += chunk[:room]
        if len(chunk) > room:
            self.body_truncated = True
            tail = self.tail
            tail += chunk[max(room, 0, len(chunk) - TAIL_BYTES) :]
            if len(tail) > TAIL_BYTES:
                del tail[: len(tail) - TAIL_BYTES]


@dataclass(slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    estimated: bool = False
    # Input written to a prompt cache (Anthropic's cache_creation_input_tokens), part of
    # input_tokens like the cached part; priced on its own.
    cache_write_input_tokens: int | None = None

    def as_dict(self) -> Json:
        out: Json = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "estimated": self.estimated,
        }
        if self.cache_write_input_tokens is not None:
            out["cache_write_input_tokens"] = self.cache_write_input_tokens
        return out


@dataclass(slots=True)
class Outcome:
    """One side of a pair, parsed from a :class:`Capture`."""

    upstream: str
    role: Role
    status: int | None
    latency_s: float
    stream: bool
    model: str | None = None
    ttft_s: float | None = None
    output_text: str | None = None
    finish_reason: str | None = None
    tool_calls: list[Json] | None = None
    usage: Usage | None = None
    error_type: ErrorType | None = None
    error: str | None = None
    truncated: bool = False
    # The recorded copy was cut by limits.capture_max_bytes (the answer itself was whole
    # as far as it was read): a capture limit, never an upstream failure.
    capture_truncated: bool = False
    attempts: int = 1
    cost_usd: float | None = None
    extra: Json = field(default_factory=dict)
    # Candidates: seconds the shadow waited before it was sent (hand-off to first send) and
    # its answer waited before parsing (last byte to parse): load, not the model's latency.
    queue_wait_s: float | None = None
    parse_wait_s: float | None = None

    def as_dict(self) -> Json:
        return {
            "upstream": self.upstream,
            "role": self.role,
            "model": self.model,
            "status": self.status,
            "error_type": self.error_type,
            "error": self.error,
            "latency_s": round(self.latency_s, 6),
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 6),
            "stream": self.stream,
            "output_text": self.output_text,
            "finish_reason": self.finish_reason,
            "tool_calls": self.tool_calls,
            "usage": None if self.usage is None else self.usage.as_dict(),
            "truncated": self.truncated,
            **({"capture_truncated": True} if self.capture_truncated else {}),
            "attempts": self.attempts,
            "cost_usd": self.cost_usd,
            **({"extra": self.extra} if self.extra else {}),
            **(
                {"queue_wait_s": round(self.queue_wait_s, 6)}
                if self.queue_wait_s is not None
                else {}
            ),
            **(
                {"parse_wait_s": round(self.parse_wait_s, 6)}
                if self.parse_wait_s is not None
                else {}
            ),
        }
