"""Lexical similarity to the reference (the primary's answer, or the expected answer when
the pair carries one): token F1, ROUGE-L, chrF.

All three work on the normalised tokens (or characters) of ``text.py`` and are cheap: ROUGE-L
uses a bit-parallel LCS (one big-integer step per token), so long answers stay fast.
"""

from __future__ import annotations

from collections import Counter

from shadoweval.score.base import Pair, Score, Scorer, ScorerContext, Scores
from shadoweval.score.registry import scorer
from shadoweval.score.scorers.match import compared_tokens


def f1(overlap: float, n_candidate: int, n_reference: int) -> float:
    if n_candidate == 0 and n_reference == 0:
        return 1.0
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_candidate, overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (Hyyrö's bit-parallel algorithm)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        m = masks.get(tok)
        if m is None:
            continue
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


@scorer("token_f1")
def token_f1(ctx: ScorerContext, *, drop_articles: bool = True) -> Scorer:
    """SQuAD-style F1 of the bags of normalised tokens, answer against reference.

    Args:
        drop_articles: Ignore "a", "an", "the" (the SQuAD convention).
    """

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            answer, reference = compared_tokens(pair, c, drop_articles)
            common = sum((Counter(reference) & Counter(answer)).values())
            value = f1(common, len(answer), len(reference))
            why = f"{common} tokens shared with {c.against} ({len(answer)} vs {len(reference)})"
            out.append(Score(value, why, side=c.side, details={"overlap": common}))
        return out

    return score


@scorer("rouge_l")
def rouge_l(ctx: ScorerContext) -> Scorer:
    """ROUGE-L F1: longest common subsequence of normalised tokens, answer against reference."""

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            answer, reference = compared_tokens(pair, c, False)
            lcs = lcs_length(reference, answer)
            value = f1(lcs, len(answer), len(reference))
            why = (
                f"longest common subsequence with {c.against}: {lcs} tokens "
                f"({len(answer)} vs {len(reference)})"
            )
            out.append(Score(value, why, side=c.side, details={"lcs": lcs}))
        return out

    return score


def _char_ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf_score(hypothesis: str, reference: str, order: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović 2015) in [0, 1], as sacrebleu computes it: character n-grams of 1..order
    without whitespace, the F-beta of each order averaged over the orders both texts have."""
    hyp = "".join(hypothesis.split())
    ref = "".join(reference.split())
    if not hyp and not ref:
        return 1.0
    eps = 1e-16
    factor = beta**2
    total, effective = 0.0, 0
    for n in range(1, order + 1):
        h, r = _char_ngrams(hyp, n), _char_ngrams(ref, n)
        n_hyp, n_ref = sum(h.values()), sum(r.values())
        match = sum((h & r).values())
        precision = match / n_hyp if n_hyp else eps
        recall = match / n_ref if n_ref else eps
        denom = factor * precision + recall
        total += (1 + factor) * precision * recall / denom if denom > 0 else eps
        effective += 1 if n_hyp and n_ref else 0
    return min(1.0, total / effective) if effective else 0.0


@scorer("chrf")
def chrf(ctx: ScorerContext, *, order: int = 6, beta: float = 2.0) -> Scorer:
    """chrF: character n-gram F-score (robust to morphology and tokenisation).

    Args:
        order: Largest character n-gram.
        beta: Weight of recall over precision.
    """
    if not 1 <= order <= 12 or beta <= 0:
        raise ValueError("order must be 1..12 and beta > 0")

    def score(pair: Pair) -> Scores:
        out: Scores = []
        for c in pair.comparisons():
            if (skip := c.unscored(pair)) is not None:
                out.append(skip)
                continue
            value = chrf_score(pair.text(c.answer) or "", pair.reference(c), order, beta)
            out.append(
                Score(value, f"chrF{order} (beta {beta:g}) against {c.against}", side=c.side)
            )
        return out

    return score
