-- shadoweval pairs and scores in ClickHouse: the columns of the Parquet archive
-- (shadoweval/archive/write.py) plus the record's JSON text.
-- ReplacingMergeTree: a re-delivered pair, or a re-score, replaces the row of the same key
-- (pairs: pair_id; scores: pair_id, scorer, side) when parts merge; queries read FINAL.

CREATE TABLE IF NOT EXISTS shadoweval_pairs
(
    date Date,
    ts DateTime64(3, 'UTC'),
    pair_id String,
    request_id String,
    source LowCardinality(String),
    route LowCardinality(String),
    task Nullable(String),
    primary_upstream LowCardinality(String),
    primary_role LowCardinality(String),
    primary_model Nullable(String),
    primary_error_type Nullable(String),
    primary_latency_s Nullable(Float64),
    primary_ttft_s Nullable(Float64),
    primary_attempts Nullable(Int64),
    primary_cost_usd Nullable(Float64),
    primary_input_tokens Nullable(Int64),
    primary_output_tokens Nullable(Int64),
    upstream LowCardinality(String),
    role LowCardinality(String),
    model Nullable(String),
    error_type Nullable(String),
    latency_s Nullable(Float64),
    ttft_s Nullable(Float64),
    attempts Nullable(Int64),
    cost_usd Nullable(Float64),
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    record String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (upstream, date, pair_id);

CREATE TABLE IF NOT EXISTS shadoweval_scores
(
    date Date,
    ts DateTime64(3, 'UTC'),
    pair_id String,
    request_id String,
    source LowCardinality(String),
    task Nullable(String),
    upstream LowCardinality(String),
    role LowCardinality(String),
    scorer LowCardinality(String),
    side LowCardinality(String),
    value Nullable(Float64),
    label Nullable(String),
    record String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (upstream, scorer, side, date, pair_id);
