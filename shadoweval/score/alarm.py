"""Feeds the sequential regression test (``stats.RegressionMonitor``) from quality scores.

Per (candidate upstream, monitored quality scorer), one anytime-valid test of "the
candidate's mean is more than ``max_drop`` below its baseline's" (relative, the report's
unit), published as shadoweval_quality_regression_*. What a scorer is comes from its
declared :class:`~shadoweval.score.registry.ScorerInfo`, never from its name:

- per-side scores (``side: primary`` and ``candidate`` of one pair): candidate vs primary;
- ``pair: preference`` pair scores (win/tie/loss, 0.5 a tie): candidate vs 0.5;
- ``pair: agreement`` pair scores (e.g. exact, semantic): candidate vs the control's score on
  the same request (the primary compared with itself, the noise floor). Without a control
  they are not fed: agreement below 1 is expected of any sampled model.
- ``kind: safety`` scorers and ``pair: flag`` scores are not fed (flags are alerted on
  directly).

The false-alarm rate ``alpha`` is family-wise. Monitors are numbered as they start; the
first K = ``candidates`` x (monitored scorers) share 90% of alpha equally, monitor K + j
gets 10% * 2^-j of it. The shares sum to less than alpha, and each is fixed before its
monitor sees a score, so by a union bound over Ville's inequality no monitor alarms on
candidates within the margin, with probability at least 1 - alpha, however many appear.

Scores are matched by request within a bounded window; a re-delivered pair is fed once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import RegressionAlarm
from shadoweval.metrics import ScoreMetrics
from shadoweval.score.registry import QUALITY_PREFERENCE, ScorerInfo
from shadoweval.stats import RegressionMonitor

# The primary quality scorer when regression.scorers names none: the first configured one
# in the registry's preference order; other scorers follow in the order the config lists.
PREFERENCE = QUALITY_PREFERENCE
# The declared family (candidates x scorers) shares this much of alpha; the rest is spent
# in halves on monitors beyond it.
_DECLARED_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class Configured:
    """A scorer of the scorer config as the alarm sees it."""

    name: str  # what its records carry
    use: str  # its registered name
    info: ScorerInfo


def monitored(cfg: RegressionAlarm, configured: Iterable[Configured]) -> dict[str, ScorerInfo]:
    """The scorers the alarm watches for each candidate: ``cfg.scorers`` (each a configured
    quality scorer), else the primary quality scorer. A ConfigError names a bad entry."""
    by_name: dict[str, Configured] = {}
    for c in configured:
        by_name.setdefault(c.name, c)
    if cfg.scorers:
        out: dict[str, ScorerInfo] = {}
        for i, name in enumerate(cfg.scorers):
            found = by_name.get(name)
            if found is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise ConfigError(
                    f"regression.scorers[{i}]: {name!r} is not a configured scorer "
                    f"(configured: {known})"
                )
            if found.info.kind != "quality" or found.info.pair == "flag":
                raise ConfigError(
                    f"regression.scorers[{i}]: {name!r} is a safety detector; the alarm "
                    "watches quality scorers (safety flags are alerted on directly)"
                )
            out[name] = found.info
        return out
    quality = [c for c in by_name.values() if c.info.kind == "quality" and c.info.pair != "flag"]
    if not quality:
        return {}
    order = {use: i for i, use in enumerate(PREFERENCE)}
    # sorted() is stable: unranked scorers keep the config's order after the ranked ones.
    first = sorted(quality, key=lambda c: order.get(c.use, len(PREFERENCE)))[0]
    return {first.name: first.info}


def alpha_share(index: int, family: int, alpha: float) -> float:
    """Monitor ``index``'s (0-based, in start order) part of the family-wise ``alpha``."""
    if index < family:
        return _DECLARED_SHARE * alpha / family
    return (1 - _DECLARED_SHARE) * alpha * 2.0 ** -(index - family + 1)


class Alarm:
    def __init__(self, cfg: RegressionAlarm, metrics: ScoreMetrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._watched: dict[str, ScorerInfo] = {}
        self._family = cfg.candidates
        self._monitors: dict[tuple[str, str], RegressionMonitor] = {}
        # (request_id, scorer) -> {"control": v, upstream: v, ...} pair scores awaiting a match
        self._pairs: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        # (pair_id, scorer) -> {side: value} per-side scores awaiting the other side
        self._sides: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        self._fed: OrderedDict[tuple[str, str], None] = OrderedDict()

    def watch(self, configured: Iterable[Configured]) -> None:
        """Choose the monitored scorers from the configured ones (before any score)."""
        self._watched = monitored(self._cfg, configured)
        self._family = self._cfg.candidates * max(1, len(self._watched))

    @property
    def watched(self) -> dict[str, ScorerInfo]:
        return dict(self._watched)

    @property
    def family(self) -> int:
        """K: the monitors that share 90% of alpha."""
        return self._family

    def monitor(self, upstream: str, scorer: str) -> RegressionMonitor:
        key = (upstream, scorer)
        mon = self._monitors.get(key)
        if mon is None:
            share = alpha_share(len(self._monitors), self._family, self._cfg.alpha)
            info = self._watched.get(scorer, ScorerInfo())
            mon = self._monitors[key] = RegressionMonitor.for_metrics(
                self._metrics,
                upstream,
                scorer,
                self._cfg.max_drop,
                share,
                higher_is_better=info.higher_is_better,
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
        info = self._watched.get(scorer)
        if value is None or info is None or not self._cfg.enabled:
            return
        if side != "pair":
            entry = self._remember(self._sides, (pair_id, scorer))
            entry[side] = value
            if role == "candidate" and "primary" in entry and "candidate" in entry:
                self._feed(pair_id, scorer, upstream, entry["candidate"], entry["primary"])
            return
        if info.pair == "preference":
            if role == "candidate":
                self._feed(pair_id, scorer, upstream, value, 0.5)
            return
        if info.pair != "agreement":
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
