-- The report's core figures in ClickHouse SQL (point estimates; the intervals, tails and
-- verdicts stay with `shadoweval report`). Each query follows a `-- name:` line.
-- Latency quantiles use quantilesExactInclusive: linear interpolation, as the report's
-- numpy.quantile. Latency and cost count pairs where both sides answered, as the report.
-- Every source is counted; add `WHERE source = 'traffic'` to leave replays and probes out.

-- name: per_candidate
SELECT
    upstream,
    count() AS pairs,
    avg(error_type IS NOT NULL) AS failure_rate,
    avg(primary_error_type IS NOT NULL) AS primary_failure_rate,
    quantilesExactInclusiveIf(0.5, 0.95, 0.99)(
        latency_s, error_type IS NULL AND primary_error_type IS NULL
    ) AS latency_p50_p95_p99,
    avgIf(
        cost_usd,
        error_type IS NULL AND primary_error_type IS NULL
            AND cost_usd IS NOT NULL AND primary_cost_usd IS NOT NULL
    ) AS cost_per_request
FROM shadoweval_pairs FINAL

GROUP BY upstream
ORDER BY upstream;

-- name: per_candidate_by_day
SELECT
    date,
    upstream,
    count() AS pairs,
    avg(error_type IS NOT NULL) AS failure_rate,
    quantilesExactInclusiveIf(0.5, 0.95, 0.99)(
        latency_s, error_type IS NULL AND primary_error_type IS NULL
    ) AS latency_p50_p95_p99,
    sumIf(cost_usd, error_type IS NULL) AS cost_usd
FROM shadoweval_pairs FINAL

GROUP BY date, upstream
ORDER BY date, upstream;

-- name: per_candidate_by_task
SELECT
    ifNull(task, '') AS task,
    upstream,
    count() AS pairs,
    avg(error_type IS NOT NULL) AS failure_rate,
    quantilesExactInclusiveIf(0.5, 0.95, 0.99)(
        latency_s, error_type IS NULL AND primary_error_type IS NULL
    ) AS latency_p50_p95_p99
FROM shadoweval_pairs FINAL

GROUP BY task, upstream
ORDER BY task, upstream;

-- name: quality_per_scorer
-- Per-side scorers: each side's mean over the pairs where it was scored, and the paired
-- difference over the pairs where both were (the report's difference).
SELECT
    upstream,
    scorer,
    count(c) AS n_candidate,
    countIf(isNotNull(c) AND isNotNull(p)) AS n_paired,
    avg(c) AS candidate_mean,
    avg(p) AS baseline_mean,
    avgIf(c - p, isNotNull(c) AND isNotNull(p)) AS difference
FROM
(
    SELECT pair_id, scorer, any(upstream) AS upstream,
        anyIf(value, side = 'candidate') AS c, anyIf(value, side = 'primary') AS p
    FROM shadoweval_scores FINAL
    WHERE side IN ('candidate', 'primary')
    GROUP BY pair_id, scorer
)
GROUP BY upstream, scorer
ORDER BY upstream, scorer;

-- name: pair_quality_per_scorer
-- Pair scorers (agreement with the primary's answer, pairwise judge).
SELECT upstream, scorer, count() AS n, avg(value) AS mean
FROM shadoweval_scores FINAL
WHERE side = 'pair' AND value IS NOT NULL
GROUP BY upstream, scorer
ORDER BY upstream, scorer;

-- name: quality_by_day
SELECT date, upstream, scorer, count(c) AS n_candidate, avg(c) AS candidate_mean,
    avg(p) AS baseline_mean
FROM
(
    SELECT pair_id, scorer, any(date) AS date, any(upstream) AS upstream,
        anyIf(value, side = 'candidate') AS c, anyIf(value, side = 'primary') AS p
    FROM shadoweval_scores FINAL
    WHERE side IN ('candidate', 'primary')
    GROUP BY pair_id, scorer
)
GROUP BY date, upstream, scorer
ORDER BY date, upstream, scorer;
