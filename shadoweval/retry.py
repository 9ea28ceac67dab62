"""Retry policy: which failures are retried and how long to wait (exponential backoff with
full jitter, or the upstream's ``Retry-After``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from shadoweval.config.proxy import Retry
from shadoweval.types import ErrorType


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class RetryPolicy:
    def __init__(self, cfg: Retry, rng: random.Random | None = None) -> None:
        self.max_attempts = cfg.max_attempts
        self._retry_on: frozenset[str] = frozenset(cfg.retry_on)
        self._base = cfg.backoff_s
        self._cap = cfg.max_backoff_s
        self._respect = cfg.respect_retry_after
        self._max_after = cfg.max_retry_after_s
        self._rng = rng or random.Random()

    def delay(self, attempt: int, error: ErrorType | None, retry_after: str | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when not to retry."""
        if error is None or attempt >= self.max_attempts or error not in self._retry_on:
            return None
        if self._respect and error in ("http_429", "http_5xx"):
            after = parse_retry_after(retry_after)
            if after is not None:
                return after if after <= self._max_after else None
        return self._rng.uniform(0, min(self._cap, self._base * 2 ** (attempt - 1)))
