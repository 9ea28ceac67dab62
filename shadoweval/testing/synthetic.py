"""Synthetic pair and score records with known properties, for report and statistics tests.

Each request has one latent draw shared by the primary and (with probability ``shared``)
the candidates, so their per-side scores are correlated the way real paired outcomes are.
Records follow ``shadoweval.pair.v1`` and ``shadoweval.score.v1``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from shadoweval.types import Json

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Upstream:
    """How one synthetic upstream behaves."""

    name: str
    role: Literal["primary", "candidate", "control"] = "candidate"
    model: str = "model"
    accuracy: float = 0.8  # P(per-side score = 1)
    agreement: float = 0.9  # P(pair score = 1): the answer matches the primary's
    shared: float = 0.8  # P(the correctness draw is the primary's own)
    latency_s: float = 0.5  # median
    latency_sigma: float = 0.3
    error_rate: float = 0.0
    retry_rate: float = 0.0
    input_tokens: int = 100
    output_tokens: int = 50
    cost_usd: float | None = None  # None: leave it to the pricing table
    stream: bool = False
    flags: dict[str, float] = field(default_factory=dict)  # safety scorer -> P(flag)


def _side(u: Upstream, rng: random.Random, text: str, failed: bool) -> Json:
    latency = u.latency_s * math.exp(rng.gauss(0, u.latency_sigma))
    return {
        "upstream": u.name,
        "role": u.role,
        "model": u.model,
        "status": 500 if failed else 200,
        "error_type": "http_5xx" if failed else None,
        "error": "injected failure" if failed else None,
        "latency_s": round(latency, 6),
        "ttft_s": round(latency * 0.3, 6) if u.stream and not failed else None,
        "stream": u.stream,
        "output_text": None if failed else text,
        "finish_reason": None if failed else "stop",
        "tool_calls": None,
        "usage": None
        if failed
        else {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cached_input_tokens": None,
            "estimated": False,
        },
        "cost_usd": None if failed else u.cost_usd,
        "truncated": False,
        "attempts": 2 if rng.random() < u.retry_rate else 1,
    }


def _score(
    pair: Json, scorer: str, side: str, value: float | None, label: str | None = None
) -> Json:
    return {
        "schema": "shadoweval.score.v1",
        "score_id": f"{pair['pair_id']}:{scorer}:{side}",
        "pair_id": pair["pair_id"],
        "request_id": pair["request_id"],
        "ts": pair["ts"],
        "scored_at": pair["ts"],
        "source": pair["source"],
        "route": pair["route"],
        "task": pair["task"],
        "upstream": pair["candidate"]["upstream"],
        "role": pair["candidate"]["role"],
        "primary_upstream": pair["primary"]["upstream"],
        "scorer": scorer,
        "side": side,
        "value": value,
        "label": label,
        "passed": None if value is None else value >= 0.5,
        "explanation": "synthetic",
    }


def generate(
    primary: Upstream,
    others: list[Upstream],
    n: int,
    *,
    seed: int = 0,
    spacing_s: float = 60.0,
    per_side: tuple[str, ...] = ("exact",),
    pair_scorers: tuple[str, ...] = (),
    judge: bool = False,
) -> tuple[list[Json], list[Json]]:
    """``n`` requests, each mirrored to every upstream in ``others``.

    ``per_side`` scorers get primary and candidate values (correct = 1); ``pair_scorers``
    get a pair value (1 when the answer matches the primary's); ``judge`` adds a
    ``judge_pairwise`` win/tie/loss from the two per-side outcomes. Safety flags follow
    each upstream's ``flags``.
    """
    rng = random.Random(seed)
    pairs: list[Json] = []
    scores: list[Json] = []
    for i in range(n):
        rid = f"req{i:06d}"
        ts = datetime.fromtimestamp(T0 + i * spacing_s, UTC).isoformat(timespec="milliseconds")
        prompt = f"question {i}: what is {i} + {i}? my email is user{i}@example.com"
        latent = rng.random()
        p_failed = rng.random() < primary.error_rate
        p_correct = latent < primary.accuracy
        p_flags = {k: rng.random() < v for k, v in primary.flags.items()}
        p_side = _side(primary, rng, f"answer {2 * i}", p_failed)
        for u in others:
            failed = rng.random() < u.error_rate
            draw = latent if rng.random() < u.shared else rng.random()
            correct = draw < u.accuracy
            agrees = rng.random() < u.agreement
            text = f"answer {2 * i}" if agrees else f"maybe {2 * i + 1}"
            pair: Json = {
                "schema": "shadoweval.pair.v1",
                "pair_id": f"{rid}:{u.name}",
                "request_id": rid,
                "ts": ts,
                "source": "traffic",
                "route": "chat",
                "path": "/v1/chat/completions",
                "task": None,
                "sampling_key": None,
                "trace_id": None,
                "request": {
                    "model": primary.model,
                    "messages": [{"role": "user", "content": prompt}],
                },
                "primary": p_side,
                "candidate": _side(u, rng, text, failed),
            }
            pairs.append(pair)
            unscored = failed or p_failed
            for scorer in per_side:
                scores.append(
                    _score(pair, scorer, "primary", None if p_failed else float(p_correct))
                )
                scores.append(_score(pair, scorer, "candidate", None if failed else float(correct)))
            for scorer in pair_scorers:
                scores.append(_score(pair, scorer, "pair", None if unscored else float(agrees)))
            if judge and not unscored:
                label = "win" if correct > p_correct else "loss" if correct < p_correct else "tie"
                value = {"win": 1.0, "tie": 0.5, "loss": 0.0}[label]
                scores.append(_score(pair, "judge_pairwise", "pair", value, label))
            for flag in sorted({*u.flags, *primary.flags}):
                if not failed:
                    hit = rng.random() < u.flags.get(flag, 0.0)
                    scores.append(
                        _score(pair, flag, "candidate", float(hit), flag if hit else None)
                    )
                if not p_failed:
                    scores.append(
                        _score(pair, flag, "primary", float(p_flags.get(flag, False)), None)
                    )
    return pairs, scores
