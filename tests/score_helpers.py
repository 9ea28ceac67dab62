"""Small builders for scorer tests: pair records and configured scorers."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from shadoweval.config.scorer import ScorerSpec, parse_scorer
from shadoweval.score import registry
from shadoweval.score.base import Pair, Score, ScorerContext


def side(
    text: str | None,
    *,
    upstream: str = "prod",
    role: str = "primary",
    error_type: str | None = None,
    status: int | None = 200,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = "stop",
) -> dict[str, Any]:
    return {
        "upstream": upstream,
        "role": role,
        "model": "m",
        "status": status,
        "error_type": error_type,
        "error": None,
        "latency_s": 0.1,
        "ttft_s": None,
        "stream": False,
        "output_text": text,
        "finish_reason": finish_reason,
        "tool_calls": tool_calls,
        "usage": None,
        "truncated": False,
        "attempts": 1,
    }


def pair_record(
    primary: str | None = "Paris",
    candidate: str | None = "Paris",
    *,
    request: dict[str, Any] | None = None,
    pair_id: str = "r1:cand",
    task: str | None = None,
    route: str = "chat",
    candidate_error: str | None = None,
    primary_error: str | None = None,
    primary_tools: list[dict[str, Any]] | None = None,
    candidate_tools: list[dict[str, Any]] | None = None,
    candidate_finish: str | None = "stop",
    role: str = "candidate",
    expected: Any = None,
    source: str = "traffic",
) -> dict[str, Any]:
    req = request or {"model": "m", "messages": [{"role": "user", "content": "Capital of France?"}]}
    rec: dict[str, Any] = {
        "schema": "shadoweval.pair.v1",
        "pair_id": pair_id,
        "request_id": pair_id.split(":")[0],
        "ts": "2026-01-05T09:00:00.000+00:00",
        "source": source,
        "route": route,
        "path": "/v1/chat/completions",
        "task": task,
        "sampling_key": None,
        "trace_id": None,
        "request": req,
        "primary": side(
            None if primary_error else primary,
            error_type=primary_error,
            status=502 if primary_error else 200,
            tool_calls=primary_tools,
        ),
        "candidate": side(
            None if candidate_error else candidate,
            upstream="cand",
            role=role,
            error_type=candidate_error,
            status=500 if candidate_error else 200,
            tool_calls=candidate_tools,
            finish_reason=candidate_finish,
        ),
    }
    if expected is not None:
        rec["expected"] = expected
    return rec


def context(**config: Any) -> ScorerContext:
    return ScorerContext(parse_scorer(config, environ={}))


def build(name: str, config: dict[str, Any] | None = None, **options: Any) -> registry.BuiltScorer:
    ctx = context(**(config or {}))
    return registry.build(ScorerSpec(use=name, options=options), ctx, f"test.{name}")


def run(scorer: registry.BuiltScorer, record: dict[str, Any]) -> list[Score]:
    """Call a scorer on a record, sync or async."""
    result = scorer.fn(Pair(record))
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(result: Any) -> list[Score]:
    return list(await result)


def by_side(scores: list[Score]) -> dict[str, Score]:
    out = {s.side: s for s in scores}
    assert len(out) == len(scores), "one score per side"
    return out


def one(scores: list[Score]) -> Score:
    assert len(scores) == 1, scores
    return scores[0]
