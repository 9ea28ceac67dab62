"""What a scorer sees and returns: :class:`Pair` in, a list of :class:`Score` out.

A scorer is a small factory (registered by name, see ``registry.py``) that returns a callable
matching :class:`Scorer`. Cheap scorers are plain functions and run inline; expensive ones
(embeddings, judge) return an awaitable and bound their own concurrency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

import orjson

from shadoweval.config.scorer import ScorerConfig
from shadoweval.metrics import ScoreMetrics
from shadoweval.types import Json

Side = Literal["pair", "primary", "candidate"]
AnswerSide = Literal["primary", "candidate"]


@dataclass(frozen=True, slots=True)
class Score:
    """One verdict of one scorer on one pair.

    Attributes:
        value: In [0, 1]; higher is better for quality scorers, 1 = flag raised for safety
            detectors. ``None`` = unscored (e.g. the answer was an error): aggregates skip it.
        explanation: One line a person can check against the pair.
        side: ``pair`` compares the candidate with the primary; ``primary``/``candidate`` is
            a property of that one answer.
        label: Categorical outcome where there is one (win/tie/loss, refusal, ...).
        passed: Optional pass/fail reading of ``value``.
        details: Machine-readable facts behind the verdict (JSON-serialisable).
        cost_usd: What scoring cost (judge or embedding calls).
    """

    value: float | None
    explanation: str
    side: Side = "pair"
    label: str | None = None
    passed: bool | None = None
    details: Json | None = None
    cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.value is not None and not 0.0 <= self.value <= 1.0:  # also rejects nan
            raise ValueError(f"score value must be in [0, 1] or None, got {self.value!r}")


Scores = list[Score]


class Scorer(Protocol):
    """Scores one pair. Returns ``[]`` when it does not apply (e.g. no tool calls at all)."""

    def __call__(self, pair: Pair, /) -> Scores | Awaitable[Scores]: ...


@dataclass
class ScorerContext:
    """What a factory may use besides its own options: the whole config and shared clients."""

    config: ScorerConfig
    metrics: ScoreMetrics | None = None
    # Called by the runner at shutdown (e.g. an endpoint's HTTP session).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Objects shared by the scorers of one family (e.g. one judge client, one concurrency
    # bound for judge_single and judge_pairwise together).
    shared: dict[str, Any] = field(default_factory=dict)


# factory(ctx, **options) -> Scorer; options are the keyword arguments a config may set.
ScorerFactory = Callable[..., Scorer]


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


@dataclass(frozen=True, slots=True)
class Comparison:
    side: Side  # the score's side
    answer: AnswerSide  # the answer being scored
    reference: Literal["primary", "expected"]

    def unscored(self, pair: Pair) -> Score | None:
        """An unscored verdict when an answer this comparison needs failed."""
        needed: tuple[AnswerSide, ...] = (
            ("primary", "candidate") if self.reference == "primary" else (self.answer,)
        )
        why = pair.unscorable(*needed)
        return None if why is None else Score(None, why, side=self.side, label="unscored")

    @property
    def against(self) -> str:
        return "the expected answer" if self.reference == "expected" else "the primary's answer"


class Pair:
    """A read-only view of a ``shadoweval.pair.v1`` record with the parsed bits scorers need."""

    def __init__(self, record: Json) -> None:
        self.record = record
        self.pair_id: str = record["pair_id"]
        self.route: str = record.get("route", "")
        self.task: str | None = record.get("task")
        self.request: Json = record.get("request") or {}
        self.primary: Json = record["primary"]
        self.candidate: Json = record["candidate"]
        # Shared by the scorers of one run over this pair (e.g. normalised tokens).
        self.memo: dict[Any, Any] = {}

    def side(self, side: AnswerSide) -> Json:
        return self.primary if side == "primary" else self.candidate

    @cached_property
    def expected(self) -> str | None:
        """The reference answer of a replayed or probe input (JSON other than a string is
        compared in its compact JSON form); None for live traffic."""
        value = self.record.get("expected")
        if value is None:
            return None
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    def comparisons(self) -> list[Comparison]:
        """What a comparing scorer compares: the candidate with the primary (side pair), or,
        when the pair carries an expected answer, each answer with it (sides primary and
        candidate, so the report compares the two against the same reference)."""
        if self.expected is None:
            return [Comparison("pair", "candidate", "primary")]
        return [
            Comparison("primary", "primary", "expected"),
            Comparison("candidate", "candidate", "expected"),
        ]

    def reference(self, comparison: Comparison) -> str:
        if comparison.reference == "expected":
            return self.expected or ""
        return self.text("primary") or ""

    def text(self, side: AnswerSide) -> str | None:
        """The answer's text, or None when that side failed (see ``error``)."""
        if self.error(side) is not None:
            return None
        value = self.side(side).get("output_text")
        return value if isinstance(value, str) else ""

    def error(self, side: AnswerSide) -> str | None:
        """Why this side has no usable answer, or None."""
        key = ("error", side)
        if key in self.memo:
            return self.memo[key]  # type: ignore[no-any-return]
        s = self.side(side)
        status = s.get("status")
        why: str | None = None
        if s.get("error_type"):
            why = str(s["error_type"])
        elif not isinstance(status, int) or not 200 <= status < 300:
            why = f"status {status}"
        self.memo[key] = why
        return why

    def tool_calls(self, side: AnswerSide) -> list[Json]:
        calls = self.side(side).get("tool_calls")
        return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []

    def unscorable(self, *sides: AnswerSide) -> str | None:
        """An explanation when any of ``sides`` failed, for an unscored (None) verdict."""
        for side in sides:
            err = self.error(side)
            if err is not None:
                return f"{side} answered with an error ({err}): nothing to score"
        return None

    @cached_property
    def question(self) -> str:
        """The last user turn (chat), the prompt (completions) or the input (responses)."""
        req = self.request
        messages = req.get("messages")
        if isinstance(messages, list):
            for msg in reversed(messages):
                if isinstance(msg, dict) and msg.get("role") == "user":
                    return _text(msg.get("content"))
        for key in ("prompt", "input"):
            value = req.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value:
                last = value[-1]
                if isinstance(last, str):
                    return last
                if isinstance(last, dict):
                    return _text(last.get("content"))
        return ""

    @cached_property
    def system_prompt(self) -> str:
        """System and developer messages (chat), ``instructions`` (responses) or the top-level
        ``system`` (Anthropic Messages), joined."""
        req = self.request
        parts: list[str] = []
        messages = req.get("messages") if isinstance(req.get("messages"), list) else None
        if messages is None and isinstance(req.get("input"), list):
            messages = req["input"]
        for msg in messages or []:
            if isinstance(msg, dict) and msg.get("role") in ("system", "developer"):
                parts.append(_text(msg.get("content")))
        if isinstance(req.get("instructions"), str):
            parts.append(req["instructions"])
        # Anthropic Messages: a top-level system string or list of text blocks.
        parts.insert(0, _text(req.get("system")))
        return "\n".join(p for p in parts if p)

    @cached_property
    def response_format(self) -> Json:
        """The request's structured-output ask, normalised to {"type": ..., "schema": ...}."""
        req = self.request
        fmt = req.get("response_format")  # chat completions
        if not isinstance(fmt, dict):
            text = req.get("text")  # responses API: text.format
            fmt = text.get("format") if isinstance(text, dict) else None
        if not isinstance(fmt, dict):
            return {}
        kind = fmt.get("type")
        schema = fmt.get("schema")
        if isinstance(fmt.get("json_schema"), dict):
            schema = fmt["json_schema"].get("schema")
        return {"type": kind, "schema": schema if isinstance(schema, dict) else None}

    @cached_property
    def tools_offered(self) -> bool:
        tools = self.request.get("tools")
        return isinstance(tools, list) and bool(tools)


def snippet(text: str | None, limit: int) -> str:
    """A short, single-line quote of an answer for explanations."""
    if text is None:
        return "<none>"
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def unscored(pair: Pair, *sides: AnswerSide, side: Side = "pair") -> Scores | None:
    """``[Score(None, ...)]`` when one of ``sides`` failed, else None (go on scoring)."""
    why = pair.unscorable(*sides)
    if why is None:
        return None
    return [Score(None, why, side=side, label="unscored")]
