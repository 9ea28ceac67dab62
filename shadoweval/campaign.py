"""Campaigns: which requests a candidate is offered (``match``), when (``schedule``) and how
much (``budget``), with the spend accounting behind it and the state the admin view reads.

The dispatcher calls three things per candidate: :meth:`Campaign.admits` where it chooses
candidates in ``offer`` (match, window, caps: cheap, no I/O), :meth:`Campaign.begin` when a
worker takes the shadow (the caps again, and a reservation of a request and a pair, so the
queue cannot carry a candidate past a cap) and :meth:`Campaign.end` once the answer is priced
and paired. All state of one candidate lives in its :class:`Campaign`, so a reload that keeps
the candidate can carry the object over unchanged; one that changes its campaign settings
builds a new one and :meth:`Campaign.adopt` s the old counters (after
:meth:`Campaign.unexport`, so no series of a dropped limit is left behind).

A USD cap is known only after an answer is priced: shadows already in flight when the cap
is reached still complete, so a day's spend can pass ``usd_per_day`` by at most
``concurrency`` answers. ``max_requests`` and ``max_pairs`` are reserved before sending and
are never passed. Days roll over at 00:00 UTC on the injected clock.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

from shadoweval.config.base import parse_duration
from shadoweval.config.proxy import Candidate, CandidateMatch, CandidateSchedule
from shadoweval.metrics import CANDIDATE_STATES, Metrics
from shadoweval.protocols.openai import InvalidRequest, parse_request
from shadoweval.types import Json, Route

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# Unix seconds now; tests pass a fake one.
Clock = Callable[[], float]
Refusal = Literal["budget", "schedule"]
State = Literal["active", "paused_schedule", "paused_budget", "circuit_open"]

_DAY_S = 86_400


def utc_day(ts: float) -> int:
    """The UTC calendar day ``ts`` falls on (days since the epoch)."""
    return int(ts // _DAY_S)


def _glob(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


def request_model(body: bytes) -> tuple[Json | None, str | None]:
    """The parsed request and its model, for ``match.models`` (None, None: not JSON)."""
    try:
        request = parse_request(body)
    except InvalidRequest:
        return None, None
    model = request.get("model")
    return request, model if isinstance(model, str) else None


class Match:
    """A candidate's ``match`` rules, compiled once: every key set must match."""

    def __init__(self, cfg: CandidateMatch) -> None:
        self._models = _glob(cfg.models)
        self._routes = frozenset(cfg.routes)
        self._tasks = _glob(cfg.tasks)
        self._headers = [(name.lower(), _glob([value])) for name, value in cfg.headers.items()]
        self.needs_model = self._models is not None
        self.everything = not (self._models or self._routes or self._tasks or self._headers)

    def __call__(
        self, route: Route, model: str | None, task: str | None, headers: Mapping[str, str]
    ) -> bool:
        if self.everything:
            return True
        if self._routes and route not in self._routes:
            return False
        if self._models is not None and (model is None or not self._models.fullmatch(model)):
            return False
        if self._tasks is not None and (task is None or not self._tasks.fullmatch(task)):
            return False
        for name, pattern in self._headers:
            value = headers.get(name)
            if value is None or pattern is None or not pattern.fullmatch(value):
                return False
        return True


def window(cfg: CandidateSchedule, taken_on: float) -> tuple[float | None, float | None]:
    """The schedule as unix seconds (None: open on that side). A duration counts from
    ``start``, or from ``taken_on`` (when the proxy took the candidate on)."""
    start = cfg.start.timestamp() if cfg.start is not None else None
    end = cfg.end.timestamp() if cfg.end is not None else None
    if cfg.duration is not None:
        end = (start if start is not None else taken_on) + parse_duration(cfg.duration)
    return start, end


class Counters(TypedDict):
    """A campaign's counters (:meth:`Campaign.counters`, :meth:`Campaign.restore`)."""

    taken_on: float
    requests: int
    pairs: int
    spend_day: int
    spent_usd: float
    pairs_day: int
    pairs_today: int


class DailySpend:
    """USD spent today (UTC) against an optional daily cap."""

    def __init__(self, usd_per_day: float | None, clock: Clock) -> None:
        self.cap = usd_per_day
        self._clock = clock
        self._day = utc_day(clock())
        self._spent = 0.0

    def _roll(self) -> None:
        day = utc_day(self._clock())
        if day != self._day:
            self._day, self._spent = day, 0.0

    @property
    def spent(self) -> float:
        self._roll()
        return self._spent

    def remaining(self) -> float | None:
        if self.cap is None:
            return None
        return max(self.cap - self.spent, 0.0)

    def exhausted(self) -> bool:
        return self.cap is not None and self.spent >= self.cap

    def add(self, usd: float | None) -> None:
        if usd:
            self._roll()
            self._spent += usd

    @property
    def day(self) -> int:
        """The UTC day the spend counts (possibly over: it rolls when next read)."""
        return self._day

    @property
    def spent_on_day(self) -> float:
        return self._spent

    def restore(self, day: int, spent: float) -> None:
        self._day, self._spent = day, spent


class Campaign:
    """One candidate's admission (match, schedule, budget) and its counters."""

    def __init__(
        self,
        cfg: Candidate,
        metrics: Metrics | None = None,
        clock: Clock = time.time,
        circuit: Callable[[], bool] | None = None,
    ) -> None:
        """``circuit``: whether the candidate's breaker is open now (for its state)."""
        self.name = cfg.name
        self.match = Match(cfg.match)
        self._schedule = cfg.schedule
        self._clock = clock
        self._circuit = circuit
        self.taken_on = clock()
        self.start_ts, self.end_ts = window(cfg.schedule, self.taken_on)
        budget = cfg.budget
        self.spend = DailySpend(budget.usd_per_day, clock)
        self.max_requests = budget.max_requests
        self.max_pairs = budget.max_pairs
        self.requests = 0  # sent (reserved before sending)
        self.pairs = 0
        self._pending = 0  # sent, answer not yet paired
        self._pairs_day = utc_day(clock())
        self._pairs_today = 0
        # Set by adopt: a replaced candidate's shadows still queued or in flight count there.
        self._successor: Campaign | None = None
        self.limited = (
            self.max_requests is not None
            or self.max_pairs is not None
            or self.spend.cap is not None
            or self.start_ts is not None
            or self.end_ts is not None
        )
        if metrics is not None:
            self._export(metrics)

    def adopt(self, old: Campaign) -> None:
        """Carry a previous configuration's counters over (a reload that changed this
        candidate's campaign settings): spend, counts and the moment a ``duration`` counts
        from stay; the new limits apply to them."""
        self.restore(**old.counters())
        self._pending = old._pending
        # The old lane drains after the reload: its begins and ends land here, so the
        # reservations copied above are given back where they are now held.
        old._successor = self

    def restore(
        self,
        *,
        taken_on: float,
        requests: int,
        pairs: int,
        spend_day: int,
        spent_usd: float,
        pairs_day: int,
        pairs_today: int,
    ) -> None:
        """Counters as :meth:`counters` gives them: a previous configuration's
        (:meth:`adopt`), or saved by an earlier run (:mod:`shadoweval.campaign_store`)."""
        self.taken_on = taken_on
        self.start_ts, self.end_ts = window(self._schedule, taken_on)
        self.requests, self.pairs = requests, pairs
        self.spend.restore(spend_day, spent_usd)
        self._pairs_day, self._pairs_today = pairs_day, pairs_today

    def counters(self) -> Counters:
        """What :meth:`restore` takes: the counts, the days they count (possibly over: they
        roll when next read) and when the candidate was taken on. Not the reservations of
        shadows in flight."""
        return {
            "taken_on": self.taken_on,
            "requests": self.requests,
            "pairs": self.pairs,
            "spend_day": self.spend.day,
            "spent_usd": self.spend.spent_on_day,
            "pairs_day": self._pairs_day,
            "pairs_today": self._pairs_today,
        }

    # -- admission --------------------------------------------------------------------

    def refusal(self) -> Refusal | None:
        """Why no shadow may be sent now, if one may not."""
        if not self.limited:
            return None
        now = self._clock()
        if (self.start_ts is not None and now < self.start_ts) or (
            self.end_ts is not None and now >= self.end_ts
        ):
            return "schedule"
        if self.spend.exhausted():
            return "budget"
        if self.max_requests is not None and self.requests >= self.max_requests:
            return "budget"
        if self.max_pairs is not None and self.pairs + self._pending >= self.max_pairs:
            return "budget"
        return None

    @property
    def prices_answers(self) -> bool:
        """Whether each answer's price is needed as it arrives (a USD budget)."""
        return self.spend.cap is not None

    def admits(
        self, route: Route, model: str | None, task: str | None, headers: Mapping[str, str]
    ) -> bool:
        return self.match(route, model, task, headers)

    def begin(self) -> Refusal | None:
        """A worker is about to send: the caps again (the queue may hold many), and a
        request and a pair reserved. Every successful begin is followed by one ``end`` (or
        ``cancel``)."""
        if self._successor is not None:
            return self._successor.begin()
        why = self.refusal()
        if why is None:
            self.requests += 1
            self._pending += 1
        return why

    def cancel(self) -> None:
        """A begun shadow that was not sent after all (the circuit breaker's trial call was
        taken): its reservation is given back."""
        if self._successor is not None:
            self._successor.cancel()
            return
        self.requests -= 1
        self._pending -= 1

    def end(self, cost_usd: float | None, paired: bool) -> None:
        """The answer of a begun shadow: its price counted, its pair (if any) too."""
        if self._successor is not None:
            self._successor.end(cost_usd, paired)
            return
        self._pending -= 1
        self.spend.add(cost_usd)
        if paired:
            self.pairs += 1
            self._roll_pairs()
            self._pairs_today += 1

    # -- state --------------------------------------------------------------------------

    def _roll_pairs(self) -> None:
        day = utc_day(self._clock())
        if day != self._pairs_day:
            self._pairs_day, self._pairs_today = day, 0

    @property
    def pairs_today(self) -> int:
        self._roll_pairs()
        return self._pairs_today

    def state(self) -> State:
        why = self.refusal()
        if why == "schedule":
            return "paused_schedule"
        if why == "budget":
            return "paused_budget"
        if self._circuit is not None and self._circuit():
            return "circuit_open"
        return "active"

    def remaining_requests(self) -> int | None:
        return None if self.max_requests is None else max(self.max_requests - self.requests, 0)

    def remaining_pairs(self) -> int | None:
        return None if self.max_pairs is None else max(self.max_pairs - self.pairs, 0)

    def _is(self, state: str) -> Callable[[], float]:
        return lambda: float(self.state() == state)

    @staticmethod
    def unexport(m: Metrics, name: str) -> None:
        """Remove a candidate's campaign series (a reload that removed the candidate)."""
        for state in CANDIDATE_STATES:
            m.candidate_state.remove(name, state)
        for gauge in (m.pairs_today, m.candidate_spend_today):
            gauge.remove(name)
        for gauge in (
            m.budget_remaining_usd,
            m.budget_remaining_requests,
            m.budget_remaining_pairs,
        ):
            with contextlib.suppress(KeyError):  # only the limits that were set have one
                gauge.remove(name)

    def _export(self, m: Metrics) -> None:
        """Gauges read at scrape time, so a window opening or a day rolling over shows
        without traffic."""
        name = self.name
        for state in CANDIDATE_STATES:
            m.candidate_state.labels(name, state).set_function(self._is(state))
        m.pairs_today.labels(name).set_function(lambda: float(self.pairs_today))
        m.candidate_spend_today.labels(name).set_function(lambda: self.spend.spent)
        if self.spend.cap is not None:
            m.budget_remaining_usd.labels(name).set_function(lambda: self.spend.remaining() or 0.0)
        if self.max_requests is not None:
            m.budget_remaining_requests.labels(name).set_function(
                lambda: float(self.remaining_requests() or 0)
            )
        if self.max_pairs is not None:
            m.budget_remaining_pairs.labels(name).set_function(
                lambda: float(self.remaining_pairs() or 0)
            )


# -- the admin view -------------------------------------------------------------------------


@dataclass
class _Row:
    state: str = "unknown"  # no process reported it (a shadow worker being replaced)
    usd_left: float | None = None
    requests_left: float | None = None
    pairs_left: float | None = None
    spent_today: float = 0.0
    pairs_today: float = 0.0
    pairs_total: float = 0.0
    queue_depth: float = 0.0
    in_flight: float = 0.0
    circuit_open: bool = False


def candidates_view(cfgs: Sequence[Candidate], families: Iterable[Metric]) -> Json:
    """``GET /candidates``: each candidate's state from the metric families (this
    process's, or the proxy's merged with its shadow worker's, as ``/metrics`` shows)."""
    rows = {c.name: _Row() for c in cfgs}
    numeric = {
        "shadoweval_candidate_budget_remaining_usd": "usd_left",
        "shadoweval_candidate_budget_remaining_requests": "requests_left",
        "shadoweval_candidate_budget_remaining_pairs": "pairs_left",
        "shadoweval_candidate_spend_today_usd": "spent_today",
        "shadoweval_candidate_pairs_today": "pairs_today",
        "shadoweval_pairs_total": "pairs_total",
        "shadoweval_shadow_queue_depth": "queue_depth",
        "shadoweval_shadow_in_flight": "in_flight",
    }
    for family in families:
        for s in family.samples:
            row = rows.get(s.labels.get("upstream", ""))
            if row is None:
                continue
            if s.name == "shadoweval_candidate_state" and s.value >= 1:
                row.state = s.labels["state"]
            elif s.name == "shadoweval_candidate_circuit_open":
                row.circuit_open = s.value >= 1
            elif (attr := numeric.get(s.name)) is not None:
                setattr(row, attr, (getattr(row, attr) or 0.0) + s.value)
    out: list[Json] = []
    for c in cfgs:
        row = rows[c.name]
        sched = c.schedule
        out.append(
            {
                "name": c.name,
                "role": c.role,
                "state": row.state,
                "circuit_open": row.circuit_open,
                "budget": {
                    "usd_per_day": c.budget.usd_per_day,
                    "usd_left_today": row.usd_left,
                    "usd_spent_today": round(row.spent_today, 6),
                    "max_requests": c.budget.max_requests,
                    "requests_left": _int(row.requests_left),
                    "max_pairs": c.budget.max_pairs,
                    "pairs_left": _int(row.pairs_left),
                },
                "schedule": {
                    "start": sched.start.isoformat() if sched.start else None,
                    "end": sched.end.isoformat() if sched.end else None,
                    "duration": sched.duration,
                },
                "queue_depth": int(row.queue_depth),
                "in_flight": int(row.in_flight),
                "pairs_today": int(row.pairs_today),
                "pairs_total": int(row.pairs_total),
            }
        )
    return {"candidates": out}


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
