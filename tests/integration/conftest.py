"""Integration-test plumbing: Kafka-marked tests need a broker at ``KAFKA_BOOTSTRAP``."""

from __future__ import annotations

import os

import pytest

KAFKA_HINT = (
    "KAFKA_BOOTSTRAP is not set; start a broker with: "
    'eval "$(scripts/kafka.sh start)" && export KAFKA_BOOTSTRAP'
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Runs for the tests in this directory only. Locally a missing broker skips the Kafka
    # tests with a hint; in CI (CI set) it fails them, so they can never be skipped silently.
    if item.get_closest_marker("kafka") is None or os.environ.get("KAFKA_BOOTSTRAP"):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{KAFKA_HINT} (CI is set: Kafka tests must run, not skip)", pytrace=False)
    pytest.skip(KAFKA_HINT)


@pytest.fixture
def kafka_bootstrap() -> str:
    """The shared broker's bootstrap address (the marker hook has checked it is set)."""
    return os.environ["KAFKA_BOOTSTRAP"]
