"""``shadoweval score``: pairs in, ``shadoweval.score.v1`` records out (docs/scoring.md).

The public API for writing a scorer: a factory ``f(ctx, **options)`` returning a callable
that maps a :class:`Pair` to a list of :class:`Score` (or an awaitable of one), registered
with :func:`scorer` (built-ins) or the ``shadoweval.scorers`` entry point group.
"""

from shadoweval.score.base import Pair, Score, Scorer, ScorerContext, ScorerFactory
from shadoweval.score.registry import ENTRY_POINT_GROUP, available, scorer

__all__ = [
    "ENTRY_POINT_GROUP",
    "Pair",
    "Score",
    "Scorer",
    "ScorerContext",
    "ScorerFactory",
    "available",
    "scorer",
]
