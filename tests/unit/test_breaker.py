"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Gauge

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import CircuitBreaker, parse
from shadoweval.proxy.breaker import Breaker
from shadoweval.types import ErrorType


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    failures: int = 3, cooldown_s: float = 5, max_cooldown_s: float = 60
) -> tuple[Breaker, Clock, Gauge]:
    clock = Clock()
    gauge = Gauge("circuit", "test", registry=CollectorRegistry())
    cfg = CircuitBreaker(failures=failures, cooldown_s=cooldown_s, max_cooldown_s=max_cooldown_s)
    return Breaker("cand", cfg, gauge, clock=clock), clock, gauge


def call(breaker: Breaker, error: ErrorType | None) -> None:
    ticket = breaker.begin()
    assert ticket is not None, f"a call was refused in state {breaker.state}"
    breaker.end(ticket, error)


def gauge_value(gauge: Gauge) -> float:
    return gauge._value.get()


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, gauge = make(failures=3)
    for error in ("connect", "timeout", None, "http_5xx", "http_429"):
        call(breaker, error)  # the success in the middle resets the count
    assert breaker.state == "closed" and breaker.allow() and gauge_value(gauge) == 0
    call(breaker, "connect")
    assert breaker.state == "open" and not breaker.allow() and gauge_value(gauge) == 1
    assert breaker.begin() is None  # a job queued before it opened is not sent either


@pytest.mark.parametrize(
    "error", ["http_4xx", "invalid_response", "truncated_stream", "internal", None]
)
def test_answers_that_show_the_candidate_is_up_never_open_it(error: ErrorType | None) -> None:
    breaker, _, _ = make(failures=2)
    for _ in range(10):
        call(breaker, error)
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    breaker, clock, gauge = make(failures=1, cooldown_s=5)
    call(breaker, "connect")
    clock.now += 4.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()  # offers are queued again until a worker starts the trial
    trial = breaker.begin()
    assert trial is not None and breaker.state == "half_open"
    assert not breaker.allow() and breaker.begin() is None  # only one trial at a time
    assert gauge_value(gauge) == 1
    breaker.end(trial, None)
    assert breaker.state == "closed" and breaker.allow() and gauge_value(gauge) == 0


def test_failed_trials_double_the_cooldown_up_to_the_cap_and_success_resets_it() -> None:
    breaker, clock, _ = make(failures=1, cooldown_s=5, max_cooldown_s=12)
    call(breaker, "timeout")
    waits = []
    for _ in range(4):
        opened_at = clock.now
        while not breaker.allow():
            clock.now += 0.5
        waits.append(clock.now - opened_at)
        call(breaker, "connect")  # the trial fails
    assert waits == [5, 10, 12, 12]
    while not breaker.allow():
        clock.now += 0.5
    call(breaker, None)
    call(breaker, "connect")  # closed again: the first failure opens it (failures=1) ...
    opened_at = clock.now
    while not breaker.allow():
        clock.now += 0.5
    assert clock.now - opened_at == 5  # ... for the base cooldown again


def test_results_of_calls_started_before_a_state_change_are_ignored() -> None:
    breaker, clock, _ = make(failures=2, cooldown_s=5)
    slow = breaker.begin()  # e.g. a call that will time out much later
    assert slow is not None
    call(breaker, "connect")
    call(breaker, "connect")
    assert breaker.state == "open"
    clock.now += 5
    trial = breaker.begin()
    assert trial is not None
    breaker.end(slow, None)  # a success from before it opened is no verdict on the trial
    assert breaker.state == "half_open"
    breaker.end(slow, "timeout")
    assert breaker.state == "half_open"
    breaker.end(trial, "connect")
    assert breaker.state == "open"


def test_an_aborted_trial_lets_the_next_call_be_the_trial() -> None:
    breaker, clock, _ = make(failures=1, cooldown_s=5)
    call(breaker, "connect")
    clock.now += 5
    trial = breaker.begin()
    assert trial is not None
    breaker.abort(trial)  # cancelled (shutdown): no result either way
    assert breaker.state == "open" and breaker.allow()
    assert breaker.begin() is not None and breaker.state == "half_open"


def test_logs_one_line_when_it_opens_and_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker, clock, _ = make(failures=2, cooldown_s=5)
    with caplog.at_level(logging.INFO, logger="shadoweval.proxy.breaker"):
        for _ in range(10):
            if breaker.allow() and (ticket := breaker.begin()) is not None:
                breaker.end(ticket, "connect")
        clock.now += 5
        call(breaker, None)
        call(breaker, None)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == ["WARNING", "INFO"], levels
    assert "candidate cand: circuit open for 5s" in levels[0][1]
    assert "circuit closed" in levels[1][1]


def base(breaker: dict[str, object]) -> dict[str, object]:
    return {
        "primary": {"url": "http://a"},
        "candidates": [{"name": "c", "url": "http://b", "circuit_breaker": breaker}],
    }


def test_config_defaults_and_errors_name_the_key() -> None:
    plain = {"primary": {"url": "http://a"}, "candidates": [{"name": "c", "url": "http://b"}]}
    default = parse(plain, environ={})
    assert default.candidates[0].circuit_breaker == CircuitBreaker(
        enabled=True, failures=5, cooldown_s=5, max_cooldown_s=60
    )
    assert not parse(base({"enabled": False}), environ={}).candidates[0].circuit_breaker.enabled
    for bad, expected in [
        ({"failures": 0}, "candidates.0.circuit_breaker.failures: Input should be greater"),
        ({"cooldown_s": -1}, "candidates.0.circuit_breaker.cooldown_s: Input should be greater"),
        (
            {"cooldown_s": 10, "max_cooldown_s": 5},
            "candidates.0.circuit_breaker: max_cooldown_s (5) must be at least cooldown_s (10)",
        ),
        ({"failure": 3}, "candidates.0.circuit_breaker.failure: unknown key"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse(base(bad), environ={})
        assert expected in str(err.value), str(err.value)
