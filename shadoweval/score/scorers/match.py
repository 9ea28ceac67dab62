"""Exact and normalised match of the candidate's answer against the primary's."""

from __future__ import annotations

from shadoweval.score.base import Pair, Score, Scorer, ScorerContext, Scores, snippet, unscored
from shadoweval.score.registry import scorer
from shadoweval.score.text import tokens


def normalised_tokens(pair: Pair, side: str, drop_articles: bool = False) -> list[str]:
    """Tokens of one answer, computed once per pair and shared with the lexical scorers."""
    key = ("tokens", side, drop_articles)
    cached = pair.memo.get(key)
    if cached is None:
        text = pair.text("primary" if side == "primary" else "candidate") or ""
        cached = pair.memo[key] = tokens(text, drop_articles=drop_articles)
    return cached  # type: ignore[no-any-return]


@scorer("exact")
def exact(ctx: ScorerContext, *, strip: bool = False) -> Scorer:
    """1 when the candidate's text equals the primary's, character for character.

    Args:
        strip: Ignore leading and trailing whitespace.
    """
    limit = ctx.config.snippet_chars

    def score(pair: Pair) -> Scores:
        if (skip := unscored(pair, "primary", "candidate")) is not None:
            return skip
        a, b = pair.text("primary") or "", pair.text("candidate") or ""
        if strip:
            a, b = a.strip(), b.strip()
        if a == b:
            return [Score(1.0, "identical to the primary's answer", passed=True)]
        at = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        return [
            Score(
                0.0,
                f"differs from the primary's answer at character {at}: "
                f"{snippet(a[at:], limit)} vs {snippet(b[at:], limit)}",
                passed=False,
                details={
                    "first_difference": at,
                    "primary_chars": len(a),
                    "candidate_chars": len(b),
                },
            )
        ]

    return score


@scorer("normalized")
def normalized(ctx: ScorerContext, *, drop_articles: bool = False) -> Scorer:
    """1 when both answers are equal after normalisation: Unicode, case, whitespace,
    punctuation, and number formats ("1,000" = "1000" = "1000.0").

    Args:
        drop_articles: Also ignore "a", "an" and "the" (SQuAD-style).
    """
    limit = ctx.config.snippet_chars

    def score(pair: Pair) -> Scores:
        if (skip := unscored(pair, "primary", "candidate")) is not None:
            return skip
        a = normalised_tokens(pair, "primary", drop_articles)
        b = normalised_tokens(pair, "candidate", drop_articles)
        if a == b:
            exact_too = pair.text("primary") == pair.text("candidate")
            why = "identical" if exact_too else "equal after normalisation"
            return [Score(1.0, why, passed=True)]
        pa, pb = " ".join(a), " ".join(b)
        return [
            Score(
                0.0,
                f"different after normalisation: {snippet(pa, limit)} vs {snippet(pb, limit)}",
                passed=False,
            )
        ]

    return score
