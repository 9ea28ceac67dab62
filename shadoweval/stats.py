"""The statistics behind ``shadoweval report`` and the scorer's regression alarm.

Paired bootstrap confidence intervals, Wilson intervals for rates, McNemar's test for paired
binary outcomes, Cohen's kappa for rater agreement (judge vs human), tail quantiles, the
noise-floor rule, sample-size estimates, and an anytime-valid sequential test (a betting
e-process) for "the candidate is worse than its baseline by more than a relative margin".

Everything is deterministic given a seed. Bootstraps are vectorised with numpy and run in
chunks so memory stays bounded whatever the number of pairs.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from shadoweval.metrics import ScoreMetrics

Array = NDArray[np.float64]
# A statistic maps resampled arrays of shape (B, n) to shape (B,) or (B, k).
Statistic = Callable[..., NDArray[Any]]

# Resampled elements held in memory at once (B_chunk * n); about 32 MB of float64.
_MAX_ELEMENTS = 4_000_000
# The quantile bootstrap holds ~5 float64 (resamples x window units) arrays per chunk.
_MAX_QUANTILE_ELEMENTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with a two-sided confidence interval (``lo``/``hi`` may be nan)."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def halfwidth(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes(self, point: float) -> bool:
        """The interval lies entirely on one side of ``point``."""
        return bool(self.lo > point or self.hi < point)

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": _num(self.value), "lo": _num(self.lo), "hi": _num(self.hi), "n": self.n}


def _num(value: float) -> float | None:
    """JSON has no nan/inf: they become null."""
    return float(value) if math.isfinite(value) else None


# -- bootstrap ------------------------------------------------------------------------------


def _percentiles(
    point: NDArray[np.float64], parts: list[NDArray[np.float64]], confidence: float, n: int
) -> list[Estimate]:
    """Percentile intervals of the resampled statistics, one Estimate per column."""
    dist = np.concatenate(parts, axis=0)
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():
        # A resample can make a ratio undefined (x/0); those draws are left out, and a
        # statistic undefined in every draw gets a nan interval.
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanpercentile(dist, tail, axis=0)
        hi = np.nanpercentile(dist, 100 - tail, axis=0)
    return [Estimate(float(point[j]), float(lo[j]), float(hi[j]), n) for j in range(len(point))]


def bootstrap(
    statistic: Statistic,
    *samples: Sequence[float] | Array,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    clusters: Sequence[Hashable] | None = None,
) -> list[Estimate]:
    """Percentile bootstrap of ``statistic`` over aligned (paired) samples.

    All samples are resampled with the same indices, so pairing is kept: pass the candidate's
    and the primary's values of the same requests. ``statistic`` receives arrays of shape
    (B, n) and returns (B,) or (B, k); one :class:`Estimate` per output column.

    ``clusters`` (a label per element) makes it a cluster bootstrap: whole clusters are
    drawn with replacement, so requests of one session (or variants of one probe) move
    together and the interval is as wide as their correlation makes it. It is carried out by
    weighting each element by how often its cluster was drawn, rescaled so that a row's mean
    is the weighted mean: valid for statistics built from means (means, differences and
    ratios of means), not for quantiles.
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("paired samples must have the same length")
    point = np.atleast_1d(np.asarray(statistic(*(a[None, :] for a in arrays)), dtype=np.float64))
    point = point.reshape(-1)
    k = point.size
    labels = cluster_index(clusters, n)
    units = n if labels is None else int(labels.max()) + 1
    if n < 2 or units < 2:
        return [Estimate(float(v), math.nan, math.nan, n) for v in point]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _MAX_ELEMENTS // n))
    parts: list[NDArray[np.float64]] = []
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        if labels is None:
            idx = rng.integers(0, n, size=(size, n), dtype=np.int32 if n < 2**31 else np.int64)
            out = np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64)
        else:
            draws = rng.integers(0, units, size=(size, units))
            counts = np.zeros((size, units), dtype=np.float64)
            np.add.at(counts, (np.arange(size)[:, None], draws), 1.0)
            w = counts[:, labels]
            w *= n / w.sum(axis=1, keepdims=True)
            out = np.asarray(statistic(*(a[None, :] * w for a in arrays)), dtype=np.float64)
        parts.append(out.reshape(size, k))
        done += size
    return _percentiles(point, parts, confidence, n)


def _poisson_table(levels: int = 65536) -> NDArray[np.float32]:
    """Poisson(1) by inverse CDF on ``levels`` equal steps: 16 random bits per weight."""
    u = (np.arange(levels) + 0.5) / levels
    cdf = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(12)])
    return np.searchsorted(cdf, u).astype(np.float32)


_POISSON = _poisson_table()


def _unique_rows(rows: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """``np.unique(rows, axis=0, return_counts=True)``, faster: each column's values get
    codes, the codes one integer per row, and the integers are counted (sorting rows as
    records took most of a report's bootstrap time at 300k pairs). Same rows, same order.
    Codes by ``searchsorted`` in place and counts by ``bincount`` where the keys are few:
    ``np.unique``'s inverse and sort held ~40 MB at a million rows, the report's peak."""
    key = np.zeros(len(rows), np.int64)
    radix = 1
    columns: list[NDArray[np.float64]] = []
    for j in reversed(range(rows.shape[1])):  # the first column the most significant
        values = np.unique(rows[:, j])
        if radix * len(values) >= 2**62:
            kinds, counts = np.unique(rows, axis=0, return_counts=True)
            return kinds, counts
        codes = np.searchsorted(values, rows[:, j])
        codes *= radix
        key += codes
        del codes
        radix *= len(values)
        columns.append(values)
    if radix > 4 * len(rows) + 1024:  # sparse keys: sort them
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        return rows[first], counts
    every = np.bincount(key, minlength=radix)
    present = np.flatnonzero(every)
    kinds = np.empty((len(present), rows.shape[1]))
    rest = present.copy()
    for j, values in zip(reversed(range(rows.shape[1])), columns, strict=True):
        kinds[:, j] = values[rest % len(values)]
        rest //= len(values)
    return kinds, every[present]


def bootstrap_means(
    combine: Statistic,
    *samples: Sequence[float] | Array,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    clusters: Sequence[Hashable] | None = None,
) -> list[Estimate]:
    """Poisson bootstrap of statistics built from the samples' means.

    ``combine`` receives one array of resampled means (shape (B,)) per sample and returns
    (B,) or (B, k), like :func:`bootstrap`'s statistic after its ``mean(axis=1)``. Each
    resample weights every unit (element, or cluster) by a Poisson(1) draw, so a resample
    is a (B x units) weight matrix times the units' sums: the cost is linear in the number
    of pairs and small, and only one chunk of weights is held at a time. Clusters are summed
    first, so a clustered bootstrap costs less than a plain one. The intervals agree with
    :func:`bootstrap`'s within resampling noise (the Poisson and multinomial bootstraps
    have the same first two moments); the draws differ.
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("paired samples must have the same length")
    values = np.stack(arrays, axis=1) if n else np.zeros((0, len(arrays)))
    means = values.mean(axis=0) if n else np.full(len(arrays), math.nan)
    point = np.atleast_1d(np.asarray(combine(*(means[j : j + 1] for j in range(len(arrays))))))
    point = point.astype(np.float64).reshape(-1)
    k = point.size
    labels = cluster_index(clusters, n)
    units = n if labels is None else int(labels.max()) + 1
    if n < 2 or units < 2:
        return [Estimate(float(v), math.nan, math.nan, n) for v in point]
    # Centred sums keep float32 products accurate: a weighted mean is the weighted mean of
    # the deviations plus the full-sample mean. Filled in place, copies let go as soon as
    # they are read: at a million pairs each is tens of MB, and these were the report's peak.
    dev = np.empty((units, len(arrays) + 1))
    if labels is None:  # every element its own unit: its value minus the mean, weight 1
        del values
        for j, a in enumerate(arrays):
            np.subtract(a, means[j], out=dev[:, j])
        dev[:, -1] = 1.0
    else:
        sums = np.zeros((units, len(arrays)))
        np.add.at(sums, labels, values)
        del values
        counts = np.bincount(labels, minlength=units).astype(np.float64)
        np.subtract(sums, counts[:, None] * means, out=dev[:, :-1])
        dev[:, -1] = counts
        del sums, counts
    # Units with the same values (binary scores: four kinds of pair) pool exactly: a sum of
    # g Poisson(1) weights is one Poisson(g). Then the cost does not depend on n at all.
    kinds, multiplicity = _unique_rows(dev)
    pooled = len(kinds) * 8 <= units
    dev32 = None if pooled else dev.astype(np.float32)
    del dev
    rng = np.random.default_rng(seed)
    width = len(kinds) if pooled else units
    chunk = max(1, min(resamples, _MAX_ELEMENTS // width))
    parts: list[NDArray[np.float64]] = []
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        if pooled:
            agg = rng.poisson(multiplicity, size=(size, len(kinds))).astype(np.float64) @ kinds
        else:
            bits = np.frombuffer(rng.bytes(2 * size * units), dtype=np.uint16)
            w = _POISSON[bits].reshape(size, units)
            assert dev32 is not None
            agg = (w @ dev32).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            resampled = agg[:, :-1] / agg[:, -1:] + means
        out = np.asarray(combine(*(resampled[:, j] for j in range(len(arrays)))))
        parts.append(out.astype(np.float64).reshape(size, k))
        done += size
    return _percentiles(point, parts, confidence, n)


def cluster_index(clusters: Sequence[Hashable] | None, n: int) -> NDArray[np.intp] | None:
    """Cluster labels -> 0..C-1 per element; None when every element is its own cluster
    (no labels, or all distinct: the ordinary bootstrap). ``None`` labels are singletons."""
    if clusters is None:
        return None
    if len(clusters) != n:
        raise ValueError("clusters must label every element")
    ids: dict[Hashable, int] = {}
    out = np.empty(n, dtype=np.intp)
    for i, c in enumerate(clusters):
        key = ("\0single", i) if c is None else c
        out[i] = ids.setdefault(key, len(ids))
    return None if len(ids) == n else out


def _mean(a: Array) -> NDArray[np.float64]:
    return np.asarray(a.mean(axis=1), dtype=np.float64)


def mean_ci(x: Sequence[float] | Array, **kw: Any) -> Estimate:
    return bootstrap(_mean, x, **kw)[0]


def mean_diff_ci(x: Sequence[float] | Array, y: Sequence[float] | Array, **kw: Any) -> Estimate:
    """mean(x - y) over pairs, paired bootstrap CI."""
    return bootstrap(lambda a, b: (a - b).mean(axis=1), x, y, **kw)[0]


def ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.asarray(out, dtype=np.float64)


def ratio_ci(x: Sequence[float] | Array, y: Sequence[float] | Array, **kw: Any) -> Estimate:
    """mean(x) / mean(y) over pairs (e.g. cost ratio), paired bootstrap CI."""
    return bootstrap(lambda a, b: ratio(a.mean(axis=1), b.mean(axis=1)), x, y, **kw)[0]


def quantile_comparison(
    x: Sequence[float] | Array,
    y: Sequence[float] | Array,
    qs: Sequence[float],
    **kw: Any,
) -> list[tuple[Estimate, Estimate, Estimate]]:
    """For each q: (quantile of x, quantile of y, ratio x/y), paired bootstrap CIs.

    Used for latency: candidate and primary latencies of the same requests.
    """
    est = bootstrap_quantiles(x, y, qs, **kw)
    k = len(qs)
    return [(est[i], est[k + i], est[2 * k + i]) for i in range(k)]


# Half-width of a quantile's window, in standard errors of its rank: a resample's quantile
# falls outside it with probability ~1e-9 (then it is clamped to the window's edge).
_WINDOW_SE = 6.0
_WINDOW_MIN = 32


def bootstrap_quantiles(
    x: Sequence[float] | Array,
    y: Sequence[float] | Array,
    qs: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[Estimate]:
    """Poisson bootstrap of the quantiles of two paired samples and their ratios: the
    estimates are q(x) for each q, then q(y), then q(x)/q(y) (np.quantile's linear rule).

    A resample's quantile depends only on the weights of the units whose values lie near
    the sample quantile (within a few standard errors of its rank) and on the total weight
    below them. So those units get their own Poisson(1) weight, and every other unit is
    pooled with the units in the same cell (which gap between windows its x and its y
    fall in): a sum of g Poisson(1) weights is one Poisson(g). The resamples are the
    plain Poisson bootstrap's, at a cost that grows with sqrt(n) instead of n.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(xa)
    if len(ya) != n:
        raise ValueError("paired samples must have the same length")
    q = np.asarray(qs, dtype=np.float64)
    k = len(q)
    if np.any(np.diff(q) < 0):
        raise ValueError("quantile levels must be in increasing order")
    if n == 0:
        return [Estimate(math.nan, math.nan, math.nan, 0) for _ in range(3 * k)]
    px, py = np.quantile(xa, q), np.quantile(ya, q)
    point = np.concatenate([px, py, ratio(px, py)])
    if n < 2:
        return [Estimate(float(v), math.nan, math.nan, n) for v in point]
    sides = [_QuantileSide(v, q) for v in (xa, ya)]
    special = np.flatnonzero(sides[0].special | sides[1].special)
    if len(special) * 2 > n:  # small samples: every unit its own weight
        special = np.arange(n)
    rest = np.ones(n, dtype=bool)
    rest[special] = False
    cell = sides[0].gap * (k + 1) + sides[1].gap  # which gaps a pooled unit's x, y fall in
    cell_counts = np.bincount(cell[rest], minlength=(k + 1) ** 2).astype(np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _MAX_QUANTILE_ELEMENTS // max(len(special), 1)))
    parts: list[NDArray[np.float64]] = []
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        bits = np.frombuffer(rng.bytes(2 * size * len(special)), dtype=np.uint16)
        w = _POISSON[bits].reshape(size, len(special)).astype(np.float64)
        wc = rng.poisson(cell_counts, size=(size, len(cell_counts))).astype(np.float64)
        total = w.sum(axis=1) + wc.sum(axis=1)
        qx = sides[0].resampled(w, wc, special, total, 0)
        qy = sides[1].resampled(w, wc, special, total, 1)
        parts.append(np.concatenate([qx, qy, ratio(qx, qy)], axis=1))
        done += size
    return _percentiles(point, parts, confidence, n)


class _QuantileSide:
    """One sample's windows: the ranks around each sample quantile that a resample's
    quantile can reach, and the gap (0..k) every unit's value falls in between them."""

    def __init__(self, values: NDArray[np.float64], q: NDArray[np.float64]) -> None:
        n = len(values)
        self.q = q
        self.order = np.argsort(values, kind="stable")
        self.sorted = values[self.order]
        rank = np.empty(n, dtype=np.intp)
        rank[self.order] = np.arange(n)
        half = np.ceil(_WINDOW_SE * np.sqrt(n * q * (1 - q))) + _WINDOW_MIN
        centre = (n - 1) * q
        lo = np.clip(np.floor(centre - half), 0, n).astype(np.intp)
        # Starts that never decrease with q (widening a window only costs time).
        self.lo = np.minimum.accumulate(lo[::-1])[::-1]
        self.hi = np.clip(np.ceil(centre + half) + 1, 0, n).astype(np.intp)  # exclusive
        self.special = np.zeros(n, dtype=bool)
        for lo, hi in zip(self.lo, self.hi, strict=True):
            self.special[self.order[lo:hi]] = True
        # A pooled unit's gap: how many windows start at or below its rank.
        self.gap = np.searchsorted(self.lo, rank, side="right")
        self.rank = rank

    def resampled(
        self,
        w: NDArray[np.float64],
        wc: NDArray[np.float64],
        special: NDArray[np.intp],
        total: NDArray[np.float64],
        axis: int,
    ) -> NDArray[np.float64]:
        """(B, k): each resample's quantiles of this sample."""
        k = len(self.q)
        # Weight per gap of this sample (cells are x gap * (k + 1) + y gap).
        gaps = wc.reshape(len(wc), k + 1, k + 1).sum(axis=2 - axis)
        below_gaps = np.cumsum(gaps, axis=1)
        srank = np.sort(self.rank[special])
        by_rank = np.argsort(self.rank[special], kind="stable")
        # Cumulative weight of the special units in this sample's order, 0 first.
        cum = np.zeros((len(w), len(special) + 1))
        np.cumsum(w[:, by_rank], axis=1, out=cum[:, 1:])
        vals = self.sorted[srank]
        out = np.empty((len(w), k))
        for i in range(k):
            h = (total - 1) * self.q[i]
            j = np.floor(h)
            a = int(np.searchsorted(srank, self.lo[i]))
            b = int(np.searchsorted(srank, self.hi[i]))
            # Weight at or below each window member: pooled units in lower gaps, special
            # units below the window, the members up to it.
            run = below_gaps[:, i, None] + cum[:, a + 1 : b + 1]
            window = vals[a:b]
            # Order statistic t of a resample: the first member whose running weight
            # exceeds t (clamped to the window's edges).
            lo_v = window[np.minimum((run <= j[:, None]).sum(axis=1), b - a - 1)]
            hi_v = window[np.minimum((run <= j[:, None] + 1).sum(axis=1), b - a - 1)]
            out[:, i] = lo_v + (h - j) * (hi_v - lo_v)
        return out


# -- rates and tests --------------------------------------------------------------------------


def z_value(confidence: float) -> float:
    """Two-sided normal quantile, 1.96 for 95%."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson(k: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for a proportion; sound at 0/n and n/n, unlike Wald's."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, lo, hi, n)


# -- clustered rates (probe variants of one base probe are not independent) -------------------


def t_value(confidence: float, df: float) -> float:
    """Two-sided Student-t quantile (Cornish-Fisher expansion of the normal one; within 0.2%
    of the exact value for df >= 3, too small below: 11.3 instead of 12.7 at df = 1)."""
    z = z_value(confidence)
    if not math.isfinite(df):
        return z
    z3, z5, z7, z9 = z**3, z**5, z**7, z**9
    return (
        z
        + (z3 + z) / (4 * df)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3)
        + (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / (92160 * df**4)
    )


def _wilson_at(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson limits of a rate ``p`` observed on ``n`` (possibly effective, non-integer) units."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p <= 0 else max(0.0, centre - half)
    hi = 1.0 if p >= 1 else min(1.0, centre + half)
    return lo, hi


def _cluster_sums(values: Array, labels: NDArray[np.intp] | None) -> Array:
    if labels is None:
        return values
    return np.bincount(labels, weights=values).astype(np.float64)


def _cluster_cov(a: Array, b: Array, p: float, q: float, sizes: Array) -> float:
    """Cluster-robust covariance of two ratio-of-means rates from their cluster totals."""
    c = sizes.size
    if c < 2:
        return math.nan
    n = float(sizes.sum())
    return float(c / (c - 1) * np.sum((a - p * sizes) * (b - q * sizes)) / (n * n))


@dataclass(frozen=True, slots=True)
class ClusteredRate:
    """A rate over clustered 0/1 outcomes: its Wilson interval at the effective sample size
    ``n / design_effect``, and the cluster totals for comparisons."""

    estimate: Estimate
    design_effect: float
    totals: Array
    sizes: Array
    quantile: float  # the quantile for a variance estimated from these clusters (t or normal)

    @property
    def clusters(self) -> int:
        return int(self.sizes.size)

    @property
    def variance(self) -> float:
        p = self.estimate.value
        return _cluster_cov(self.totals, self.totals, p, p, self.sizes)


def clustered_rate(
    outcomes: Sequence[float] | Array,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
) -> ClusteredRate:
    """The share of 1s, with a cluster-robust Wilson interval.

    The design effect (cluster-robust variance over the binomial one) shrinks ``n`` to an
    effective sample size. It is never below 1 (clustering is not allowed to *add*
    information), and when all successes (or all failures) sit in one cluster, 0/n and n/n
    included, the variance says nothing, so the worst case is assumed: clusters that are
    all-or-nothing, an effective size of ``n^2 / sum(size^2)`` (the number of clusters when
    they are of equal size).
    """
    x = np.asarray(outcomes, dtype=np.float64)
    n = int(x.size)
    labels = cluster_index(clusters, n)
    ones = np.ones(n, dtype=np.float64)
    totals, sizes = _cluster_sums(x, labels), _cluster_sums(ones, labels)
    if n == 0:
        nan = Estimate(math.nan, math.nan, math.nan, 0)
        return ClusteredRate(nan, math.nan, totals, sizes, math.nan)
    p = float(x.mean())
    worst = float(sizes @ sizes) / n
    # Few clusters make a cluster-robust variance itself uncertain: Student's t with
    # clusters - 1 degrees of freedom instead of the normal quantile.
    t = z_value(confidence) if labels is None else t_value(confidence, max(sizes.size - 1, 1))
    # A variance read from successes (or failures) in a single cluster is noise: the worst
    # case instead, a bound rather than an estimate, so the normal quantile goes with it.
    spread = min(int(np.count_nonzero(totals)), int(np.count_nonzero(sizes - totals)))
    if spread >= 2:
        binomial = p * (1 - p) / n
        deff = min(max(_cluster_cov(totals, totals, p, p, sizes) / binomial, 1.0), worst)
        lo, hi = _wilson_at(p, n / deff, t)
    else:
        deff = worst
        lo, hi = _wilson_at(p, n / deff, z_value(confidence))
    return ClusteredRate(Estimate(p, lo, hi, n), deff, totals, sizes, t)


def _mover(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float, r: float
) -> tuple[float, float]:
    """Limits of a - b from the limits of a and b and the correlation of their estimates
    (Zou and Donner's MOVER; Newcombe's paired-difference interval for rates)."""

    def spread(x: float, y: float) -> float:
        if math.isinf(x) or math.isinf(y):
            return math.inf
        x, y = max(x, 0.0), max(y, 0.0)
        return math.sqrt(max(x * x + y * y - 2 * r * x * y, 0.0))

    return a - b - spread(a - a_lo, b_hi - b), a - b + spread(a_hi - a, b - b_lo)


def _fieller(num: Array, den: Array, q: float) -> tuple[float, float] | None:
    """Fieller's interval for sum(num) / sum(den) from cluster totals: the ratios theta for
    which sum(num - theta * den) is within ``q`` cluster-robust standard errors of 0. None
    when that set is unbounded (the denominator is not clearly above 0)."""
    c = num.size
    if c < 2:
        return None
    f = c / (c - 1)
    dn, dd = num - num.mean(), den - den.mean()
    snn, sdd, snd = f * float(dn @ dn), f * float(dd @ dd), f * float(dn @ dd)
    tn, td = float(num.sum()), float(den.sum())
    q2 = q * q
    a = td * td - q2 * sdd
    b = -2 * (td * tn - q2 * snd)
    k = tn * tn - q2 * snn
    disc = b * b - 4 * a * k
    if a <= 0 or disc < 0:
        return None
    root = math.sqrt(disc)
    return max((-b - root) / (2 * a), 0.0), (-b + root) / (2 * a)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


@dataclass(frozen=True, slots=True)
class PairedRates:
    """Two rates measured on the same clustered items (a candidate and its baseline)."""

    first: Estimate
    second: Estimate
    difference: Estimate  # first - second
    ratio: Estimate  # second / first (continuity-corrected when either count is 0)
    p_value: float | None
    clusters: int
    successes: tuple[int, int]


def paired_rates(
    first: Sequence[float] | Array,
    second: Sequence[float] | Array,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
) -> PairedRates:
    """Compare two paired 0/1 outcomes (e.g. attack success of a candidate and its baseline
    on the same probes), clustered.

    Each rate has the cluster-robust Wilson interval of :func:`clustered_rate`; the difference
    combines them by MOVER with the cluster-robust correlation of the two rates (Newcombe's
    paired interval, clustered). The ratio is ``second / first`` (baseline over candidate:
    > 1 means the first has fewer successes), with Fieller's interval on the cluster totals.
    When the first's successes are too few to bound it (Fieller's set is unbounded) its upper
    limit is infinite and the lower one MOVER's on the log scale. When either count is 0 its
    point estimate is ``(k2 + 0.5) / (k1 + 0.5)`` and the interval reaches 0 (no successes of
    the second) or infinity (none of the first): a zero is never presented as certain.
    The p-value is the exact cluster sign-flip test of :func:`cluster_sign_test`.
    """
    x = np.asarray(first, dtype=np.float64)
    y = np.asarray(second, dtype=np.float64)
    if x.size != y.size:
        raise ValueError("paired samples must have the same length")
    n = int(x.size)
    a = clustered_rate(x, clusters, confidence)
    b = clustered_rate(y, clusters, confidence)
    ka, kb = round(float(x.sum())), round(float(y.sum()))
    if n == 0:
        nan = Estimate(math.nan, math.nan, math.nan, 0)
        return PairedRates(nan, nan, nan, nan, None, 0, (0, 0))
    pa, pb = a.estimate.value, b.estimate.value
    va, vb = a.variance, b.variance
    cov = _cluster_cov(a.totals, b.totals, pa, pb, a.sizes)
    r = cov / math.sqrt(va * vb) if va > 0 and vb > 0 else 0.0
    r = min(max(r, -1.0), 1.0)
    ea, eb = a.estimate, b.estimate
    lo, hi = _mover(pa, ea.lo, ea.hi, pb, eb.lo, eb.hi, r)
    difference = Estimate(pa - pb, max(lo, -1.0), min(hi, 1.0), n)
    if ka == 0 or kb == 0:
        la, lb = math.log((ka + 0.5) / n), math.log((kb + 0.5) / n)
    else:
        la, lb = math.log(pa), math.log(pb)
    # Fieller's interval where it is bounded. Else (a count of 0, or too few successes of the
    # first to bound the ratio) MOVER's on the log scale, log(second) - log(first), from each
    # log-rate's own limits and without the correlation: read from a handful of successes
    # it is noise, and a spurious +1 would shrink the interval to nothing.
    bounded = None if ka == 0 or kb == 0 else _fieller(b.totals, a.totals, a.quantile)
    if bounded is not None:
        rlo, rhi = bounded
    else:
        llo, lhi = _mover(lb, _log(eb.lo), _log(eb.hi), la, _log(ea.lo), _log(ea.hi), 0.0)
        rlo = math.exp(llo) if llo > -math.inf else 0.0
        rhi = math.inf if ka == 0 or kb > 0 else math.exp(lhi)
    ratio_est = Estimate(math.exp(lb - la), rlo, rhi, n)
    p_value = cluster_sign_test(a.totals - b.totals)
    return PairedRates(ea, eb, difference, ratio_est, p_value, a.clusters, (ka, kb))


def cluster_sign_test(differences: Sequence[float] | Array, *, exact_limit: int = 100_000) -> float:
    """Two-sided p-value of "no difference" from per-cluster differences of paired counts.

    Under the null the two sides are exchangeable within a cluster, so each cluster's
    difference is equally likely to have either sign: the p-value is the share of the 2^C
    sign flips whose total is at least as far from 0 as the observed one, computed exactly
    (a walk over the possible totals) for integer differences whose absolute sum is at most
    ``exact_limit``, else by the normal approximation. With one element per cluster it is
    the exact McNemar test.
    """
    d = np.abs(np.asarray(differences, dtype=np.float64))
    observed = abs(float(np.sum(differences)))
    d = d[d > 0]
    if d.size == 0:
        return 1.0
    total = float(d.sum())
    if not np.all(d == np.round(d)) or total > exact_limit:
        z = (observed - 0.5) / math.sqrt(float(d @ d))
        return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
    size = int(total)
    # dist[s] = P(sum of the positively signed |d| = s); the signed total is 2s - total.
    dist = np.zeros(size + 1, dtype=np.float64)
    dist[0] = 1.0
    top = 0
    for v in d.astype(np.int64):
        k = int(v)
        new = dist[: top + k + 1] * 0.5
        new[k : top + k + 1] += dist[: top + 1] * 0.5
        dist[: top + k + 1] = new
        top += k
    signed = np.abs(2 * np.arange(size + 1) - size)
    return float(min(1.0, dist[signed >= observed - 1e-9].sum()))


def binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial p-value for k successes in n at p = 0.5 (sign test)."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    # log-space sum of C(n, i) / 2^n for i <= low, stable for large n.
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(low + 1)
    ]
    top = max(logs)
    tail = math.exp(top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2))
    return min(1.0, 2 * tail)


def chi2_1df_sf(x: float) -> float:
    """Survival function of the chi-square distribution with one degree of freedom."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2))


@dataclass(frozen=True, slots=True)
class McNemar:
    """McNemar's test on the discordant pairs of two paired binary outcomes.

    ``b``: first right, second wrong; ``c``: first wrong, second right.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "b": self.b,
            "c": self.c,
            "statistic": _num(self.statistic),
            "p_value": self.p_value,
            "method": self.method,
        }


def mcnemar(b: int, c: int, *, exact: bool | None = None, correction: bool = True) -> McNemar:
    """McNemar's test. Exact (binomial) when ``b + c < 25`` unless told otherwise; else the
    chi-square statistic, with Edwards' continuity correction by default."""
    n = b + c
    if exact is None:
        exact = n < 25
    if n == 0:
        return McNemar(b, c, 0.0, 1.0, "exact" if exact else "chi2")
    if exact:
        return McNemar(b, c, float(min(b, c)), binom_two_sided(b, n), "exact")
    diff = abs(b - c) - (1 if correction else 0)
    stat = max(diff, 0) ** 2 / n
    return McNemar(b, c, stat, chi2_1df_sf(stat), "chi2_cc" if correction else "chi2")


def mcnemar_paired(first: Iterable[float], second: Iterable[float], **kw: Any) -> McNemar:
    """McNemar from two aligned 0/1 sequences."""
    x, y = (
        np.asarray(v if isinstance(v, np.ndarray) else list(v), np.float64) for v in (first, second)
    )
    if len(x) != len(y):
        raise ValueError("paired samples must have the same length")
    b = int(np.count_nonzero((x >= 0.5) & (y < 0.5)))
    c = int(np.count_nonzero((y >= 0.5) & (x < 0.5)))
    return mcnemar(b, c, **kw)


def is_binary(values: Array) -> bool:
    return bool(values.size) and bool(np.all((values == 0.0) | (values == 1.0)))


# -- agreement ---------------------------------------------------------------------------


def cohens_kappa(
    first: Iterable[Hashable], second: Iterable[Hashable], confidence: float = 0.95
) -> Estimate:
    """Cohen's kappa of two raters' labels on the same items (e.g. a judge's and a human's
    win/tie/loss): agreement beyond chance, 1 = perfect, 0 = chance, < 0 = worse.

    The interval is the large-sample normal one, se = sqrt(po (1 - po) / n) / (1 - pe).
    When both raters always give the one same label, chance agreement is 1 and kappa is
    undefined (nan) unless they agree (then 1).
    """
    pairs = list(zip(first, second, strict=True))
    n = len(pairs)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    observed = sum(a == b for a, b in pairs) / n
    left = Counter(a for a, _ in pairs)
    right = Counter(b for _, b in pairs)
    chance = sum(count * right[label] for label, count in left.items()) / (n * n)
    if chance >= 1.0:
        return Estimate(1.0 if observed == 1.0 else math.nan, math.nan, math.nan, n)
    kappa = (observed - chance) / (1 - chance)
    half = z_value(confidence) * math.sqrt(observed * (1 - observed) / n) / (1 - chance)
    return Estimate(kappa, max(-1.0, kappa - half), min(1.0, kappa + half), n)


# -- tails -------------------------------------------------------------------------------


def tail_summary(values: Array, floor: float, confidence: float = 0.95) -> dict[str, Any]:
    """P5 and P1 of per-pair scores and the share below ``floor`` (Wilson CI)."""
    if values.size == 0:
        return {"p5": None, "p1": None, "below_floor": wilson(0, 0).as_dict(), "floor": floor}
    p5, p1 = np.quantile(values, [0.05, 0.01])
    below = int(np.count_nonzero(values < floor))
    return {
        "p5": float(p5),
        "p1": float(p1),
        "below_floor": wilson(below, int(values.size), confidence).as_dict(),
        "floor": floor,
    }


# -- noise floor ---------------------------------------------------------------------------


def significant(difference: Estimate, versus_control: Estimate | None) -> bool:
    """A candidate's difference is significant only when it is not explained by noise.

    ``difference``: candidate minus its baseline (the primary's score, or the control's
    agreement for scorers that compare with the primary). ``versus_control``: candidate
    minus control on the same requests, when a control ran. The CI of the difference must
    exclude 0, and so must the CI against the control: a difference no larger than the one
    the primary shows against itself is noise (Diffy's primary/secondary idea).
    """
    if math.isnan(difference.lo) or not difference.excludes(0.0):
        return False
    if versus_control is None:
        return True
    if math.isnan(versus_control.lo) or not versus_control.excludes(0.0):
        return False
    # Same direction: worse than the primary and worse than the control (or both better).
    return (difference.value > 0) == (versus_control.value > 0)


# -- rates --------------------------------------------------------------------------------


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> Estimate:
    """p1 - p2 with Newcombe's hybrid score interval (his method 10: Wilson limits of each
    rate, combined). Holds its coverage for rare events where a bootstrap of 0/1 values
    does not; ignoring a positive pairing makes it wider, not narrower."""
    if n1 == 0 or n2 == 0:
        return Estimate(math.nan, math.nan, math.nan, min(n1, n2))
    a, b = wilson(k1, n1, confidence), wilson(k2, n2, confidence)
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = d + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    return Estimate(d, lo, hi, min(n1, n2))


def rate_ratio(k_num: int, k_den: int, n: int, confidence: float = 0.95) -> Estimate:
    """(k_num + 0.5) / (k_den + 0.5) for two event counts over the same n requests, with the
    interval of the conditional binomial: of the k_num + k_den events, the share on the
    numerator's side (Wilson) mapped to a ratio. Finite when one side has no events; the
    upper end is inf when the denominator has none (nothing bounds it)."""
    total = k_num + k_den
    value = (k_num + 0.5) / (k_den + 0.5)
    if total == 0:
        return Estimate(value, math.nan, math.nan, n)
    share = wilson(k_num, total, confidence)
    lo = share.lo / (1 - share.lo) if share.lo < 1 else math.inf
    hi = share.hi / (1 - share.hi) if share.hi < 1 else math.inf
    return Estimate(value, lo, hi, n)


# -- tests and multiplicity ----------------------------------------------------------------


def binom_upper_tail(k: int, n: int) -> float:
    """Exact one-sided binomial p-value P(X >= k) for X ~ Bin(n, 1/2): of n discordant pairs,
    k or more went against the candidate by chance."""
    if n == 0 or k <= 0:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k, n + 1)
    ]
    top = max(logs)
    log_tail = top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2)
    return min(1.0, math.exp(log_tail))


def p_beyond(estimate: Estimate, bound: float, above: bool, confidence: float = 0.95) -> float:
    """One-sided p-value of "the truth is beyond ``bound``" read off a two-sided interval.

    The interval's half on the bound's side gives the standard error (normal approximation),
    so ``p < (1 - confidence) / 2`` exactly when that end of the interval clears the bound:
    the test is the interval's dual, and Holm can correct a family of them. nan when the
    interval is not defined.
    """
    value, lo, hi = estimate.value, estimate.lo, estimate.hi
    if not (math.isfinite(value) and math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    z = z_value(confidence)
    gap = value - bound if above else bound - value
    half = (value - lo) if above else (hi - value)
    if half <= 0:
        # A zero-width side is no evidence of certainty: only a point beyond the bound counts.
        return 0.5 if gap == 0 else (0.0 if gap > 0 else 1.0)
    return 1.0 - NormalDist().cdf(gap / (half / z))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with the family-wise error
    rate at most ``alpha`` (any dependence). nan p-values are never rejected."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    m = len(p_values)
    rejected = [False] * m
    for rank, i in enumerate(order):
        p = p_values[i]
        if math.isnan(p) or p > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


# -- sample size ---------------------------------------------------------------------------


def pairs_for_noninferiority(
    sd: float, margin: float, confidence: float = 0.95, power: float = 0.8
) -> int | None:
    """Pairs needed for the CI's lower bound to clear ``-margin`` with probability ``power``
    when the true difference is 0: n = ((z_conf + z_power) * sd / margin)^2."""
    if margin <= 0 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    z = z_value(confidence) + NormalDist().inv_cdf(power)
    return max(2, math.ceil((z * sd / margin) ** 2))


def pairs_to_resolve(estimate: Estimate, bound: float) -> int | None:
    """Pairs needed for the CI to stop straddling ``bound``, assuming the point estimate
    stays where it is and the interval narrows as 1/sqrt(n)."""
    gap = abs(estimate.value - bound)
    if estimate.n < 2 or not math.isfinite(estimate.halfwidth) or gap == 0:
        return None
    if estimate.halfwidth <= gap:
        return estimate.n
    # The epsilon keeps float noise (400.0000001) from adding a pair.
    return math.ceil(estimate.n * (estimate.halfwidth / gap) ** 2 - 1e-9)


# -- sequential monitoring -----------------------------------------------------------------


def _lambda_grid(floor: float, size: int) -> list[float]:
    # Bets up to 0.9/floor keep every factor 1 + lam*z >= 0.1 for z >= -floor; halving
    # steps cover both large and tiny regressions.
    top = 0.9 / floor
    return [top * 2 ** (-i / 2) for i in range(size)]


def regression_excess(
    candidate: Array | float,
    baseline: Array | float,
    max_drop: float,
    *,
    higher_is_better: bool = True,
) -> Array:
    """What the regression e-process bets on, per pair: positive when the candidate is worse
    than ``max_drop`` (relative) below its baseline. Higher is better: ``(1 - max_drop) * b
    - c``, in [-1, 1 - max_drop]; lower is better: ``c - (1 + max_drop) * b``, in
    [-(1 + max_drop), 1]. Its mean is <= 0 exactly when the candidate is within the margin."""
    c = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if higher_is_better:
        return np.asarray((1.0 - max_drop) * b - c, dtype=np.float64)
    return np.asarray(c - (1.0 + max_drop) * b, dtype=np.float64)


def regression_log_evidence(
    excess: Array, *, floor: float = 1.0, grid: int = 16, start: Sequence[float] | None = None
) -> tuple[Array, Array]:
    """The e-process of :class:`RegressionMonitor` over many streams at once.

    ``excess`` is (streams, steps >= 1) of :func:`regression_excess` values, each at least
    ``-floor``. Returns (log e-value after every step, shape (streams, steps); each bet's final log
    wealth, shape (grid, streams)). ``start`` continues from a previous final log wealth
    (one stream). One bet at a time keeps memory at two (streams, steps) arrays, so the
    validity benchmark can run thousands of 20,000-pair streams through this same code.
    """
    z = np.atleast_2d(np.asarray(excess, dtype=np.float64))
    lambdas = _lambda_grid(floor, grid)
    total: Array | None = None
    finals = np.empty((grid, z.shape[0]))
    for i, lam in enumerate(lambdas):
        path = np.cumsum(np.log1p(lam * z), axis=1)
        if start is not None:
            path += start[i]
        finals[i] = path[:, -1]
        total = path if total is None else np.logaddexp(total, path)
    assert total is not None
    return total - math.log(grid), finals


class RegressionMonitor:
    """Anytime-valid test of "the candidate is worse than its baseline by more than
    ``max_drop``, relative" — the report's unit (0.05 = a mean 5% below the baseline's).

    Feed it paired scores in [0, 1] as they arrive: ``update(candidate, baseline)``, or
    batches with ``update_many``. H0 (higher is better): E[c] >= (1 - max_drop) E[b]. With
    z = (1 - max_drop) b - c (mean <= 0 under H0, z >= -1), it keeps a betting e-process:
    the average over a fixed grid of bets lam in (0, 0.9] of prod(1 + lam z_t). Under H0
    this is a nonnegative supermartingale, so by Ville's inequality the chance that it
    *ever* reaches 1/alpha is at most alpha, however often it is looked at. ``detected``
    latches once it does. For a lower-is-better score H0 is E[c] <= (1 + max_drop) E[b]
    (z = c - (1 + max_drop) b >= -(1 + max_drop), bets scaled to match).

    ``alpha`` is this monitor's own share: with several monitors, give each its part of
    the family's alpha (``score.alarm`` does), so that the chance of any false alarm among
    them stays within the family's.

    For scorers that compare the candidate with the primary (``side: pair``), pass the
    control's value on the same request as ``baseline`` so the noise floor is accounted
    for; for win/tie/loss preferences pass 0.5 (a tie).
    """

    def __init__(
        self,
        max_drop: float = 0.05,
        alpha: float = 0.05,
        *,
        higher_is_better: bool = True,
        grid: int = 16,
        evidence: Gauge | None = None,
        detected: Gauge | None = None,
        threshold: Gauge | None = None,
    ) -> None:
        if not 0 <= max_drop < 1:
            raise ValueError("max_drop must be in [0, 1)")
        if not 0 < alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        self.max_drop = max_drop
        self.alpha = alpha
        self.higher_is_better = higher_is_better
        self._floor = 1.0 if higher_is_better else 1.0 + max_drop
        self._grid = grid
        self._lambdas = _lambda_grid(self._floor, grid)
        self._log_wealth = [0.0] * grid
        self._threshold = math.log(1 / alpha)
        self._evidence_gauge = evidence
        self._detected_gauge = detected
        self.n = 0
        self.detected = False
        self.detected_at: int | None = None
        if threshold is not None:
            threshold.set(1 / alpha)
        self._publish()

    @classmethod
    def for_metrics(
        cls,
        metrics: ScoreMetrics,
        upstream: str,
        scorer: str,
        max_drop: float = 0.05,
        alpha: float = 0.05,
        *,
        higher_is_better: bool = True,
    ) -> RegressionMonitor:
        """A monitor that keeps ``shadoweval_quality_regression_{evidence,detected,threshold}``
        set."""
        return cls(
            max_drop,
            alpha,
            higher_is_better=higher_is_better,
            evidence=metrics.regression_evidence.labels(upstream, scorer),
            detected=metrics.regression_detected.labels(upstream, scorer),
            threshold=metrics.regression_threshold.labels(upstream, scorer),
        )

    @property
    def log_e_value(self) -> float:
        top = max(self._log_wealth)
        mean = sum(math.exp(v - top) for v in self._log_wealth) / len(self._log_wealth)
        return top + math.log(mean)

    @property
    def e_value(self) -> float:
        """Current evidence against H0; >= 1/alpha rejects. Capped to stay a finite float."""
        return math.exp(min(self.log_e_value, 700.0))

    def update(self, candidate: float | None, baseline: float | None) -> bool:
        """One pair of scores in [0, 1]; ``None`` (unscored) is skipped. Returns ``detected``."""
        if candidate is None or baseline is None:
            return self.detected
        if not (0.0 <= candidate <= 1.0 and 0.0 <= baseline <= 1.0):  # also rejects nan
            raise ValueError(f"scores must be in [0, 1], got {candidate!r}, {baseline!r}")
        d = self.max_drop
        z = (
            (1 - d) * baseline - candidate
            if self.higher_is_better
            else candidate - (1 + d) * baseline
        )
        for i, lam in enumerate(self._lambdas):
            self._log_wealth[i] += math.log1p(lam * z)
        self.n += 1
        if not self.detected and self.log_e_value >= self._threshold:
            self.detected = True
            self.detected_at = self.n
        self._publish()
        return self.detected

    def update_many(
        self, candidates: Sequence[float] | Array, baselines: Sequence[float] | Array
    ) -> bool:
        """A batch of pairs at once (same result as calling ``update`` for each)."""
        c = np.asarray(candidates, dtype=np.float64)
        b = np.asarray(baselines, dtype=np.float64)
        if c.shape != b.shape or c.ndim != 1:
            raise ValueError("candidates and baselines must be 1-d and of one length")
        if c.size == 0:
            return self.detected
        if not np.all((c >= 0.0) & (c <= 1.0) & (b >= 0.0) & (b <= 1.0)):
            raise ValueError("scores must be in [0, 1]")
        z = regression_excess(c, b, self.max_drop, higher_is_better=self.higher_is_better)
        log_e, finals = regression_log_evidence(
            z[None, :], floor=self._floor, grid=self._grid, start=self._log_wealth
        )
        if not self.detected:
            crossed = np.flatnonzero(log_e[0] >= self._threshold)
            if crossed.size:
                self.detected = True
                self.detected_at = self.n + int(crossed[0]) + 1
        self._log_wealth = [float(v) for v in finals[:, 0]]
        self.n += int(c.size)
        self._publish()
        return self.detected

    def _publish(self) -> None:
        if self._evidence_gauge is not None:
            self._evidence_gauge.set(self.e_value)
        if self._detected_gauge is not None:
            self._detected_gauge.set(1.0 if self.detected else 0.0)
