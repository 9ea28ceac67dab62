"""Comparisons to review, built from pair records.

A request mirrored to several candidates has one pair record per candidate, all with the
same primary answer. ``primary`` comparisons put the primary against each candidate (and
control); ``candidates`` comparisons put a request's candidates against each other. Pairs
where either side failed, and embeddings (no text answer), are not reviewable and are
counted as skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Iterable

from shadoweval.config.review import ReviewSettings
from shadoweval.dataset.inputs import turns
from shadoweval.redaction import Redactor
from shadoweval.review.store import Comparison
from shadoweval.types import Json

PAIR_SCHEMA = "shadoweval.pair.v1"


def _text(side: Json) -> str | None:
    if side.get("error_type"):
        return None
    status = side.get("status")
    if not isinstance(status, int) or not 200 <= status < 300:
        return None
    text = side.get("output_text")
    calls = side.get("tool_calls")
    if isinstance(calls, list) and calls:
        rendered = "\n".join(
            f"[tool call] {c.get('name')}({c.get('arguments', '')})"
            for c in calls
            if isinstance(c, dict)
        )
        text = f"{text}\n{rendered}" if text else rendered
    return text if isinstance(text, str) else None


def _side(rec: Json, which: str, text: str, limit: int, redactor: Redactor) -> Json:
    side = rec[which]
    pair = None
    if which == "candidate":
        pair = {
            "pair_id": rec["pair_id"],
            "request_id": rec["request_id"],
            "ts": rec["ts"],
            "source": rec.get("source") or "traffic",
            "route": rec["route"],
            "task": rec.get("task"),
            "upstream": side["upstream"],
            "role": side["role"],
            "primary_upstream": rec["primary"]["upstream"],
        }
    text = redactor.text(text)
    return {
        "upstream": side["upstream"],
        "role": side["role"],
        "text": text[:limit],
        "truncated": len(text) > limit or bool(side.get("truncated")),
        "pair": pair,
    }


def _id(request_id: str, a: str, b: str) -> str:
    digest = hashlib.blake2b(f"{request_id}\0{a}\0{b}".encode(), digest_size=10).hexdigest()
    return "cmp-" + digest


def comparisons(
    records: Iterable[Json], settings: ReviewSettings, redactor: Redactor, skipped: Counter[str]
) -> list[Comparison]:
    """Comparisons from pair records, in a seeded random order (at most ``max_items``)."""
    by_request: dict[str, list[Json]] = {}
    for rec in records:
        if rec.get("schema") != PAIR_SCHEMA:
            skipped["not a shadoweval.pair.v1 record"] += 1
            continue
        try:
            rid = str(rec["request_id"])
            str(rec["primary"]["upstream"]) + str(rec["candidate"]["upstream"])
        except (KeyError, TypeError):
            skipped["malformed pair record"] += 1
            continue
        if rec.get("route") == "embeddings":
            skipped["embeddings (no text answer)"] += 1
            continue
        if rec["candidate"].get("role") == "control" and not settings.include_control:
            skipped["control (include_control is off)"] += 1
            continue
        group = by_request.setdefault(rid, [])
        if all(r["pair_id"] != rec["pair_id"] for r in group):
            group.append(rec)
    limit = settings.max_answer_chars
    out: list[Comparison] = []
    for rid, recs in by_request.items():
        first = recs[0]
        prompt = [
            {"role": t["role"], "text": redactor.text(t["text"])} for t in turns(first["request"])
        ]
        route, task = str(first.get("route") or ""), first.get("task")
        primary_text = _text(first["primary"])
        usable = []
        for rec in recs:
            text = _text(rec["candidate"])
            if text is None:
                skipped["candidate answer failed"] += 1
            else:
                usable.append((rec, text))
        if "primary" in settings.comparisons:
            if primary_text is None:
                skipped["primary answer failed"] += len(usable)
            else:
                for rec, text in usable:
                    a = _side(rec, "primary", primary_text, limit, redactor)
                    b = _side(rec, "candidate", text, limit, redactor)
                    out.append(
                        Comparison(
                            _id(rid, a["upstream"], b["upstream"]), rid, route, task, prompt, a, b
                        )
                    )
        if "candidates" in settings.comparisons:
            ordered = sorted(usable, key=lambda u: str(u[0]["candidate"]["upstream"]))
            for (ra, ta), (rb, tb) in itertools.combinations(ordered, 2):
                a = _side(ra, "candidate", ta, limit, redactor)
                b = _side(rb, "candidate", tb, limit, redactor)
                out.append(
                    Comparison(
                        _id(rid, a["upstream"], b["upstream"]), rid, route, task, prompt, a, b
                    )
                )
    random.Random(settings.seed).shuffle(out)
    if settings.max_items is not None:
        out = out[: settings.max_items]
    return out
