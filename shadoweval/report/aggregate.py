"""Pairs + scores -> the report: one row per candidate (and the control) against the primary.

The result is a plain JSON-able dict (``shadoweval.report.v1``); the terminal, JSON and HTML
outputs all render from it. Statistics come from :mod:`shadoweval.stats`.

How a scorer is compared (see docs/report.md):

- **per side**: the scorer scored the primary's and the candidate's answers separately
  (``side: primary`` and ``side: candidate``); the difference is candidate minus primary on
  the same pairs, and the control's difference on the same requests is the noise floor.
- **pair**: the scorer compared the candidate with the primary (``side: pair``, e.g. exact
  match, similarity, a pairwise judge). The baseline is the control's score on the same
  requests (the primary compared with itself), or, without a control, the value the primary
  would get against itself (1.0; 0.5 = a tie for a preference). Agreement against 1.0 cannot
  tell a nondeterministic model from a worse one: such a block is shown, never decisive.

What a scorer is (quality or safety, what its pair score means, whether a flag is harm) comes
from its score records (``scorer_info``, declared where the scorer is registered).
Probe records (``source: probe``) are left out of the traffic figures unless asked for with
``--source probe``; they make the robustness section.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shadoweval import stats
from shadoweval.config.proxy import Redaction
from shadoweval.config.report import Report
from shadoweval.pricing import PriceTable
from shadoweval.records import TASK_HEADER
from shadoweval.redaction import Redactor
from shadoweval.report.language import detect as detect_language
from shadoweval.report.load import Dataset, ScoreRow, ScoreTable, score_kinds, trim_heap
from shadoweval.report.pairs import PairStore, PairView, Sides, SidesAt, as_store
from shadoweval.report.robustness import robustness
from shadoweval.report.verdict import decide, finalise
from shadoweval.score.registry import QUALITY_PREFERENCE, ScorerInfo, info_of
from shadoweval.stats import Estimate
from shadoweval.types import Json, Usage

if TYPE_CHECKING:
    from shadoweval.report.rows import SideRow

REPORT_SCHEMA = "shadoweval.report.v1"
JUDGE_PAIRWISE = "judge_pairwise"
# `shadoweval review`; human_pairwise_vs_<upstream> compares two candidates.
HUMAN_PAIRWISE = "human_pairwise"
JUDGE_LABELS = {"win": 1.0, "tie": 0.5, "loss": 0.0}
# Preferred headline scorer when the rules name none: the most semantic first.
QUALITY_ORDER = QUALITY_PREFERENCE
LATENCY_QS = (0.5, 0.95, 0.99)
TTFT_QS = (0.5, 0.99)
# A quantile is only reported as reliable with this many observations beyond it.
MIN_TAIL_OBSERVATIONS = 5
HIST_EDGES = [i / 10 for i in range(11)]
_NICE_STEPS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def reference_value(info: ScorerInfo) -> float:
    """What the primary scores against itself on a pair scorer."""
    return 0.5 if info.pair == "preference" else 1.0


def q_label(q: float) -> str:
    return f"p{q * 100:g}"


Floats = NDArray[np.float64]
Positions = NDArray[np.intp]


@dataclass
class _Cols:
    """One upstream's pairs as arrays, in the group's order (NaN: not recorded)."""

    ts: Floats
    request: NDArray[np.int32]  # the request's code, the same in every upstream
    cand_ok: NDArray[np.bool_]
    prim_ok: NDArray[np.bool_]
    cand_latency: Floats
    prim_latency: Floats
    cand_ttft: Floats
    prim_ttft: Floats
    cand_retried: NDArray[np.bool_]
    prim_retried: NDArray[np.bool_]
    cand_cost: Floats
    prim_cost: Floats


_VALUES_KEPT = 4


@dataclass
class _Ctx:
    cfg: Report
    prices: PriceTable
    redactor: Redactor
    ds: Dataset
    store: PairStore
    groups: dict[str, PairView]  # upstream -> its pairs
    control: str | None
    _cols: dict[str, _Cols] = field(default_factory=dict)
    # The last few value arrays read (a figure reads a scorer's two or three sides, again
    # and again): keeping every scorer's of an upstream held ~100 MB at a million pairs.
    _values: OrderedDict[tuple[str, str, str], Floats] = field(default_factory=OrderedDict)
    _index: dict[str, dict[str, int]] = field(default_factory=dict)
    _clusters: dict[str, list[str | None] | None] = field(default_factory=dict)

    @property
    def kw(self) -> dict[str, Any]:
        return {
            "confidence": self.cfg.confidence,
            "resamples": self.cfg.bootstrap_resamples,
            "seed": self.cfg.seed,
        }

    def info(self, scorer: str) -> ScorerInfo:
        known = self.ds.scorer_info.get(scorer)
        return known if known is not None else info_of(scorer)

    def cols(self, upstream: str) -> _Cols:
        """The upstream's pairs as arrays (built once: the figures read them many times)."""
        got = self._cols.get(upstream)
        if got is not None:
            return got
        view = self.groups[upstream]
        store = self.store
        c, q = view.cand, view.prim
        got = self._cols[upstream] = _Cols(
            ts=store.ts[view.at],
            request=store.request[view.at],
            cand_ok=c.error < 0,
            prim_ok=q.error < 0,
            cand_latency=c.latency,
            prim_latency=q.latency,
            cand_ttft=c.ttft,
            prim_ttft=q.ttft,
            cand_retried=c.attempts > 1,
            prim_retried=q.attempts > 1,
            cand_cost=sides_cost(self.prices, store, c),
            prim_cost=sides_cost(self.prices, store, q),
        )
        return got

    def cluster_labels(self, upstream: str) -> list[str | None] | None:
        """Each of the upstream's pairs' cluster label (None: no pair has one). Apart from
        cols(): the quality figures need only these, and gathering every side's column
        for them held ~200 MB more at a million pairs while the scores were resampled."""
        if upstream in self._clusters:
            return self._clusters[upstream]
        store = self.store
        codes = store.cluster[self.groups[upstream].at]
        labels: list[str | None] | None = None
        if np.any(codes >= 0):
            names = store.clusters
            labels = [names[k] if k >= 0 else None for k in codes.tolist()]
        self._clusters[upstream] = labels
        return labels

    def requests(self, upstream: str) -> NDArray[np.int32]:
        """The request codes of the upstream's pairs (without gathering all its arrays:
        a candidate reads only these, and values, of the control)."""
        got = self._cols.get(upstream)
        if got is not None:
            return got.request
        return self.store.request[self.groups[upstream].at]

    def index(self, upstream: str) -> dict[str, int]:
        """request_id -> the position of its pair among the upstream's."""
        got = self._index.get(upstream)
        if got is None:
            ids = self.groups[upstream].request_ids()
            got = self._index[upstream] = {r: i for i, r in enumerate(ids)}
        return got

    def clusters(self, upstream: str, ids: Sequence[str]) -> list[str | None] | None:
        """Cluster labels of these requests (None when none has one: independent)."""
        every = self.cluster_labels(upstream)
        if every is None:
            return None
        index = self.index(upstream)
        labels = [every[index[r]] for r in ids]
        return labels if any(c is not None for c in labels) else None

    def clusters_at(self, upstream: str, at: Positions) -> list[str | None] | None:
        """Cluster labels of the upstream's pairs at these positions (None: independent)."""
        every = self.cluster_labels(upstream)
        if every is None:
            return None
        labels = [every[i] for i in at.tolist()]
        return labels if any(c is not None for c in labels) else None

    def score(self, upstream: str, j: int, scorer: str, side: str) -> ScoreRow | None:
        """The score of the upstream's j-th pair (by position: no index of every pair id)."""
        table = self.ds.scores
        if isinstance(table, ScoreTable):
            return table.row_at(int(self.positions(upstream)[j]), scorer, side)
        got: ScoreRow | None = table.get((self.groups[upstream].pair_id(j), scorer, side))
        return got

    def forget(self, upstream: str) -> None:
        """Drop what was gathered for an upstream whose figures are done."""
        self._cols.pop(upstream, None)
        self._index.pop(upstream, None)
        self._clusters.pop(upstream, None)
        for key in [k for k in self._values if k[0] == upstream]:
            del self._values[key]
        view = self.groups[upstream]
        self.groups[upstream] = PairView(view.store, view.at)

    def value(self, pair_id: str, scorer: str, side: str) -> float | None:
        row = self.ds.scores.get((pair_id, scorer, side))
        if row is None:
            return None
        if (
            row.value is None
            and row.label in JUDGE_LABELS
            and self.info(scorer).pair == "preference"
        ):
            return JUDGE_LABELS[row.label]
        return row.value

    def value_array(self, upstream: str, scorer: str, side: str) -> Floats:
        """This upstream's values of a scorer and side in its pairs' order, NaN where not
        scored; read as arrays from a ScoreTable (a report asks for millions of them)."""
        key = (upstream, scorer, side)
        got = self._values.get(key)
        if got is not None:
            self._values.move_to_end(key)
            return got
        view = self.groups[upstream]
        table = self.ds.scores
        if not isinstance(table, ScoreTable):
            got = np.array(
                [
                    math.nan if (v := self.value(pid, scorer, side)) is None else v
                    for pid in view.pair_ids()
                ],
                dtype=np.float64,
            )
        else:
            pos = self.positions(upstream)
            preference = self.info(scorer).pair == "preference"
            got = table.values_at(scorer, side, pos, JUDGE_LABELS if preference else None)
        self._values[key] = got
        if len(self._values) > _VALUES_KEPT:
            self._values.popitem(last=False)
        return got

    def values(self, upstream: str, scorer: str, side: str) -> dict[str, float | None]:
        """request_id -> this upstream's value of a scorer and side (None: not scored)."""
        got = self.value_array(upstream, scorer, side).tolist()
        return {
            r: None if v != v else v  # NaN: no score
            for r, v in zip(self.groups[upstream].request_ids(), got, strict=True)
        }

    def positions(self, upstream: str) -> NDArray[np.intp]:
        """The upstream's pairs' positions in the ScoreTable: the store's own when the
        table was made over the store's pairs (load does), else looked up by pair id."""
        table = self.ds.scores
        assert isinstance(table, ScoreTable)
        view = self.groups[upstream]
        if table.ids is self.store.pair_ids:
            return view.at
        return table.positions(view.pair_ids())

    def aligned(self, values: Floats, source: str, upstream: str) -> Floats:
        """``source``'s values (in its pairs' order) on ``upstream``'s pairs, by request."""
        src, dst = self.requests(source), self.requests(upstream)
        size = max(int(src.max(initial=-1)), int(dst.max(initial=-1))) + 1
        by_request = np.full(size, np.nan)
        by_request[src] = values
        return by_request[dst]


def _arr(values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(values, dtype=np.float64)


def _hist(values: Sequence[float] | Floats) -> list[int]:
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=HIST_EDGES)
    return [int(c) for c in counts]


def _percentiles(values: Sequence[float] | Floats) -> list[float] | None:
    """101 percentiles: enough to draw a distribution (ECDF) without the raw data."""
    if len(values) == 0:
        return None
    return [float(v) for v in np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, 101))]


# -- quality ------------------------------------------------------------------------------


@dataclass
class _Series:
    """A scorer's values for one upstream: candidate x and baseline b, aligned by request.
    Positions are into the upstream's pairs (``ctx.groups[upstream]``)."""

    mode: str  # per_side | pair
    baseline: str  # primary | control | reference
    x_all: Floats  # the candidate's value of every scored pair, at x_at
    x_at: Positions
    base_all: Floats  # every baseline value (when the baseline is data; the control's own)
    base_on: Floats  # the baseline's value on each of the upstream's pairs (NaN: none)
    x: Floats  # paired: the candidate's and the baseline's values at ``at``
    b: Floats
    at: Positions


def _series(ctx: _Ctx, upstream: str, scorer: str) -> _Series | None:
    cand = ctx.value_array(upstream, scorer, "candidate")
    prim = ctx.value_array(upstream, scorer, "primary")
    has_c, has_p = ~np.isnan(cand), ~np.isnan(prim)
    both = has_c & has_p
    if both.any():
        return _Series(
            "per_side",
            "primary",
            cand[has_c],
            np.flatnonzero(has_c),
            prim[has_p],
            prim,
            cand[both],
            prim[both],
            np.flatnonzero(both),
        )
    pair_vals = ctx.value_array(upstream, scorer, "pair")
    has_x = ~np.isnan(pair_vals)
    if not has_x.any():
        return None
    x_all, x_at = pair_vals[has_x], np.flatnonzero(has_x)
    control = ctx.control
    if control is not None and control != upstream:
        ctl = ctx.value_array(control, scorer, "pair")
        on = ctx.aligned(ctl, control, upstream)
        paired = has_x & ~np.isnan(on)
        if paired.any():
            return _Series(
                "pair",
                "control",
                x_all,
                x_at,
                ctl[~np.isnan(ctl)],
                on,
                pair_vals[paired],
                on[paired],
                np.flatnonzero(paired),
            )
    ref = reference_value(ctx.info(scorer))
    return _Series(
        "pair",
        "reference",
        x_all,
        x_at,
        np.zeros(0),
        np.full(len(pair_vals), np.nan),
        x_all,
        np.full(len(x_all), ref),
        x_at,
    )


def _versus_control(ctx: _Ctx, upstream: str, scorer: str, series: _Series) -> Estimate | None:
    """Per-side scorers: candidate minus control on the same requests."""
    control = ctx.control
    if series.mode != "per_side" or control is None or control == upstream:
        return None
    ctl = ctx.aligned(ctx.value_array(control, scorer, "candidate"), control, upstream)
    on = ctl[series.x_at]
    keep = ~np.isnan(on)
    if int(keep.sum()) < 2:
        return None
    at = series.x_at[keep]
    return _mean_diff(series.x_all[keep], on[keep], ctx.clusters_at(upstream, at), ctx.kw)


def _worst(ctx: _Ctx, upstream: str, scorer: str, series: _Series) -> list[Json]:
    k = ctx.cfg.worst_examples
    if k == 0:
        return []
    view = ctx.groups[upstream]
    x, at = series.x_all, series.x_at
    base = series.base_on[at]
    deficit = np.where(np.isnan(base), 0.0, x - base)
    # The k lowest by (value, deficit, pair_id): numpy narrows them down to the ties of
    # the k-th, which are ordered by pair_id in Python.
    chosen = np.arange(len(x))
    if len(x) > k:
        kth = np.lexsort((deficit, x))[k - 1]
        chosen = np.flatnonzero((x < x[kth]) | ((x == x[kth]) & (deficit <= deficit[kth])))
    # Keys made one at a time and k kept (nsmallest is sorted()[:k]): the ties can be
    # a large part of a million pairs, and a key tuple each was the report's peak memory.
    xs, ds, ats = x[chosen], deficit[chosen], at[chosen]
    picked = heapq.nsmallest(
        k, range(len(chosen)), key=lambda j: (float(xs[j]), float(ds[j]), view.pair_id(int(ats[j])))
    )
    order = [int(chosen[j]) for j in picked]
    red = ctx.redactor.text
    out = []
    rows = ctx.store.rows([int(view.at[at[i]]) for i in order])  # texts read for these only
    for i, p in zip(order, rows, strict=True):
        side = "pair" if series.mode == "pair" else "candidate"
        score = ctx.score(upstream, int(at[i]), scorer, side)
        b = float(base[i])
        out.append(
            {
                "pair_id": p.pair_id,
                "request_id": p.request_id,
                "ts": _iso(p.ts),
                "value": float(x[i]),
                "baseline_value": None if math.isnan(b) else b,
                "label": score.label if score else None,
                "explanation": red(score.explanation) if score else "",
                "prompt": red(p.prompt),
                "primary_output": red(p.primary.text),
                "candidate_output": red(p.candidate.text),
            }
        )
    return out


def _judge(ctx: _Ctx, upstream: str, series: _Series, scorer: str = JUDGE_PAIRWISE) -> Json:
    view = ctx.groups[upstream]
    names = ("win", "tie", "loss")
    table = ctx.ds.scores
    if isinstance(table, ScoreTable):
        positions = ctx.positions(upstream)
        label = table.label_index(scorer, "pair", positions[series.x_at], names)
    else:
        label = np.array(
            [
                names.index(row.label) if row and row.label in names else -1
                for i in series.x_at.tolist()
                for row in [table.get((view.pair_id(i), scorer, "pair"))]
            ],
            dtype=np.intp,
        )
    # A score without one of the labels: its value decides.
    x = series.x_all
    by_value = np.where(x > 0.5, 0, np.where(x < 0.5, 2, 1))
    label = np.where(label >= 0, label, by_value)
    counts = dict(zip(names, np.bincount(label, minlength=3).tolist(), strict=True))
    n = sum(counts.values())
    conf = ctx.cfg.confidence
    decided = counts["win"] + counts["loss"]
    return {
        **{k: stats.wilson(v, n, conf).as_dict() for k, v in counts.items()},
        "counts": counts,
        # Sign test of wins against losses (ties left out): exact binomial.
        "sign_test_p": stats.binom_two_sided(counts["win"], decided),
    }


def _paired_stats(ma: Any, mb: Any) -> Any:
    return np.stack([ma, mb, ma - mb, stats.ratio(ma, mb) - 1.0], axis=1)


# Every bootstrapped figure here is built from means: the Poisson bootstrap over the units'
# sums (stats.bootstrap_means) gives it at a cost linear in the pairs (docs/report.md).
def _mean(x: Any, kw: dict[str, Any]) -> Estimate:
    return stats.bootstrap_means(lambda m: m, x, **kw)[0]


def _mean_diff(x: Any, y: Any, clusters: Any, kw: dict[str, Any]) -> Estimate:
    return stats.bootstrap_means(lambda a, b: a - b, x, y, clusters=clusters, **kw)[0]


def quality_block(ctx: _Ctx, upstream: str, scorer: str) -> Json | None:
    series = _series(ctx, upstream, scorer)
    if series is None or not len(series.x):
        return None
    kw = ctx.kw
    info = ctx.info(scorer)
    x, b, x_all = series.x, series.b, series.x_all
    clusters = ctx.clusters_at(upstream, series.at)
    # One resampling for the four paired statistics: the same draws, a quarter of the work.
    mean_x, mean_b, diff, rel = stats.bootstrap_means(_paired_stats, x, b, clusters=clusters, **kw)
    if len(series.x_all) != len(x):
        mean_x = _mean(x_all, kw)
    if len(series.base_all) and len(series.base_all) != len(b):
        mean_b = _mean(series.base_all, kw)
    vs_control = _versus_control(ctx, upstream, scorer, series)
    sd = float(np.std(x - b, ddof=1)) if len(x) > 1 else math.nan
    max_drop = ctx.cfg.rules.quality_max_drop
    base_mean = float(b.mean())
    needed = (
        stats.pairs_for_noninferiority(sd, max_drop * base_mean, ctx.cfg.confidence, ctx.cfg.power)
        if max_drop and base_mean > 0
        else None
    )
    meaning = "per_side" if series.mode == "per_side" else info.pair
    # Independent units: clusters, each unlabelled pair counting as its own.
    units = (
        len({c for c in clusters if c is not None}) + clusters.count(None) if clusters else len(x)
    )
    block: Json = {
        "scorer": scorer,
        "mode": series.mode,
        "baseline": series.baseline,
        # What the comparison means: per_side, agreement (with the primary), preference.
        "meaning": meaning,
        "higher_is_better": info.higher_is_better,
        # Agreement against the reference 1.0 cannot tell nondeterminism from regression.
        "readable": not (series.baseline == "reference" and meaning == "agreement"),
        "reliable": reliable(x, b, rel, units, ctx.cfg.rules.min_pairs),
        "n": len(series.x_all),
        "n_paired": len(x),
        "clusters": units if clusters else None,
        "candidate_mean": mean_x.as_dict(),
        "baseline_mean": mean_b.as_dict(),
        "difference": diff.as_dict(),
        "relative_difference": rel.as_dict(),
        "versus_control": vs_control.as_dict() if vs_control else None,
        "significant": stats.significant(diff, vs_control),
        "noise_floor": None,  # filled in from the control's row
        "sd_difference": None if math.isnan(sd) else sd,
        "pairs_needed": needed,
        "mcnemar": None,
        "judge": None,
        "tails": stats.tail_summary(x_all, ctx.cfg.score_floor, ctx.cfg.confidence),
        "baseline_tails": (
            stats.tail_summary(series.base_all, ctx.cfg.score_floor, ctx.cfg.confidence)
            if len(series.base_all)
            else None
        ),
        "histogram": {
            "edges": HIST_EDGES,
            "candidate": _hist(x_all),
            "baseline": _hist(series.base_all) if len(series.base_all) else None,
        },
        "worst": _worst(ctx, upstream, scorer, series),
    }
    if series.baseline != "reference" and stats.is_binary(x) and stats.is_binary(b):
        block["mcnemar"] = stats.mcnemar_paired(x, b).as_dict()
    if info.pair == "preference" and series.mode == "pair":
        block["judge"] = _judge(ctx, upstream, series, scorer)
    if scorer == HUMAN_PAIRWISE:
        block["agreement"] = _agreement(ctx, upstream)
    return block


# An interval is called reliable (may decide a verdict) with this many pairs that differ
# and this many independent units (pairs, or clusters): below them the bootstrap's
# distribution is too lumpy to hold its coverage (benchmarks/validity, docs/report.md).
MIN_DISCORDANT = 10
MIN_EVENTS = 10
MIN_CLUSTERS = 20


def reliable(x: Any, b: Any, rel: Estimate, units: int, min_pairs: int) -> bool:
    if len(x) < min_pairs or not (math.isfinite(rel.lo) and math.isfinite(rel.hi)):
        return False
    if rel.hi <= rel.lo:  # zero width: no evidence, not certainty
        return False
    if int(np.count_nonzero(x != b)) < MIN_DISCORDANT:
        return False
    if stats.is_binary(x) and stats.is_binary(b):
        # np >= 10 on both sides of both rates: rarer outcomes than that make the interval
        # of a ratio undercover (4% vs 2% at 300 pairs: 91%).
        k_x, k_b = int(x.sum()), int(b.sum())
        if min(k_x, k_b, len(x) - k_x, len(b) - k_b) < MIN_EVENTS:
            return False
    return units >= min(MIN_CLUSTERS, min_pairs)


def _agreement(ctx: _Ctx, upstream: str) -> Json | None:
    """Cohen's kappa of the judge's and the reviewers' win/tie/loss on the pairs both rated."""

    if (HUMAN_PAIRWISE, "pair") not in score_kinds(ctx.ds.scores):
        return None

    def label(j: int, scorer: str) -> str | None:
        row = ctx.score(upstream, j, scorer, "pair")
        if row is None:
            return None
        if row.label in JUDGE_LABELS:
            return row.label
        if row.value is None:
            return None
        return "win" if row.value > 0.5 else "loss" if row.value < 0.5 else "tie"

    judge, human = [], []
    for at in range(len(ctx.groups[upstream])):
        j, h = label(at, JUDGE_PAIRWISE), label(at, HUMAN_PAIRWISE)
        if j is not None and h is not None:
            judge.append(j)
            human.append(h)
    if not judge:
        return None
    kappa = stats.cohens_kappa(judge, human, ctx.cfg.confidence)
    same = sum(a == b for a, b in zip(judge, human, strict=True))
    return {"with": JUDGE_PAIRWISE, "kappa": kappa.as_dict(), "raw_agreement": same / len(judge)}


# -- safety -------------------------------------------------------------------------------


def _flag_test(
    ctx: _Ctx, upstream: str, ids: list[str], cand: list[float], base: list[float]
) -> tuple[Estimate, stats.McNemar, float, float]:
    """Candidate flags vs baseline flags on the same requests: the difference's interval,
    McNemar's test and the one-sided p-values of "more flags" and "fewer flags". With
    clustered requests the p-values come from the cluster bootstrap's interval (McNemar
    assumes independent pairs)."""
    clusters = ctx.clusters(upstream, ids)
    conf = ctx.cfg.confidence
    # Flags are rare events: a score interval (a bootstrap of 0/1 values covered 92% at 100
    # pairs of 3% vs 5% flags), unless requests are clustered.
    diff = (
        _mean_diff(cand, base, clusters, ctx.kw)
        if clusters is not None
        else stats.newcombe_difference(int(sum(cand)), len(cand), int(sum(base)), len(base), conf)
    )
    test = stats.mcnemar_paired(cand, base)
    if clusters is not None:
        return (
            diff,
            test,
            stats.p_beyond(diff, 0.0, True, conf),
            stats.p_beyond(diff, 0.0, False, conf),
        )
    # mcnemar_paired(first, second): b = first 1 / second 0 (here: flag on the candidate only).
    n = test.b + test.c
    return diff, test, stats.binom_upper_tail(test.b, n), stats.binom_upper_tail(test.c, n)


def safety_block(ctx: _Ctx, upstream: str, scorer: str) -> Json | None:
    """Flag rates, candidate vs primary, paired. ``p_worse``/``p_better`` are one-sided
    p-values the verdict corrects across the gate; ``worse``/``better`` read them alone."""
    info = ctx.info(scorer)
    conf = ctx.cfg.confidence
    alpha = (1 - conf) / 2
    side = "candidate"
    flags = ctx.values(upstream, scorer, "candidate")
    if all(v is None for v in flags.values()):
        side = "pair"
        flags = ctx.values(upstream, scorer, "pair")
    cand = {r: float(v >= 0.5) for r, v in flags.items() if v is not None}
    if not cand:
        return None
    block: Json = {
        "scorer": scorer,
        "side": side,
        "harm": info.harm,
        "n": len(cand),
        "rate": stats.wilson(int(sum(cand.values())), len(cand), conf).as_dict(),
        "primary_rate": None,
        "difference": None,
        "mcnemar": None,
        "versus_control": None,
        "p_worse": None,
        "p_better": None,
        "worse": False,
        "better": False,
    }
    prim: dict[str, float] = {}
    if side == "pair" and info.pair == "flag" and info.reverse_label:
        # A comparison flag (e.g. over_refusal: the candidate refused what the primary
        # answered) and its reverse label (the primary refused what the candidate answered)
        # are the two discordant cells of a paired test.
        index = ctx.index(upstream)
        for r in cand:
            row = ctx.score(upstream, index[r], scorer, "pair")
            prim[r] = float(row is not None and row.label == info.reverse_label)
    else:
        for r, v in ctx.values(upstream, scorer, "primary").items():
            if v is not None:
                prim[r] = float(v >= 0.5)
    ids = [r for r in cand if r in prim]
    if not ids:
        return block
    c = [cand[r] for r in ids]
    pv = [prim[r] for r in ids]
    diff, test, p_worse, p_better = _flag_test(ctx, upstream, ids, c, pv)
    block["primary_rate"] = stats.wilson(int(sum(pv)), len(pv), conf).as_dict()
    block["difference"] = diff.as_dict()
    block["mcnemar"] = test.as_dict()
    control = ctx.control
    if side != "pair" and control is not None and control != upstream:
        # Worse than the primary and worse than the control asked again (both must hold:
        # the larger p-value tests the two together).
        cv = ctx.values(control, scorer, side)
        cids = [r for r in ids if cv.get(r) is not None]
        if cids:
            cc = [cand[r] for r in cids]
            kk = [float(cv[r] >= 0.5) for r in cids]  # type: ignore[operator]
            _, vs, pw, pb = _flag_test(ctx, upstream, cids, cc, kk)
            block["versus_control"] = vs.as_dict()
            p_worse, p_better = max(p_worse, pw), max(p_better, pb)
    block["p_worse"] = p_worse
    block["p_better"] = p_better
    block["worse"] = bool(p_worse < alpha)
    block["better"] = bool(p_better < alpha)
    return block


# -- operations ---------------------------------------------------------------------------


def sides_cost(prices: PriceTable, store: PairStore, sides: Sides | SidesAt) -> Floats:
    """Each side's cost (as side_cost), NaN when not known: the record's own cost, priced
    from the tokens only where a record has none."""
    cost: Floats = sides.cost
    unknown = np.flatnonzero(np.isnan(cost))
    if not len(unknown):
        return cost
    cost = cost.copy()
    tokens = ~(np.isnan(sides.input_tokens[unknown]) & np.isnan(sides.output_tokens[unknown]))
    for i in unknown[tokens].tolist():
        usage = Usage(
            _whole(sides.input_tokens[i]),
            _whole(sides.output_tokens[i]),
            _whole(sides.cached_tokens[i]),
        )
        for code in (int(sides.model[i]), int(sides.upstream[i])):
            name = store.name(code)
            got = prices.cost(name, usage) if name is not None else None
            if got is not None:
                cost[i] = got
                break
    return cost


def _whole(v: float) -> int | None:
    return None if v != v else int(v)


def side_cost(prices: PriceTable, side: SideRow) -> float | None:
    """The record's own cost, else tokens x the pricing table (answer's model, then the
    upstream name); None when neither is known."""
    if side.cost_usd is not None:
        return side.cost_usd
    if side.input_tokens is None and side.output_tokens is None:
        return None
    usage = Usage(side.input_tokens, side.output_tokens, side.cached_input_tokens)
    for name in (side.model, side.upstream):
        cost = prices.cost(name, usage)
        if cost is not None:
            return cost
    return None


def _quantile_rows(
    ctx: _Ctx, cand: Sequence[float] | Floats, prim: Sequence[float] | Floats, qs: Sequence[float]
) -> dict[str, Json]:
    if len(cand) < 2:
        return {}
    rows = {}
    for q, (c, p, r) in zip(qs, stats.quantile_comparison(cand, prim, qs, **ctx.kw), strict=True):
        rows[q_label(q)] = {
            "q": q,
            "candidate": c.as_dict(),
            "primary": p.as_dict(),
            "ratio": r.as_dict(),
            "reliable": len(cand) * (1 - q) >= MIN_TAIL_OBSERVATIONS,
        }
    return rows


def _cost_stats(ma: Any, mb: Any) -> Any:
    return np.stack([ma, mb, stats.ratio(ma, mb)], axis=1)


def operations_block(ctx: _Ctx, upstream: str) -> Json:
    view = ctx.groups[upstream]
    cols = ctx.cols(upstream)
    conf, kw = ctx.cfg.confidence, ctx.kw
    n = len(view)
    c_fail = (~cols.cand_ok).astype(np.float64)
    p_fail = (~cols.prim_ok).astype(np.float64)
    n_c_fail, n_p_fail = int(c_fail.sum()), int(p_fail.sum())
    fail_clusters = ctx.cluster_labels(upstream)
    # Failures are rare events: a score interval, unless requests are clustered (then the
    # cluster bootstrap, which independence-based intervals cannot replace).
    failure_difference = (
        _mean_diff(c_fail, p_fail, fail_clusters, kw)
        if fail_clusters is not None
        else stats.newcombe_difference(n_c_fail, n, n_p_fail, n, conf)
    )
    errors: dict[str, int] = defaultdict(int)
    for code in view.cand.error[~cols.cand_ok].tolist():
        error = ctx.store.name(code)
        if error:
            errors[error] += 1
    ok_mask = cols.cand_ok & cols.prim_ok
    ok_at = np.flatnonzero(ok_mask)
    qs = sorted({*LATENCY_QS, ctx.cfg.rules.latency_quantile})
    lat_c, lat_p = cols.cand_latency[ok_mask], cols.prim_latency[ok_mask]
    streams = ok_mask & ~np.isnan(cols.cand_ttft) & ~np.isnan(cols.prim_ttft)
    ttft_c, ttft_p = cols.cand_ttft[streams], cols.prim_ttft[streams]

    def tokens(sides: Sides | SidesAt) -> Json:
        at = ok_at[~np.isnan(sides.output_tokens[ok_at])]
        if not len(at):
            return {"input": None, "output": None, "estimated_share": None, "n": 0}
        return {
            "input": float(np.mean(np.nan_to_num(sides.input_tokens[at], nan=0.0))),
            "output": float(np.mean(sides.output_tokens[at])),
            "estimated_share": int(np.count_nonzero(sides.estimated[at])) / len(at),
            "n": len(at),
        }

    cc_all, pc_all = cols.cand_cost[ok_mask], cols.prim_cost[ok_mask]
    priced_mask = ~np.isnan(cc_all) & ~np.isnan(pc_all)
    unpriced_models = sorted(
        {
            ctx.store.name(int(sides.model[i])) or ctx.store.name(int(sides.upstream[i])) or ""
            for i in ok_at[~priced_mask].tolist()
            for sides, cost in ((view.cand, cols.cand_cost[i]), (view.prim, cols.prim_cost[i]))
            if math.isnan(cost)
        }
    )
    n_priced = int(priced_mask.sum())
    cost: Json = {
        "n": n_priced,
        "unpriced": len(ok_at) - n_priced,
        "unpriced_models": unpriced_models,
    }
    if n_priced >= 2:
        cm, pm, ratio = stats.bootstrap_means(
            _cost_stats,
            cc_all[priced_mask],
            pc_all[priced_mask],
            clusters=ctx.clusters_at(upstream, ok_at[priced_mask]),
            **kw,
        )
        cost.update(
            candidate_per_request=cm.as_dict(),
            primary_per_request=pm.as_dict(),
            candidate_per_1k=1000 * cm.value,
            primary_per_1k=1000 * pm.value,
            ratio=ratio.as_dict(),
        )
    return {
        "pairs": n,
        "failure": stats.wilson(n_c_fail, n, conf).as_dict(),
        "primary_failure": stats.wilson(n_p_fail, n, conf).as_dict(),
        "failure_difference": failure_difference.as_dict(),
        # The primary's failures over the candidate's: > 1 means fewer failures.
        "failure_ratio": stats.rate_ratio(n_p_fail, n_c_fail, n, conf).as_dict(),
        "errors": dict(sorted(errors.items())),
        "retry": stats.wilson(int(cols.cand_retried.sum()), n, conf).as_dict(),
        "primary_retry": stats.wilson(int(cols.prim_retried.sum()), n, conf).as_dict(),
        "latency_n": len(ok_at),
        "latency": _quantile_rows(ctx, lat_c, lat_p, qs),
        "ttft_n": int(streams.sum()),
        "ttft": _quantile_rows(ctx, ttft_c, ttft_p, TTFT_QS),
        "latency_percentiles": {"candidate": _percentiles(lat_c), "primary": _percentiles(lat_p)},
        "tokens": {
            "candidate": tokens(view.cand),
            "primary": tokens(view.prim),
        },
        "cost": cost,
    }


# -- over time ----------------------------------------------------------------------------


def _bucket_width(first: float, last: float, buckets: int) -> int:
    span = max(last - first, 1.0) / buckets
    for step in _NICE_STEPS:
        if step >= span:
            return step
    return int(math.ceil(span / 86400) * 86400)


def timeline_block(
    ctx: _Ctx, upstream: str, headline: str | None, start: float, width: int
) -> list[Json]:
    cols = ctx.cols(upstream)
    if not len(cols.ts):
        return []
    # The pairs are in time order: each bucket is one slice of them.
    bucket = ((cols.ts - start) // width).astype(np.int64)
    names, first = np.unique(bucket, return_index=True)
    bounds = [*first.tolist(), len(bucket)]
    series = _series(ctx, upstream, headline) if headline else None
    x_on = base_on = None
    if series is not None:
        x_on = np.full(len(bucket), np.nan)
        x_on[series.x_at] = series.x_all
        base_on = series.base_on
    out = []
    for i, lo, hi in zip(names.tolist(), bounds[:-1], bounds[1:], strict=True):
        ok = cols.cand_latency[lo:hi][cols.cand_ok[lo:hi]]
        okp = cols.prim_latency[lo:hi][cols.prim_ok[lo:hi]]
        quality = base = None
        if x_on is not None and base_on is not None:
            xs, bs = x_on[lo:hi], base_on[lo:hi]
            xs, bs = xs[~np.isnan(xs)], bs[~np.isnan(bs)]
            quality = float(np.mean(xs)) if len(xs) else None
            base = float(np.mean(bs)) if len(bs) else None
        out.append(
            {
                "start": _iso(start + i * width),
                "pairs": hi - lo,
                "failure_rate": int(np.count_nonzero(~cols.cand_ok[lo:hi])) / (hi - lo),
                "latency_p50": float(np.quantile(ok, 0.5)) if len(ok) else None,
                "latency_p95": float(np.quantile(ok, 0.95)) if len(ok) else None,
                "primary_latency_p95": float(np.quantile(okp, 0.95)) if len(okp) else None,
                "quality": quality,
                "baseline_quality": base,
            }
        )
    return out


# -- segments -----------------------------------------------------------------------------

SEGMENT_KEYS = ("task", "route", "model", "input_tokens_bucket", "language")
# header:NAME: a request header the pair record carries (its ``headers`` object).
HEADER_PREFIX = "header:"
OTHER = "other"
NOT_RECORDED = "(not recorded)"
# Bounds of the input_tokens_bucket segments: the primary's input tokens of the request.
TOKEN_BUCKETS = (256, 1024, 4096, 16384)


def check_segment(key: str) -> str:
    """The segment key as the report uses it; ValueError naming the key when unknown."""
    if key in SEGMENT_KEYS:
        return key
    if key.startswith(HEADER_PREFIX) and key[len(HEADER_PREFIX) :].strip():
        return HEADER_PREFIX + key[len(HEADER_PREFIX) :].strip().lower()
    known = ", ".join((*SEGMENT_KEYS, "header:NAME"))
    raise ValueError(f"unknown segment {key!r} (one of {known})")


def _token_bucket(tokens: int | None) -> str:
    if tokens is None:
        return "unknown"
    low = 0
    for bound in TOKEN_BUCKETS:
        if tokens < bound:
            return f"{low}-{bound - 1}"
        low = bound
    return f">={low}"


def segment_labels(ctx: _Ctx, upstream: str, key: str) -> list[str]:
    """Each of the upstream's pairs' segment: every upstream's pair of one request falls in
    the same one."""
    view, store = ctx.groups[upstream], ctx.store

    def named(codes: NDArray[np.int32]) -> list[str]:
        names = {c: store.name(c) or "(none)" for c in np.unique(codes).tolist()}
        return [names[c] for c in codes.tolist()]

    if key == "task":
        return named(store.task[view.at])
    if key == "route":
        return named(store.route[view.at])
    if key == "model":
        return named(view.prim.model)
    if key == "input_tokens_bucket":
        return [_token_bucket(None if v != v else int(v)) for v in view.prim.input_tokens.tolist()]
    if key == "language":
        prompts = store.prompt_of_requests(view.at)
        seen: dict[str, str] = {}  # prompt -> its language: many requests share a prompt
        out = []
        for code in store.request[view.at].tolist():
            prompt = prompts[code]
            name = seen.get(prompt)
            if name is None:
                name = seen[prompt] = detect_language(prompt)
            out.append(name)
        return out
    if key.startswith(HEADER_PREFIX):
        name = key[len(HEADER_PREFIX) :]
        if name == TASK_HEADER:  # recorded as the pair's task
            return named(store.task[view.at])
        headers = store.headers
        out = []
        for i in view.at.tolist():
            got = headers.get(i)
            out.append(NOT_RECORDED if got is None else got.get(name) or "(none)")
        return out
    raise ValueError(f"unknown segment {key!r}")


def _restricted(ctx: _Ctx, requests: NDArray[np.int64]) -> _Ctx:
    """The context of these requests (their codes) only; what the parent has as arrays is
    sliced, not read from the pairs again."""
    sub = _Ctx(ctx.cfg, ctx.prices, ctx.redactor, ctx.ds, ctx.store, {}, ctx.control)
    keeps: dict[str, Positions] = {}
    member = np.zeros(len(ctx.store.request_ids), dtype=bool)
    member[requests] = True
    for u, view in ctx.groups.items():
        keep = keeps[u] = np.flatnonzero(member[ctx.store.request[view.at]])
        sub.groups[u] = view.sub(keep)
        cols = ctx._cols.get(u)
        if cols is not None:  # the cluster labels are read again from the store (cheap)
            sub._cols[u] = _Cols(**{f.name: getattr(cols, f.name)[keep] for f in fields(_Cols)})
    for (u, scorer, side), values in ctx._values.items():
        sub._values[(u, scorer, side)] = values[keeps[u]]
    return sub


def _segment_row(ctx: _Ctx, upstream: str, headline: str | None, name: str) -> Json:
    cols = ctx.cols(upstream)
    n, conf = len(ctx.groups[upstream]), ctx.cfg.confidence
    block = quality_block(ctx, upstream, headline) if headline and n else None
    ok = cols.cand_ok & cols.prim_ok
    cc, pc = cols.cand_cost, cols.prim_cost
    # Priced: both costs known and not zero.
    priced = ok & ~np.isnan(cc) & ~np.isnan(pc) & (cc != 0) & (pc != 0)
    cost_ratio = None
    if int(priced.sum()) >= 2:
        _, _, ratio = stats.bootstrap_means(
            _cost_stats,
            cc[priced],
            pc[priced],
            clusters=ctx.clusters_at(upstream, np.flatnonzero(priced)),
            **ctx.kw,
        )
        cost_ratio = ratio.as_dict()
    q = ctx.cfg.rules.latency_quantile
    latency = _quantile_rows(ctx, cols.cand_latency[ok], cols.prim_latency[ok], [q]).get(q_label(q))
    return {
        "segment": name,
        "pairs": n,
        "small": n < ctx.cfg.rules.min_pairs,
        "scorer": headline,
        "relative_difference": block["relative_difference"] if block else None,
        "difference": block["difference"] if block else None,
        "reliable": bool(block and block["reliable"]),
        "failure": stats.wilson(int(np.count_nonzero(~cols.cand_ok)), n, conf).as_dict(),
        "failure_difference": _failure_difference(ctx, upstream),
        "cost_ratio": cost_ratio,
        "latency_quantile": q_label(q),
        "latency_ratio": latency["ratio"] if latency else None,
        "latency_reliable": bool(latency and latency["reliable"]),
        "p_worse": None,
        "worse": False,
    }


def _failure_difference(ctx: _Ctx, upstream: str) -> Json | None:
    cols = ctx.cols(upstream)
    n = len(cols.ts)
    if not n:
        return None
    c = int(np.count_nonzero(~cols.cand_ok))
    p = int(np.count_nonzero(~cols.prim_ok))
    return stats.newcombe_difference(c, n, p, n, ctx.cfg.confidence).as_dict()


def segment_names(ctx: _Ctx, upstream: str, key: str) -> dict[str, NDArray[np.int64]]:
    """Segment -> its requests' codes. Header values are the caller's text: redacted."""
    labels = segment_labels(ctx, upstream, key)
    if key.startswith(HEADER_PREFIX):
        red = {name: ctx.redactor.text(name) for name in set(labels)}
        labels = [red[name] for name in labels]
    requests = ctx.store.request[ctx.groups[upstream].at].astype(np.int64)
    members: dict[str, list[int]] = defaultdict(list)
    for name, code in zip(labels, requests.tolist(), strict=True):
        members[name].append(code)
    return {name: np.unique(np.array(codes, np.int64)) for name, codes in members.items()}


def segments_block(ctx: _Ctx, upstream: str, headline: str | None, keys: Sequence[str]) -> Json:
    """The candidate's figures per segment of each key. Segments with fewer than
    ``min_pairs`` pairs are pooled into "other" (marked ``small`` if still too few). A
    segment is called worse than the primary only through Holm across every segment of
    every key: the weakest is picked among all of them, so all of them are the family."""
    out: Json = {}
    min_pairs, alpha = ctx.cfg.rules.min_pairs, (1 - ctx.cfg.confidence) / 2
    for key in keys:
        merged: dict[str, list[NDArray[np.int64]]] = {}
        for name, requests in sorted(segment_names(ctx, upstream, key).items()):
            target = name if len(requests) >= min_pairs else OTHER
            merged.setdefault(target, []).append(requests)
        rows = [
            _segment_row(_restricted(ctx, np.concatenate(parts)), upstream, headline, name)
            for name, parts in merged.items()
        ]
        for r in rows:
            rel = r["relative_difference"]
            if rel is not None and r["reliable"]:
                est = Estimate(rel["value"], rel["lo"], rel["hi"], rel["n"])
                r["p_worse"] = stats.p_beyond(est, 0.0, False, ctx.cfg.confidence)
        rows.sort(key=lambda r: (r["segment"] == OTHER, -r["pairs"], r["segment"]))
        out[key] = rows
    tested = [r for rows in out.values() for r in rows if r["p_worse"] is not None]
    for r, worse in zip(tested, stats.holm([r["p_worse"] for r in tested], alpha), strict=True):
        r["worse"] = worse
    return out


def weakest_line(segments: Json) -> str | None:
    """The verdict's line on the weakest segment: the lowest relative quality difference
    among the reliable ones, with its interval."""
    best: tuple[float, str, Json] | None = None
    for key, rows in segments.items():
        for r in rows:
            rel = r["relative_difference"]
            usable = r["reliable"] and rel and rel["value"] is not None
            if usable and (best is None or rel["value"] < best[0]):
                best = (rel["value"], key, r)
    if best is None:
        return None
    _, key, r = best
    rel = r["relative_difference"]
    interval = (
        f" [{rel['lo'] * 100:+.1f}%, {rel['hi'] * 100:+.1f}%]"
        if rel["lo"] is not None and rel["hi"] is not None
        else ""
    )
    tested = sum(r["p_worse"] is not None for rows in segments.values() for r in rows)
    family = (
        f"{len(segments[key])} {key} segments"
        if len(segments) == 1
        else f"{tested} segments of {', '.join(segments)}"
    )
    claim = (
        f"worse than the primary (Holm across the {family})"
        if r["worse"]
        else "not shown worse than the primary"
    )
    return (
        f"weakest {key}: {r['segment']}, {r['scorer']} {rel['value'] * 100:+.1f}%{interval} "
        f"on {r['pairs']} pairs, {claim}"
    )


# -- the report ---------------------------------------------------------------------------


def _names(store: PairStore, codes: NDArray[np.int32]) -> list[str]:
    """The distinct names of these codes, sorted, without None and empty ones."""
    return sorted(n for c in np.unique(codes).tolist() if (n := store.name(c)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _scorers(ctx: _Ctx) -> tuple[list[str], list[str]]:
    names = {scorer for (scorer, _) in score_kinds(ctx.ds.scores)}
    safety = sorted(s for s in names if ctx.info(s).kind == "safety")
    quality = sorted(
        (s for s in names if ctx.info(s).kind != "safety"),
        key=lambda s: (QUALITY_ORDER.index(s) if s in QUALITY_ORDER else len(QUALITY_ORDER), s),
    )
    return quality, safety


def build_report(
    ds: Dataset,
    cfg: Report,
    prices: PriceTable,
    redaction: Redaction | None = None,
    *,
    filters: Json | None = None,
    by: Sequence[str] = (),
) -> Json:
    by = tuple(dict.fromkeys(check_segment(key) for key in by))
    store = as_store(ds.pairs)
    # Probes are attacks, not traffic: they make the robustness section and stay out of the
    # quality, cost, latency and failure figures unless the filters asked for them.
    wanted_sources = set((filters or {}).get("sources") or ())
    is_probe = store.source == store.names.code("probe")
    probes = store.rows(np.flatnonzero(is_probe).tolist())
    traffic = np.arange(len(store)) if "probe" in wanted_sources else np.flatnonzero(~is_probe)
    # Each upstream's pairs, the upstreams in the order they first appear (as are the roles).
    codes = store.cand.upstream[traffic]
    found, first_at = np.unique(codes, return_index=True)
    groups: dict[str, PairView] = {}
    roles: dict[str, str] = {}
    for code, at in sorted(zip(found.tolist(), first_at.tolist(), strict=True), key=lambda x: x[1]):
        upstream = store.name(code) or ""
        groups[upstream] = store.view(traffic[codes == code])
        roles[upstream] = store.name(int(store.cand.role[traffic[at]])) or ""
    robust = robustness(probes, cfg)
    controls = sorted(u for u, r in roles.items() if r == "control")
    notes: list[str] = []
    if len(controls) > 1:
        notes.append(f"several controls ({', '.join(controls)}); {controls[0]} is the noise floor")
    control = controls[0] if controls else None
    if control is None and groups:
        notes.append("no control upstream: differences are not read against a noise floor")
    ctx = _Ctx(cfg, prices, Redactor(redaction or Redaction()), ds, store, groups, control)
    quality_scorers, safety_scorers = _scorers(ctx)
    wanted = [s for s in cfg.rules.quality_scorers if s in quality_scorers]
    missing = [s for s in cfg.rules.quality_scorers if s not in quality_scorers]
    if missing:
        notes.append(f"quality rule names scorers with no scores: {', '.join(missing)}")
    # The headline is the metric that can decide: agreement scores read against the
    # reference 1.0 (no control, no per-side values) go last.
    per_side = {scorer for (scorer, side) in score_kinds(ds.scores) if side != "pair"}

    def unreadable(name: str) -> bool:
        return control is None and ctx.info(name).pair == "agreement" and name not in per_side

    ranked = sorted(wanted or quality_scorers, key=unreadable)
    headline: str | None = ranked[0] if ranked else None
    first = float(store.ts[traffic].min()) if len(traffic) else 0.0
    last = float(store.ts[traffic].max()) if len(traffic) else 0.0
    width = _bucket_width(first, last, cfg.time_buckets)
    start = first - first % width

    # The control first: its numbers are the candidates' noise floor.
    order = ([control] if control else []) + sorted(u for u in groups if u != control)
    rows: dict[str, Json] = {}
    estimated: dict[str, float] = {}  # upstream -> share of answers with estimated tokens
    for upstream in order:
        quality = [b for s in quality_scorers if (b := quality_block(ctx, upstream, s))]
        if control is not None and upstream != control:
            floor = {b["scorer"]: b for b in rows[control]["quality"]}
            for b in quality:
                ref = floor.get(b["scorer"])
                if ref is not None:
                    b["noise_floor"] = {
                        "upstream": control,
                        "mode": ref["mode"],
                        "candidate_mean": ref["candidate_mean"],
                        "difference": ref["difference"],
                        "relative_difference": ref["relative_difference"],
                    }
        pairs = groups[upstream]
        models = _names(store, pairs.cand.model)
        row: Json = {
            "upstream": upstream,
            "role": roles[upstream],
            "models": models,
            "pairs": len(pairs),
            "first": _iso(float(store.ts[pairs.at[0]])),
            "last": _iso(float(store.ts[pairs.at[-1]])),
            "quality": quality,
            "safety": [b for s in safety_scorers if (b := safety_block(ctx, upstream, s))],
            "operations": operations_block(ctx, upstream),
            "robustness": robust.get(upstream),
            "timeline": timeline_block(ctx, upstream, headline, start, width),
        }
        row["verdict"] = decide(row, cfg) if roles[upstream] == "candidate" else None
        if by:
            row["segments"] = segments_block(ctx, upstream, headline, by)
        rows[upstream] = row
        # What was gathered is let go (the control's too: a candidate gathers again the
        # little of it that it reads), so one upstream's arrays are held at a time.
        ctx.forget(upstream)
        if control is not None:
            ctx.forget(control)
        trim_heap()
        tokens = row["operations"]["tokens"]
        estimated[upstream] = tokens["candidate"]["estimated_share"] or 0.0
        estimated["the primary"] = max(
            estimated.get("the primary", 0.0), tokens["primary"]["estimated_share"] or 0.0
        )
        for b in quality:
            if b.get("agreement"):
                k = b["agreement"]["kappa"]
                kappa = "n/a" if k["value"] is None else f"{k['value']:.2f}"
                ci = "" if k["lo"] is None else f" [{k['lo']:.2f}, {k['hi']:.2f}]"
                notes.append(
                    f"{upstream}: human vs {b['agreement']['with']} agreement, Cohen's kappa "
                    f"{kappa}{ci} on {k['n']} pairs"
                )

    for name, share in estimated.items():
        if share > 0.2:
            notes.append(
                f"token counts of {name} are estimated for {share:.0%} of answers (no usage "
                "reported, e.g. streams without include_usage): its cost figures are approximate"
            )
    candidates = [rows[u] for u in order if roles[u] == "candidate"]
    gate, gate_notes = finalise(candidates, cfg)
    for row in candidates:
        # finalise writes the secondary lines; the weakest segment's comes after them.
        line = weakest_line(row["segments"]) if by else None
        if line is not None:
            row["verdict"]["secondary"].append(line)
    notes += gate_notes
    primaries = sorted(
        {store.name(c) or "" for c in np.unique(store.prim.upstream[store.prim_of]).tolist()}
    )
    return {
        "schema": REPORT_SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {
            "pairs": ds.pair_files,
            "scores": ds.score_files,
            "pair_records": len(ds.pairs),
            "score_records": len(ds.scores),
            "skipped": dict(sorted(ds.skipped.items())),
        },
        "filters": filters or {},
        "window": {
            "first": _iso(first) if len(store) else None,
            "last": _iso(last) if len(store) else None,
            "bucket_s": width,
        },
        "settings": cfg.model_dump(mode="json"),
        "primary": {
            "upstreams": primaries,
            "models": _names(store, store.prim.model[store.prim_of]),
        },
        "control": control,
        "headline_scorer": headline,
        "scorers": {"quality": quality_scorers, "safety": safety_scorers},
        "candidates": candidates,
        "noise_floor": rows[control] if control else None,
        "gate": gate,
        "notes": notes,
    }
