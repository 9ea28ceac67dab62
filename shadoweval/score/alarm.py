"""Feeds the sequential regression test (``stats.RegressionMonitor``) from quality scores.

Per (candidate upstream, quality scorer), one anytime-valid test of "the candidate is worse
than its baseline by more than delta", published as shadoweval_quality_regression_*:

- per-side scorers (``side: primary`` and ``candidate`` of one pair): candidate vs primary;
- ``judge_pairwise``-style pair scores where 0.5 is a tie: candidate vs 0.5;
- other pair scores (agreement with the primary, e.g. exact, semantic): candidate vs the
  control's score on the same request (the primary compared with itself, the noise floor).
  Without a control they are not fed: agreement below 1 is expected of any sampled model.

Safety detectors are not fed (their flags are alerted on directly). Scores are matched by
request within a bounded window; a re-delivered pair is fed once.
"""

from __future__ import annotations

from collections import OrderedDict

from shadoweval.config import RegressionAlarm
from shadoweval.metrics import ScoreMetrics
from shadoweval.stats import RegressionMonitor

_TIE_BASELINE = frozenset({"judge_pairwise"})


class Alarm:
    def __init__(self, cfg: RegressionAlarm, metrics: ScoreMetrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._monitors: dict[tuple[str, str], RegressionMonitor] = {}
        # (request_id, scorer) -> {"control": v, upstream: v, ...} pair scores awaiting a match
        self._pairs: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        # (pair_id, scorer) -> {side: value} per-side scores awaiting the other side
        self._sides: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        self._fed: OrderedDict[tuple[str, str], None] = OrderedDict()

    def monitor(self, upstream: str, scorer: str) -> RegressionMonitor:
        key = (upstream, scorer)
        mon = self._monitors.get(key)
        if mon is None:
            mon = self._monitors[key] = RegressionMonitor.for_metrics(
                self._metrics, upstream, scorer, self._cfg.delta, self._cfg.alpha
            )
        return mon

    def _remember(
        self, store: OrderedDict[tuple[str, str], dict[str, float]], key: tuple[str, str]
    ) -> dict[str, float]:
        entry = store.get(key)
        if entry is None:
            entry = store[key] = {}
            if len(store) > self._cfg.window:
                store.popitem(last=False)
        return entry

    def _feed(
        self, pair_id: str, scorer: str, upstream: str, candidate: float, baseline: float
    ) -> None:
        key = (pair_id, scorer)
        if key in self._fed:
            return  # a re-delivery: the test must see each pair once
        self._fed[key] = None
        if len(self._fed) > 5 * self._cfg.window:
            self._fed.popitem(last=False)
        self.monitor(upstream, scorer).update(candidate, baseline)

    def observe(
        self,
        *,
        pair_id: str,
        request_id: str,
        upstream: str,
        role: str,
        scorer: str,
        side: str,
        value: float | None,
    ) -> None:
        if value is None or not self._cfg.enabled:
            return
        if side != "pair":
            entry = self._remember(self._sides, (pair_id, scorer))
            entry[side] = value
            if role == "candidate" and "primary" in entry and "candidate" in entry:
                self._feed(pair_id, scorer, upstream, entry["candidate"], entry["primary"])
            return
        if scorer in _TIE_BASELINE:
            if role == "candidate":
                self._feed(pair_id, scorer, upstream, value, 0.5)
            return
        entry = self._remember(self._pairs, (request_id, scorer))
        if role == "control":
            entry["\0control"] = value
            for name, v in entry.items():
                if name != "\0control":
                    self._feed(f"{request_id}:{name}", scorer, name, v, value)
        else:
            entry[upstream] = value
            control = entry.get("\0control")
            if control is not None:
                self._feed(pair_id, scorer, upstream, value, control)
