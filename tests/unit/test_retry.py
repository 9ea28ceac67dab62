import random
from datetime import UTC, datetime

from shadoweval.config.proxy import Retry
from shadoweval.retry import RetryPolicy, parse_retry_after


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", now) == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_policy_retries_only_listed_errors_up_to_max_attempts() -> None:
    policy = RetryPolicy(Retry(max_attempts=3, backoff_s=1, max_backoff_s=3), random.Random(0))
    assert policy.delay(1, None, None) is None
    assert policy.delay(1, "timeout", None) is None  # not in the default retry_on
    assert policy.delay(1, "http_4xx", None) is None
    assert policy.delay(3, "connect", None) is None  # attempts exhausted
    for attempt in (1, 2):
        delays = [policy.delay(attempt, "connect", None) for _ in range(200)]
        cap = min(3, 2 ** (attempt - 1))
        assert all(d is not None and 0 <= d <= cap for d in delays)
        assert max(d for d in delays if d is not None) > 0.8 * cap  # full jitter spans the range


def test_retry_after_is_used_and_capped() -> None:
    policy = RetryPolicy(Retry(max_retry_after_s=10))
    assert policy.delay(1, "http_429", "7") == 7.0
    assert policy.delay(1, "http_429", "60") is None  # longer than we are willing to wait
    assert (
        RetryPolicy(Retry(respect_retry_after=False, backoff_s=0)).delay(1, "http_429", "7") == 0.0
    )
