"""``shadoweval review``: blind human rating of answers and expected-answer curation.

``store`` keeps comparisons, ratings, expected answers and sessions in SQLite (the durable
record); ``publish`` turns ratings into ``shadoweval.score.v1`` records (``source: human``)
and sends them to the score sink; ``app`` is the aiohttp application that serves the single
page in ``static/review.html`` and its JSON API.
"""

from __future__ import annotations

from shadoweval.review.store import Store

__all__ = ["Store"]
