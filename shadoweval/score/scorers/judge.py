"""LLM-as-judge: single-answer grading against a rubric, and pairwise comparison asked in
both orders so that position bias cancels (a verdict that flips with the order is a tie).

Verdicts must be a JSON object (one code fence around it is tolerated); anything else is
re-asked up to ``judge.verdict_retries`` times. Every call's tokens are priced and its
latency kept in the score's details; the judge has its own concurrency bound and sampling
rate (``judge.sample_rate``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

from shadoweval.campaign import Clock, DailySpend
from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import JudgeSettings
from shadoweval.metrics import ScoreMetrics
from shadoweval.score.base import (
    AnswerSide,
    Pair,
    Score,
    Scorer,
    ScorerContext,
    Scores,
    unscored,
)
from shadoweval.score.http import Endpoint, EndpointError
from shadoweval.score.registry import PREFERENCE, scorer
from shadoweval.types import Json

T = TypeVar("T")

SYSTEM = "You are an impartial, careful judge of AI assistant answers. You reply in JSON only."

SINGLE_TEMPLATE = """Grade an AI assistant's answer to a user's question.
Rubric: {rubric}

[Question]
{question}

[Answer]
{answer}

Grade the answer from {scale_min} (worst) to {scale_max} (best).
Reply with only a JSON object and no other text:
{"score": <integer from {scale_min} to {scale_max}>, "reason": "<one short sentence>"}"""

PAIRWISE_TEMPLATE = """Compare two AI assistants' answers to the same user question.
Rubric: {rubric}
Do not let the order of the answers or their length influence you.

[Question]
{question}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Which answer is better?
Reply with only a JSON object and no other text:
{"winner": "A" or "B" or "tie", "reason": "<one short sentence>"}"""

_PLACEHOLDER = re.compile(
    r"\{(question|answer|answer_a|answer_b|reference|rubric|scale_min|scale_max)\}"
)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)\s*```", re.S)


def verdict_schema(verdict: Json, key: str = "score") -> Json:
    """The reply's JSON Schema (judge.json_schema). The reason is capped so a constrained
    reply ends well inside judge.max_tokens instead of being cut mid-string."""
    return {
        "type": "object",
        "properties": {key: verdict, "reason": {"type": "string", "maxLength": 160}},
        "required": [key, "reason"],
        "additionalProperties": False,
    }


WINNER_SCHEMA = verdict_schema({"type": "string", "enum": ["A", "B", "tie"]}, "winner")


def render(template: str, **values: Any) -> str:
    """Fills the known placeholders only, so literal braces (JSON examples) need no escaping."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


class VerdictError(ValueError):
    """The judge's reply is not the verdict asked for (the message says why, for the re-ask)."""


def parse_object(content: str) -> Json:
    s = content.strip()
    fenced = _FENCE.fullmatch(s)
    if fenced is not None:
        s = fenced.group(1)
    try:
        obj = orjson.loads(s)
    except orjson.JSONDecodeError:
        raise VerdictError("the reply is not a JSON object (no text outside it allowed)") from None
    if not isinstance(obj, dict):
        raise VerdictError("the reply is JSON but not an object")
    return obj


def _reason(obj: Json) -> str:
    reason = obj.get("reason", "")
    if not isinstance(reason, str):
        raise VerdictError('"reason" must be a string')
    return reason


def parse_grade(content: str, low: int, high: int) -> tuple[float, str]:
    obj = parse_object(content)
    grade = obj.get("score")
    if isinstance(grade, bool) or not isinstance(grade, int | float):
        raise VerdictError(f'"score" must be a number from {low} to {high}')
    if not low <= grade <= high:
        raise VerdictError(f'"score" {grade} is outside {low}..{high}')
    return float(grade), _reason(obj)


Winner = Literal["A", "B", "tie"]


def parse_winner(content: str) -> tuple[Winner, str]:
    obj = parse_object(content)
    winner = obj.get("winner")
    if not isinstance(winner, str) or winner.strip().lower() not in ("a", "b", "tie"):
        raise VerdictError('"winner" must be "A", "B" or "tie"')
    w = winner.strip().lower()
    return ("tie" if w == "tie" else "A" if w == "a" else "B"), _reason(obj)


@dataclass
class Call:
    """Accounting of the judge calls behind one verdict."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    latency_s: float = 0.0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Call) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.estimated |= other.estimated
        self.latency_s += other.latency_s
        self.cost_usd += other.cost_usd
        self.errors += other.errors

    def details(self) -> Json:
        return {
            "judge_calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tokens_estimated": self.estimated,
            "latency_s": round(self.latency_s, 4),
            **({"judge_errors": self.errors} if self.errors else {}),
        }


class JudgeFailed(Exception):
    def __init__(self, message: str, call: Call) -> None:
        super().__init__(message)
        self.call = call


class Judge:
    """The judge endpoint, shared by judge_single and judge_pairwise (one concurrency bound)."""

    def __init__(
        self,
        settings: JudgeSettings,
        metrics: ScoreMetrics | None = None,
        clock: Clock = time.time,
    ) -> None:
        if settings.url is None:
            raise ConfigError("judge.url is required by the judge scorers")
        self.settings = settings
        self.endpoint = Endpoint(
            settings.url + "/v1/chat/completions",
            api_key_env=settings.api_key_env,
            headers=settings.headers,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
            concurrency=settings.concurrency,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._price_in = settings.price_input_per_mtok / 1e6
        self._price_out = settings.price_output_per_mtok / 1e6
        # judge.budget: checked before each verdict, so verdicts already asked for may
        # pass the cap by at most judge.concurrency calls' worth.
        self.budget = DailySpend(settings.budget.usd_per_day, clock)
        self._skipped = metrics.judge_skipped.labels("budget") if metrics else None
        if metrics is not None and self.budget.cap is not None:
            metrics.judge_budget_remaining_usd.set_function(lambda: self.budget.remaining() or 0.0)

    def spent_out(self) -> bool:
        """Whether today's judge budget is spent (the verdict is then skipped, counted)."""
        if not self.budget.exhausted():
            return False
        if self._skipped is not None:
            self._skipped.inc()
        return True

    @classmethod
    def shared(cls, ctx: ScorerContext) -> Judge:
        judge = ctx.shared.get("judge")
        if judge is None:
            judge = ctx.shared["judge"] = cls(ctx.config.judge, ctx.metrics)
            ctx.closers.append(judge.endpoint.close)
        return judge

    async def ask(
        self, prompt: str, parse: Callable[[str], T], schema: Json | None = None
    ) -> tuple[T, Call]:
        s = self.settings
        messages: list[Json] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt},
        ]
        call = Call()
        async with self._slots:
            for _ in range(1 + s.verdict_retries):
                body: Json = {
                    "model": s.model,
                    "messages": messages,
                    "temperature": s.temperature,
                    "max_tokens": s.max_tokens,
                }
                if s.json_schema and schema is not None:
                    body["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": "verdict", "strict": True, "schema": schema},
                    }
                elif s.json_mode:
                    body["response_format"] = {"type": "json_object"}
                started = time.perf_counter()
                try:
                    data = await self.endpoint.post(body)
                except EndpointError as exc:
                    call.errors.append(str(exc))
                    raise JudgeFailed(f"judge call failed: {exc}", call) from None
                finally:
                    call.latency_s += time.perf_counter() - started
                call.calls += 1
                content = _content(data)
                self._account(call, data, messages, content)
                try:
                    return parse(content), call
                except VerdictError as exc:
                    call.errors.append(str(exc))
                    messages = [
                        *messages,
                        {"role": "assistant", "content": content},
                        {
                            "role": "user",
                            "content": f"Invalid reply: {exc}. Reply with only the JSON object.",
                        },
                    ]
        raise JudgeFailed(f"no valid verdict after {call.calls} replies: {call.errors[-1]}", call)

    def _account(self, call: Call, data: Json, messages: list[Json], content: str) -> None:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(tin, int) or not isinstance(tout, int):
            # No usage reported: ~4 characters per token, as the proxy estimates.
            call.estimated = True
            tin = sum(len(str(m.get("content", ""))) for m in messages) // 4
            tout = len(content) // 4
        call.input_tokens += tin
        call.output_tokens += tout
        cost = tin * self._price_in + tout * self._price_out
        call.cost_usd += cost
        self.budget.add(cost)


def _content(data: Json) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _failed(exc: JudgeFailed, side: Literal["pair", "primary", "candidate"]) -> Score:
    return Score(
        None,
        str(exc),
        side=side,
        label="judge_error",
        details=exc.call.details(),
        cost_usd=exc.call.cost_usd or None,
    )


def _judge_rate(cfg: Any) -> float:
    return float(cfg.judge.sample_rate)


@scorer("judge_single", default_rate=_judge_rate, family="judge")
def judge_single(ctx: ScorerContext, *, rubric: str | None = None) -> Scorer:
    """The judge grades each answer of ``judge.single_sides`` on the rubric; the grade is
    scaled from ``scale_min..scale_max`` to [0, 1].

    Args:
        rubric: Overrides ``judge.rubric`` for this scorer (e.g. per task).
    """
    judge = Judge.shared(ctx)
    s = ctx.config.judge
    template = s.single_template or SINGLE_TEMPLATE
    text_rubric = rubric or s.rubric

    async def one(pair: Pair, side: AnswerSide) -> Score | None:
        if (skip := unscored(pair, side, side=side)) is not None:
            return skip[0]
        if judge.spent_out():
            return None
        # {reference} for custom templates: the expected answer, else the primary's.
        reference = pair.expected
        if reference is None:
            reference = (pair.text("primary") or "") if side == "candidate" else ""
        prompt = render(
            template,
            question=pair.question,
            answer=pair.text(side),
            reference=reference,
            rubric=text_rubric,
            scale_min=s.scale_min,
            scale_max=s.scale_max,
        )
        try:
            (grade, reason), call = await judge.ask(
                prompt,
                lambda c: parse_grade(c, s.scale_min, s.scale_max),
                verdict_schema({"type": "integer", "minimum": s.scale_min, "maximum": s.scale_max}),
            )
        except JudgeFailed as exc:
            return _failed(exc, side)
        value = (grade - s.scale_min) / (s.scale_max - s.scale_min)
        return Score(
            value,
            f"judge grade {grade:g}/{s.scale_max}: {reason}"[:500],
            side=side,
            details={"grade": grade, "reason": reason, **call.details()},
            cost_usd=call.cost_usd or None,
        )

    async def score(pair: Pair) -> Scores:
        graded = await asyncio.gather(*(one(pair, side) for side in s.single_sides))
        return [g for g in graded if g is not None]

    return score


@scorer("judge_pairwise", default_rate=_judge_rate, family="judge", info=PREFERENCE)
def judge_pairwise(ctx: ScorerContext, *, rubric: str | None = None) -> Scorer:
    """Which answer is better? Asked twice, the candidate first as B then as A. The
    candidate wins (1) or loses (0) only when both orders agree; otherwise it is a tie (0.5),
    and details.position_consistent says whether the judge contradicted itself.

    Args:
        rubric: Overrides ``judge.rubric`` for this scorer.
    """
    judge = Judge.shared(ctx)
    s = ctx.config.judge
    template = s.pairwise_template or PAIRWISE_TEMPLATE
    text_rubric = rubric or s.rubric

    async def score(pair: Pair) -> Scores:
        if (skip := unscored(pair, "primary", "candidate")) is not None:
            return skip
        if judge.spent_out():
            return []
        primary, candidate = pair.text("primary"), pair.text("candidate")
        prompts = [
            render(
                template,
                question=pair.question,
                answer_a=primary,
                answer_b=candidate,
                rubric=text_rubric,
            ),
            render(
                template,
                question=pair.question,
                answer_a=candidate,
                answer_b=primary,
                rubric=text_rubric,
            ),
        ]
        results = await asyncio.gather(
            *(judge.ask(p, parse_winner, WINNER_SCHEMA) for p in prompts),
            return_exceptions=True,
        )
        total = Call()
        views: list[str] = []  # each order's verdict from the candidate's point of view
        reasons: list[str] = []
        for order, result in enumerate(results):
            if isinstance(result, JudgeFailed):
                total.add(result.call)
                return [_failed(JudgeFailed(str(result), total), "pair")]
            if isinstance(result, BaseException):
                raise result
            (winner, reason), call = result
            total.add(call)
            candidate_letter = "B" if order == 0 else "A"
            views.append(
                "tie" if winner == "tie" else "win" if winner == candidate_letter else "loss"
            )
            reasons.append(reason)
        consistent = views[0] == views[1]
        label = views[0] if consistent else "tie"
        value = {"win": 1.0, "tie": 0.5, "loss": 0.0}[label]
        if consistent:
            why = f"{label} in both orders: {reasons[1] or reasons[0]}"
        else:
            why = f"tie: the verdict changed with the order ({views[0]} as B, {views[1]} as A)"
        return [
            Score(
                value,
                why[:500],
                label=label,
                details={
                    "candidate_as_b": views[0],
                    "candidate_as_a": views[1],
                    "position_consistent": consistent,
                    "reasons": reasons,
                    **total.details(),
                },
                cost_usd=total.cost_usd or None,
            )
        ]

    return score
