"""Exact and normalised match: the candidate's answer against the primary's (side pair), or
each answer against the expected answer when the pair carries one (sides primary and
candidate)."""

from __future__ import annotations

from shadoweval.score.base import Comparison, Pair, Score, Scorer, ScorerContext, Scores, snippet
from shadoweval.score.registry import scorer
from shadoweval.score.text import ARTICLES, tokens


def normalised_tokens(pair: Pair, which: str, drop_articles: bool = False) -> list[str]:
    """Tokens of ``primary``, ``candidate`` or ``expected``, computed once per pair and
    shared by the match and lexical scorers."""
    key = ("tokens", which, drop_articles)
    cached: list[str] | None = pair.memo.get(key)
    if cached is None:
        if drop_articles:
            full = normalised_tokens(pair, which)
            cached = [t for t in full if t not in ARTICLES]
        else:
            if which == "expected":
                text = pair.expected or ""
            else:
                text = pair.text("primary" if which == "primary" else "candidate") or ""
            cached = tokens(text)
        pair.memo[key] = cached
    return cached


def compared_tokens(pair: Pair, c: Comparison, drop_articles: bool) -> tuple[list[str], list[str]]:
    """(answer tokens, reference tokens) of one comparison."""
    return (
        normalised_tokens(pair, c.answer, drop_articles),
        normalised_tokens(pair, c.reference, drop_articles),
    )


@scorer("exact")
def exact(ctx: ScorerContext, *, strip: bool = False) -> Scorer:
    """1 when the answer equals the reference character for character.

    Args:
        strip: Ignore leading and trailing whitespace.
    """
    limit = ctx.config.snippet_chars

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            a, b = pair.reference(c), pair.text(c.answer) or ""
            if strip:
                a, b = a.strip(), b.strip()
            if a == b:
                out.append(Score(1.0, f"identical to {c.against}", side=c.side, passed=True))
                continue
            at = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            out.append(
                Score(
                    0.0,
                    f"differs from {c.against} at character {at}: "
                    f"{snippet(b[at:], limit)} vs {snippet(a[at:], limit)}",
                    side=c.side,
                    passed=False,
                    details={"first_difference": at, "chars": len(b), "reference_chars": len(a)},
                )
            )
        return out

    return score


@scorer("normalized")
def normalized(ctx: ScorerContext, *, drop_articles: bool = False) -> Scorer:
    """1 when the answer equals the reference after normalisation: Unicode, case,
    whitespace, punctuation, and number formats ("1,000" = "1000" = "1000.0").

    Args:
        drop_articles: Also ignore "a", "an" and "the" (SQuAD-style).
    """
    limit = ctx.config.snippet_chars

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            answer, reference = compared_tokens(pair, c, drop_articles)
            if answer == reference:
                same = pair.text(c.answer) == pair.reference(c)
                why = (
                    f"identical to {c.against}"
                    if same
                    else f"equal to {c.against} after normalisation"
                )
                out.append(Score(1.0, why, side=c.side, passed=True))
                continue
            a, r = " ".join(answer), " ".join(reference)
            out.append(
                Score(
                    0.0,
                    f"different from {c.against} after normalisation: "
                    f"{snippet(a, limit)} vs {snippet(r, limit)}",
                    side=c.side,
                    passed=False,
                )
            )
        return out

    return score
