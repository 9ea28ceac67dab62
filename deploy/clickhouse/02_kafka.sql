-- Fed from the proxy's pairs topic and the scorer's scores topic by ClickHouse's Kafka
-- engine: one String column per message (JSONAsString), typed by the materialized views.
-- Set the broker list, topics and group for your cluster; the group is ClickHouse's own
-- (it commits its offsets), separate from the scorer's group.

CREATE TABLE IF NOT EXISTS shadoweval_pairs_queue (record String)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = 'kafka:9092',
    kafka_topic_list = 'shadoweval.pairs',
    kafka_group_name = 'clickhouse-shadoweval-pairs',
    kafka_format = 'JSONAsString',
    kafka_num_consumers = 1,
    kafka_handle_error_mode = 'stream';

CREATE TABLE IF NOT EXISTS shadoweval_scores_queue (record String)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = 'kafka:9092',
    kafka_topic_list = 'shadoweval.scores',
    kafka_group_name = 'clickhouse-shadoweval-scores',
    kafka_format = 'JSONAsString',
    kafka_num_consumers = 1,
    kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS shadoweval_pairs_mv TO shadoweval_pairs AS
SELECT
    toDate(parsed_ts) AS date,
    parsed_ts AS ts,
    JSONExtractString(record, 'pair_id') AS pair_id,
    JSONExtractString(record, 'request_id') AS request_id,
    JSONExtractString(record, 'source') AS source,
    JSONExtractString(record, 'route') AS route,
    JSONExtract(record, 'task', 'Nullable(String)') AS task,
    JSONExtractString(record, 'primary', 'upstream') AS primary_upstream,
    JSONExtractString(record, 'primary', 'role') AS primary_role,
    JSONExtract(record, 'primary', 'model', 'Nullable(String)') AS primary_model,
    JSONExtract(record, 'primary', 'error_type', 'Nullable(String)') AS primary_error_type,
    JSONExtract(record, 'primary', 'latency_s', 'Nullable(Float64)') AS primary_latency_s,
    JSONExtract(record, 'primary', 'ttft_s', 'Nullable(Float64)') AS primary_ttft_s,
    JSONExtract(record, 'primary', 'attempts', 'Nullable(Int64)') AS primary_attempts,
    JSONExtract(record, 'primary', 'cost_usd', 'Nullable(Float64)') AS primary_cost_usd,
    JSONExtract(record, 'primary', 'usage', 'input_tokens', 'Nullable(Int64)')
        AS primary_input_tokens,
    JSONExtract(record, 'primary', 'usage', 'output_tokens', 'Nullable(Int64)')
        AS primary_output_tokens,
    JSONExtractString(record, 'candidate', 'upstream') AS upstream,
    JSONExtractString(record, 'candidate', 'role') AS role,
    JSONExtract(record, 'candidate', 'model', 'Nullable(String)') AS model,
    JSONExtract(record, 'candidate', 'error_type', 'Nullable(String)') AS error_type,
    JSONExtract(record, 'candidate', 'latency_s', 'Nullable(Float64)') AS latency_s,
    JSONExtract(record, 'candidate', 'ttft_s', 'Nullable(Float64)') AS ttft_s,
    JSONExtract(record, 'candidate', 'attempts', 'Nullable(Int64)') AS attempts,
    JSONExtract(record, 'candidate', 'cost_usd', 'Nullable(Float64)') AS cost_usd,
    JSONExtract(record, 'candidate', 'usage', 'input_tokens', 'Nullable(Int64)') AS input_tokens,
    JSONExtract(record, 'candidate', 'usage', 'output_tokens', 'Nullable(Int64)')
        AS output_tokens,
    record
FROM
(
    SELECT record, parseDateTime64BestEffortOrNull(JSONExtractString(record, 'ts'), 3, 'UTC')
        AS parsed_ts
    FROM shadoweval_pairs_queue
)
WHERE JSONExtractString(record, 'schema') = 'shadoweval.pair.v1' AND parsed_ts IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS shadoweval_scores_mv TO shadoweval_scores AS
SELECT
    toDate(parsed_ts) AS date,
    parsed_ts AS ts,
    JSONExtractString(record, 'pair_id') AS pair_id,
    JSONExtractString(record, 'request_id') AS request_id,
    JSONExtractString(record, 'source') AS source,
    JSONExtract(record, 'task', 'Nullable(String)') AS task,
    JSONExtractString(record, 'upstream') AS upstream,
    JSONExtractString(record, 'role') AS role,
    JSONExtractString(record, 'scorer') AS scorer,
    JSONExtractString(record, 'side') AS side,
    JSONExtract(record, 'value', 'Nullable(Float64)') AS value,
    JSONExtract(record, 'label', 'Nullable(String)') AS label,
    record
FROM
(
    SELECT record, parseDateTime64BestEffortOrNull(JSONExtractString(record, 'ts'), 3, 'UTC')
        AS parsed_ts
    FROM shadoweval_scores_queue
)
WHERE JSONExtractString(record, 'schema') = 'shadoweval.score.v1' AND parsed_ts IS NOT NULL;
