"""A circuit breaker per candidate: stop spending the proxy's CPU on a candidate that is down.

After ``failures`` consecutive failed calls the circuit opens: offers for the candidate are
dropped at ``offer`` time (one comparison, before any queueing or parsing) for
``cooldown_s``. Then one trial call is let through (half-open): a success closes the
circuit, a failure re-opens it for twice the previous cooldown, up to ``max_cooldown_s``.

The state machine has no timers and no tasks: it is driven by the dispatcher's calls and a
clock, so tests use a fake one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from prometheus_client import Gauge

from shadoweval.config.proxy import CircuitBreaker
from shadoweval.types import ErrorType

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]

# What counts as "the candidate is down or drowning", judged on the last attempt (after the
# retry policy has had its go):
# - connect: refused, reset while connecting, DNS, TLS handshake: nothing is listening;
# - timeout: no answer within timeout_s: hung, or queueing far behind;
# - http_5xx: the server failed or is overloaded (502/503/504, 529), answered as an error;
# - http_429: it sheds load or our quota is spent; sending more only earns more 429s.
# Not counted (the candidate answered, so it is up, and they reset the count): http_4xx (our
# request), invalid_response and truncated_stream (a bad answer is still an answer, and
# worth a record), and failures before sending (invalid_request, internal).
TRIPPING_ERRORS: frozenset[ErrorType] = frozenset({"connect", "timeout", "http_5xx", "http_429"})


class Breaker:
    """The circuit of one candidate.

    ``allow`` is called for every offer (hot path) and again by the worker before it
    starts on a queued job; ``begin`` right before the call is sent, ``end`` with its
    result. ``begin`` hands out a ticket so that results of calls started before the last
    state change (slow timeouts arriving after the circuit opened) are ignored.
    """

    __slots__ = (
        "_base",
        "_clock",
        "_cooldown",
        "_epoch",
        "_failures",
        "_gauge",
        "_max",
        "_open_until",
        "_streak",
        "name",
        "state",
    )

    def __init__(
        self,
        name: str,
        cfg: CircuitBreaker,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.state: State = "closed"
        self._failures = cfg.failures
        self._base = cfg.cooldown_s
        self._max = cfg.max_cooldown_s
        self._cooldown = cfg.cooldown_s
        self._clock = clock
        self._gauge = gauge
        self._streak = 0
        self._epoch = 0
        # While closed this is 0.0, so ``allow`` is one float comparison in every state.
        self._open_until = 0.0
        if gauge is not None:
            gauge.set(0)

    def allow(self) -> bool:
        """False while the circuit is open and its cooldown has not passed."""
        return self._open_until == 0.0 or (
            self.state == "open" and self._clock() >= self._open_until
        )

    def begin(self) -> int | None:
        """A ticket for a call about to be sent, or None if it must not be sent (the circuit
        is open, or half-open with its one trial call already under way)."""
        if self.state == "closed":
            return self._epoch
        if self.state == "half_open" or self._clock() < self._open_until:
            return None
        self.state = "half_open"  # the cooldown has passed: this call is the trial
        self._epoch += 1
        return self._epoch

    def end(self, ticket: int, error_type: ErrorType | None) -> None:
        """Record the result of the call that ``begin`` returned ``ticket`` for."""
        if ticket != self._epoch:
            return  # started before the circuit last changed state
        failed = error_type in TRIPPING_ERRORS
        if self.state == "closed":
            if not failed:
                self._streak = 0
                return
            self._streak += 1
            if self._streak >= self._failures:
                self._open(f"{self._streak} consecutive failures, last: {error_type}")
        elif failed:  # the trial failed: open again, for longer
            self._cooldown = min(self._cooldown * 2, self._max)
            self._open(f"the trial call failed: {error_type}")
        else:
            self.state = "closed"
            self._epoch += 1
            self._streak = 0
            self._cooldown = self._base
            self._open_until = 0.0
            if self._gauge is not None:
                self._gauge.set(0)
            log.info("candidate %s: circuit closed, the trial call succeeded", self.name)

    def abort(self, ticket: int) -> None:
        """The call of ``ticket`` ended without a result (cancelled): if it was the trial,
        the next call is one again."""
        if ticket == self._epoch and self.state == "half_open":
            self.state = "open"
            self._epoch += 1
            self._open_until = self._clock()

    def _open(self, why: str) -> None:
        self.state = "open"
        self._epoch += 1
        self._streak = 0
        self._open_until = self._clock() + self._cooldown
        if self._gauge is not None:
            self._gauge.set(1)
        log.warning(
            "candidate %s: circuit open for %.3gs (%s); its shadows are dropped meanwhile",
            self.name,
            self._cooldown,
            why,
        )
