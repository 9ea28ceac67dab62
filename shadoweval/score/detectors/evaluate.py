"""Measure the safety detectors on labelled answers: precision, recall and F1 with Wilson
intervals, per detector and per language, and the misses.

A labelled file is JSONL, one object per line: ``text`` (the answer) and ``label`` (true =
the detector should fire), optionally ``lang`` and ``note``; ``system`` (the system prompt)
for ``system_prompt_leak``; ``injection`` (the injected instruction) and ``marker`` for
``injection``; ``request`` (the user's message) for ``pii_leak`` and ``secret_leak``.

Every detector is run the way production runs it: through its registered scorer on a pair
record (the candidate side is read), or through the probe judge for ``injection``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shadoweval.config.scorer import ScorerConfig, ScorerSpec, parse_scorer
from shadoweval.score import registry
from shadoweval.score.base import Pair, Score, ScorerContext
from shadoweval.stats import wilson
from shadoweval.types import Json, Outcome

DETECTORS = (
    "refusal",
    "pii_leak",
    "secret_leak",
    "system_prompt_leak",
    "injection",
    "toxicity",
)


class LabelledFileError(ValueError):
    """A labelled file that cannot be read: the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    label: bool
    lang: str = "en"
    note: str = ""
    fields: Json = field(default_factory=dict)


def load(path: Path) -> list[Item]:
    items: list[Item] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabelledFileError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise LabelledFileError(f"{path}:{n}: expected an object")
            text, label = obj.get("text"), obj.get("label")
            if not isinstance(text, str):
                raise LabelledFileError(f"{path}:{n}: 'text' must be a string")
            if not isinstance(label, bool):
                raise LabelledFileError(f"{path}:{n}: 'label' must be true or false")
            items.append(
                Item(text, label, str(obj.get("lang") or "en"), str(obj.get("note") or ""), obj)
            )
    return items


def _record(item: Item) -> dict[str, Any]:
    messages: list[Json] = []
    if isinstance(system := item.fields.get("system"), str):
        messages.append({"role": "system", "content": system})
    user = item.fields.get("request")
    messages.append({"role": "user", "content": user if isinstance(user, str) else "Hello."})
    side = {
        "status": 200,
        "error_type": None,
        "output_text": item.text,
        "finish_reason": "stop",
        "tool_calls": None,
    }
    return {
        "pair_id": "eval:cand",
        "route": "chat",
        "request": {"model": "m", "messages": messages},
        "primary": {**side, "output_text": "OK."},
        "candidate": side,
    }


Reader = Callable[[Item], tuple[bool, str]]


Settings = Json | ScorerConfig | None


def _scorer_reader(name: str, fired: Callable[[Score], bool], config: Settings) -> Reader:
    cfg = config if isinstance(config, ScorerConfig) else parse_scorer(config or {}, environ={})
    ctx = ScorerContext(cfg)
    built = registry.build(ScorerSpec(use=name), ctx, f"evaluate.{name}")

    def read(item: Item) -> tuple[bool, str]:
        scores = built.fn(Pair(_record(item)))
        assert isinstance(scores, list), f"{name} is not an inline scorer"
        cand = next(s for s in scores if s.side == "candidate")
        return fired(cand), cand.explanation

    return read


def _injection_reader() -> Reader:
    from shadoweval.probes.detect import Judge

    judge = Judge()

    def read(item: Item) -> tuple[bool, str]:
        out = Outcome(
            upstream="eval",
            role="candidate",
            status=200,
            latency_s=0.0,
            stream=False,
            output_text=item.text,
            finish_reason="stop",
        )
        marker = item.fields.get("marker")
        injection = item.fields.get("injection")
        v = judge(
            "ignore_injection",
            out,
            marker=marker if isinstance(marker, str) else None,
            injection=injection if isinstance(injection, str) else None,
        )
        return bool(v.attack_success), v.reason

    return read


def reader(detector: str, config: Settings = None) -> Reader:
    """``config``: the scorer's settings to measure with (default: its defaults)."""
    cfg = config
    if detector == "injection":
        return _injection_reader()
    if detector == "system_prompt_leak":
        return _scorer_reader("secret_leak", lambda s: "system_prompt" in (s.label or ""), cfg)
    if detector in DETECTORS:
        return _scorer_reader(detector, lambda s: s.value == 1.0, cfg)
    raise ValueError(f"unknown detector {detector!r}; one of {', '.join(DETECTORS)}")


@dataclass(frozen=True, slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, label: bool, fired: bool) -> Counts:
        return Counts(
            self.tp + (label and fired),
            self.fp + (not label and fired),
            self.fn + (label and not fired),
            self.tn + (not label and not fired),
        )

    def summary(self) -> Json:
        def rate(k: int, n: int) -> Json:
            if n == 0:
                return {"value": None, "ci95": None}
            est = wilson(k, n)
            return {"value": round(est.value, 4), "ci95": [round(est.lo, 4), round(est.hi, 4)]}

        p = rate(self.tp, self.tp + self.fp)
        r = rate(self.tp, self.tp + self.fn)
        spec = rate(self.tn, self.tn + self.fp)
        pv, rv = p["value"], r["value"]
        f1 = (
            round(2 * pv * rv / (pv + rv), 4)
            if isinstance(pv, float) and isinstance(rv, float) and pv + rv
            else None
        )
        return {
            "n": self.tp + self.fp + self.fn + self.tn,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": p,
            "recall": r,
            "specificity": spec,
            "f1": f1,
        }


def evaluate(detector: str, items: Iterable[Item], config: Settings = None) -> Json:
    """Counts overall and per language, and every miss (false positive or negative)."""
    read = reader(detector, config)
    total = Counts()
    langs: dict[str, Counts] = {}
    misses: list[Json] = []
    for item in items:
        fired, why = read(item)
        total = total.add(item.label, fired)
        langs[item.lang] = langs.get(item.lang, Counts()).add(item.label, fired)
        if fired != item.label:
            misses.append(
                {
                    "kind": "false_negative" if item.label else "false_positive",
                    "lang": item.lang,
                    "note": item.note,
                    "text": item.text[:160],
                    "explanation": why,
                }
            )
    return {
        **total.summary(),
        "by_lang": {k: v.summary() for k, v in sorted(langs.items())} if len(langs) > 1 else {},
        "misses": misses,
    }
