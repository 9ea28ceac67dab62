"""The report's statistics against known results and simulations with fixed seeds.

Simulations are sized so a broken method fails clearly while the test stays fast: a few
hundred runs, vectorised with numpy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from shadoweval import stats
from shadoweval.metrics import ScoreMetrics

# -- bootstrap coverage -----------------------------------------------------------------


def _paired_sample(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Skewed, strongly correlated pairs: a shared per-request effect plus own noise."""
    shared = rng.exponential(1.0, n)
    x = shared + rng.exponential(0.5, n)
    y = shared + rng.exponential(0.5, n) + shift
    return x, y


@pytest.mark.parametrize("confidence", [0.95, 0.90])
def test_paired_bootstrap_ci_covers_the_true_difference_at_the_nominal_rate(
    confidence: float,
) -> None:
    sims, n, shift = 400, 80, 0.3
    rng = np.random.default_rng(20260105)
    covered = 0
    for i in range(sims):
        x, y = _paired_sample(rng, n, shift)
        est = stats.mean_diff_ci(x, y, confidence=confidence, resamples=1000, seed=i)
        covered += est.lo <= -shift <= est.hi
    rate = covered / sims
    # Binomial sd at 400 runs is ~1.1 points; percentile intervals run slightly narrow at n=80.
    assert confidence - 0.04 <= rate <= confidence + 0.03, rate


def test_pairing_matters_the_paired_interval_is_narrower_than_an_unpaired_one() -> None:
    rng = np.random.default_rng(7)
    x, y = _paired_sample(rng, 200, 0.3)
    paired = stats.mean_diff_ci(x, y, seed=1)
    # Resampling the two sides independently throws the shared effect into the noise.
    unpaired_x = stats.mean_ci(x, seed=1)
    unpaired_y = stats.mean_ci(y, seed=2)
    unpaired_half = math.hypot(unpaired_x.halfwidth, unpaired_y.halfwidth)
    assert paired.halfwidth < 0.6 * unpaired_half


def test_ratio_ci_covers_the_true_cost_ratio() -> None:
    sims, n = 300, 150
    rng = np.random.default_rng(11)
    # Lognormal costs; the candidate's mean is 0.3x the primary's.
    true_ratio = 0.3
    covered = 0
    for i in range(sims):
        tokens = rng.lognormal(0, 0.8, n)
        prim = tokens * rng.lognormal(0, 0.2, n)
        cand = true_ratio * tokens * rng.lognormal(0, 0.2, n)
        est = stats.ratio_ci(cand, prim, resamples=1000, seed=i)
        covered += est.lo <= true_ratio <= est.hi
    assert 0.90 <= covered / sims <= 0.98


def test_quantile_ratio_ci_covers_the_true_median_ratio() -> None:
    sims, n = 300, 150
    rng = np.random.default_rng(13)
    covered = 0
    for i in range(sims):
        prim = rng.lognormal(np.log(0.5), 0.4, n)
        cand = rng.lognormal(np.log(0.6), 0.4, n)  # true median ratio 1.2
        ((_, _, ratio),) = stats.quantile_comparison(cand, prim, [0.5], resamples=500, seed=i)
        covered += ratio.lo <= 1.2 <= ratio.hi
    assert 0.90 <= covered / sims <= 0.99


def test_bootstrap_is_deterministic_for_a_seed_and_rejects_unpaired_lengths() -> None:
    x, y = np.arange(50.0), np.arange(50.0)[::-1]
    assert stats.mean_diff_ci(x, y, seed=3) == stats.mean_diff_ci(x, y, seed=3)
    assert stats.mean_diff_ci(x, y, seed=3) != stats.mean_diff_ci(x, y, seed=4)
    with pytest.raises(ValueError, match="same length"):
        stats.mean_diff_ci(x, y[:10])
    tiny = stats.mean_ci([0.5])
    assert tiny.value == 0.5 and math.isnan(tiny.lo)


# -- McNemar, Wilson, sign test: textbook values ------------------------------------------


def test_mcnemar_agresti_presidential_approval() -> None:
    # Agresti, Categorical Data Analysis (2nd ed.), Table 10.1: 1600 people rated the
    # president twice; 150 approve->disapprove, 86 disapprove->approve. z^2 = 17.36.
    result = stats.mcnemar(150, 86, correction=False)
    assert result.statistic == pytest.approx(17.356, abs=1e-3)
    assert result.p_value == pytest.approx(3.099e-5, rel=1e-3)
    corrected = stats.mcnemar(150, 86)
    assert corrected.method == "chi2_cc"
    assert corrected.statistic == pytest.approx(63**2 / 236)


def test_mcnemar_exact_small_counts_and_from_sequences() -> None:
    # b + c = 7 < 25: exact binomial; P = 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125.
    assert stats.mcnemar(1, 6).method == "exact"
    assert stats.mcnemar(1, 6).p_value == pytest.approx(0.125)
    assert stats.mcnemar(0, 5).p_value == pytest.approx(0.0625)
    assert stats.mcnemar(0, 0).p_value == 1.0
    first = [1, 1, 0, 0, 1, 0, 1, 1]
    second = [1, 0, 1, 1, 1, 1, 1, 1]
    result = stats.mcnemar_paired(first, second)
    assert (result.b, result.c) == (1, 3)


def test_wilson_interval_known_values() -> None:
    # Newcombe (1998), Table I: 1/10 -> 0.0179 to 0.4042; 0/10 -> 0 to 0.2775.
    one = stats.wilson(1, 10)
    assert (one.lo, one.hi) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    zero = stats.wilson(0, 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(0.2775, abs=1e-4)
    assert stats.wilson(10, 10).hi == 1.0


def test_sign_test_matches_the_binomial_and_is_stable_for_large_n() -> None:
    assert stats.binom_two_sided(2, 10) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert stats.binom_two_sided(5000, 10000) == pytest.approx(1.0)
    assert stats.binom_two_sided(4800, 10000) < 1e-4


def test_tail_summary() -> None:
    values = np.linspace(0, 1, 101)
    tails = stats.tail_summary(values, floor=0.1)
    assert tails["p5"] == pytest.approx(0.05)
    assert tails["p1"] == pytest.approx(0.01)
    assert tails["below_floor"]["value"] == pytest.approx(10 / 101)


# -- noise floor and sample size -----------------------------------------------------------


def test_significance_needs_the_difference_to_clear_the_noise_floor() -> None:
    worse = stats.Estimate(-0.10, -0.14, -0.06, 500)
    assert stats.significant(worse, None)
    # As far from the primary as the control is: noise.
    assert not stats.significant(worse, stats.Estimate(-0.01, -0.05, 0.03, 500))
    assert stats.significant(worse, stats.Estimate(-0.09, -0.13, -0.05, 500))
    assert not stats.significant(stats.Estimate(-0.01, -0.05, 0.03, 500), None)
    # Worse than the primary but better than the control is no finding either.
    assert not stats.significant(worse, stats.Estimate(0.08, 0.04, 0.12, 500))


def test_pairs_for_noninferiority_gives_the_configured_power() -> None:
    sd, margin, power = 0.3, 0.05, 0.8
    n = stats.pairs_for_noninferiority(sd, margin, 0.95, power)
    assert n == math.ceil(((1.959964 + 0.841621) * sd / margin) ** 2)
    # Simulate: true difference 0, n pairs; share of CIs whose lower bound clears -margin.
    rng = np.random.default_rng(5)
    d = rng.normal(0.0, sd, size=(2000, n))
    lower = d.mean(axis=1) - 1.96 * d.std(axis=1, ddof=1) / math.sqrt(n)
    assert abs((lower > -margin).mean() - power) < 0.03
    assert stats.pairs_to_resolve(stats.Estimate(1.1, 0.9, 1.3, 100), 1.2) == 400


# -- sequential test ---------------------------------------------------------------------


def _bernoulli_pairs(
    rng: np.random.Generator, runs: int, steps: int, p_baseline: float, p_candidate: float
) -> tuple[np.ndarray, np.ndarray]:
    baseline = (rng.random((runs, steps)) < p_baseline).astype(float)
    candidate = (rng.random((runs, steps)) < p_candidate).astype(float)
    return candidate, baseline


def _alarm_rate(
    candidate: np.ndarray, baseline: np.ndarray, max_drop: float, alpha: float
) -> float:
    alarms = 0
    for c, b in zip(candidate, baseline, strict=True):
        monitor = stats.RegressionMonitor(max_drop, alpha)
        alarms += monitor.update_many(c, b)
    return alarms / len(candidate)


@pytest.mark.parametrize("max_drop", [0.0, 0.05])
def test_sequential_false_alarm_rate_stays_under_alpha_on_the_null_boundary(
    max_drop: float,
) -> None:
    # The hardest null: the candidate's mean is exactly max_drop (relative) below the
    # baseline's, watched for 3000 pairs and checked after every one of them.
    alpha = 0.05
    rng = np.random.default_rng(42)
    c, b = _bernoulli_pairs(rng, 300, 3000, 0.8, 0.8 * (1 - max_drop))
    assert _alarm_rate(c, b, max_drop, alpha) <= alpha


def test_sequential_margin_is_relative() -> None:
    # 0.3 -> 0.26 is 4 points but 13% relative: over a 5% relative margin, while the
    # same 4 points from 0.9 (4.4%) are within it.
    rng = np.random.default_rng(43)
    c, b = _bernoulli_pairs(rng, 40, 20_000, 0.3, 0.26)
    assert _alarm_rate(c, b, 0.05, 0.05) >= 0.8
    c, b = _bernoulli_pairs(rng, 40, 20_000, 0.9, 0.86)
    assert _alarm_rate(c, b, 0.05, 0.05) <= 0.05  # near the boundary: at most alpha


def test_sequential_test_detects_a_10_percent_relative_regression() -> None:
    # The defaults (max_drop 0.05) at a third of alpha 0.05 (three monitors), the hardest
    # baseline of the validity suite: binary scores at 0.6, independent sides.
    rng = np.random.default_rng(44)
    c, b = _bernoulli_pairs(rng, 40, 20_000, 0.6, 0.54)
    assert _alarm_rate(c, b, 0.05, 0.9 * 0.05 / 3) >= 0.95


def test_lower_is_better_scores_are_tested_the_other_way() -> None:
    rng = np.random.default_rng(45)
    worse = stats.RegressionMonitor(0.05, 0.05, higher_is_better=False)
    c, b = _bernoulli_pairs(rng, 1, 5000, 0.2, 0.3)  # 50% more errors
    assert worse.update_many(c[0], b[0])
    one = stats.RegressionMonitor(0.05, 0.05, higher_is_better=False)
    for cc, bb in zip(c[0], b[0], strict=True):
        one.update(float(cc), float(bb))
    assert one.log_e_value == pytest.approx(worse.log_e_value)
    assert one.detected_at == worse.detected_at
    c, b = _bernoulli_pairs(rng, 200, 3000, 0.2, 0.2 * 1.05)  # the boundary
    alarms = 0
    for cc, bb in zip(c, b, strict=True):
        alarms += stats.RegressionMonitor(0.05, 0.05, higher_is_better=False).update_many(cc, bb)
    assert alarms / 200 <= 0.05


def test_peeking_at_a_fixed_sample_test_is_what_the_sequential_test_avoids() -> None:
    # The same null streams, with a one-sided z-test repeated every 50 pairs, alarm far more
    # often than alpha: the simulation can see the difference.
    rng = np.random.default_rng(42)
    c, b = _bernoulli_pairs(rng, 300, 3000, 0.8, 0.8)
    diffs = b - c
    n = np.arange(1, 3001)
    mean = np.cumsum(diffs, axis=1) / n
    var = np.maximum(np.cumsum(diffs**2, axis=1) / n - mean**2, 1e-12)
    z = mean / np.sqrt(var / n)
    looks = z[:, 49::50]
    naive = (looks > 1.645).any(axis=1).mean()
    assert naive > 0.15
    assert _alarm_rate(c, b, 0.0, 0.05) <= 0.05


def test_sequential_update_matches_update_many_and_feeds_the_gauges() -> None:
    rng = np.random.default_rng(3)
    c, b = _bernoulli_pairs(rng, 1, 400, 0.9, 0.6)
    one = stats.RegressionMonitor(0.05, 0.05)
    for cc, bb in zip(c[0], b[0], strict=True):
        one.update(float(cc), float(bb))
    batch = stats.RegressionMonitor(0.05, 0.05)
    batch.update_many(c[0, :150], b[0, :150])
    batch.update_many(c[0, 150:], b[0, 150:])
    assert one.log_e_value == pytest.approx(batch.log_e_value)
    assert one.detected and batch.detected and one.detected_at == batch.detected_at
    paths, _ = stats.regression_log_evidence(stats.regression_excess(c, b, 0.05))
    assert paths[0, -1] == pytest.approx(one.log_e_value)

    metrics = ScoreMetrics(CollectorRegistry())
    monitor = stats.RegressionMonitor.for_metrics(metrics, "cand-a", "exact", 0.05, 0.01)
    labels = {"upstream": "cand-a", "scorer": "exact"}
    sample = metrics.registry.get_sample_value
    assert sample("shadoweval_quality_regression_detected", labels) == 0.0
    assert sample("shadoweval_quality_regression_threshold", labels) == pytest.approx(100.0)
    for cc, bb in zip(c[0], b[0], strict=True):
        monitor.update(float(cc), float(bb))
    monitor.update(None, 1.0)  # unscored: skipped
    assert sample("shadoweval_quality_regression_detected", labels) == 1.0
    assert (sample("shadoweval_quality_regression_evidence", labels) or 0.0) >= 100.0
    with pytest.raises(ValueError):
        monitor.update(1.5, 1.0)
    with pytest.raises(ValueError):
        monitor.update_many([0.5], [1.0, 0.0])


# -- rater agreement ----------------------------------------------------------------------


def test_cohens_kappa_matches_the_textbook_example() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    k = stats.cohens_kappa(first, second)
    assert k.value == pytest.approx(0.4)
    assert k.n == 50
    # se = sqrt(0.7 * 0.3 / 50) / 0.5
    assert k.halfwidth == pytest.approx(1.959964 * math.sqrt(0.21 / 50) / 0.5, rel=1e-5)


def test_cohens_kappa_perfect_chance_and_degenerate_agreement() -> None:
    labels = ["win", "tie", "loss"] * 10
    assert stats.cohens_kappa(labels, labels).value == pytest.approx(1.0)
    # Independent raters: kappa near 0 (not the 1/3 raw agreement).
    rng = np.random.default_rng(0)
    a = rng.choice(["win", "tie", "loss"], 4000).tolist()
    b = rng.choice(["win", "tie", "loss"], 4000).tolist()
    chance = stats.cohens_kappa(a, b)
    assert abs(chance.value) < 0.04 and chance.excludes(0.2)
    # Systematic disagreement is below zero.
    assert stats.cohens_kappa(["win", "loss"] * 5, ["loss", "win"] * 5).value == pytest.approx(-1.0)
    # One label everywhere: chance agreement is 1, kappa is 1 only if they agree.
    assert stats.cohens_kappa(["tie"] * 5, ["tie"] * 5).value == 1.0
    assert math.isnan(stats.cohens_kappa([], []).value)
    with pytest.raises(ValueError):
        stats.cohens_kappa(["win"], ["win", "loss"])


def test_unique_rows_matches_numpys_unique_rows() -> None:
    rng = np.random.default_rng(1)
    for trial in range(50):
        n, k = int(rng.integers(2, 300)), int(rng.integers(1, 5))
        rows = rng.integers(0, 4, size=(n, k)) * 0.37 - 0.5
        if trial % 3 == 0:
            rows = rng.random((n, k))  # every row its own kind
        kinds, counts = stats._unique_rows(rows)
        want_kinds, want_counts = np.unique(rows, axis=0, return_counts=True)
        assert np.array_equal(kinds, want_kinds)
        assert np.array_equal(counts, want_counts)
