"""The score record (``shadoweval.score.v1``): one per (pair, scorer, side).

``score_id`` is ``pair_id:scorer:side``: a pair scored twice (at-least-once delivery, a
re-run) produces the same ids, so consumers keep the last record per id and nothing doubles.
The JSON Schema is ``schemas/score.v1.schema.json``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources

from shadoweval.score.base import Pair, Score
from shadoweval.score.registry import DEFAULT_INFO, ScorerInfo
from shadoweval.types import Json

SCORE_SCHEMA = "shadoweval.score.v1"
_SOURCES = frozenset({"traffic", "probe", "replay", "human"})


def score_id(pair_id: str, scorer: str, side: str) -> str:
    return f"{pair_id}:{scorer}:{side}"


def build_score(
    pair: Pair, scorer: str, score: Score, scored_at: str, info: ScorerInfo = DEFAULT_INFO
) -> Json:
    rec = pair.record
    candidate = pair.candidate
    source = rec.get("source")
    record: Json = {
        "schema": SCORE_SCHEMA,
        "score_id": score_id(pair.pair_id, scorer, score.side),
        "pair_id": pair.pair_id,
        "request_id": rec.get("request_id", ""),
        "ts": rec.get("ts", scored_at),
        "scored_at": scored_at,
        "source": source if source in _SOURCES else "traffic",
        "route": pair.route,
        "task": pair.task,
        "upstream": candidate.get("upstream", ""),
        "role": "control" if candidate.get("role") == "control" else "candidate",
        "primary_upstream": pair.primary.get("upstream"),
        "scorer": scorer,
        "scorer_info": info.as_dict(),
        "side": score.side,
        "value": score.value,
        "label": score.label,
        "explanation": score.explanation,
    }
    if score.passed is not None:
        record["passed"] = score.passed
    if score.details:
        record["details"] = score.details
    if score.cost_usd is not None and math.isfinite(score.cost_usd):
        record["cost_usd"] = score.cost_usd
    return record


@cache
def score_schema() -> Json:
    text = resources.files("shadoweval").joinpath("schemas/score.v1.schema.json").read_text()
    schema: Json = json.loads(text)
    return schema
