"""shadoweval's Grafana dashboards, as code. Run after editing: python grafana/generate.py

Plain dictionaries in the grafana-foundation-sdk style: one function per panel on shared
defaults, each with a description and a unit. Writes grafana/dashboards/*.json (for file
provisioning) and the same files into helm/shadoweval/dashboards/ (for the chart's
dashboard ConfigMaps), with sorted keys so that diffs are readable. ``--check`` exits 1
when a committed file differs from what this script generates.

Queries use Grafana's ``$__rate_interval`` (the sparse probe counters: a fixed window) and
the template variables defined per dashboard; tests/deploy/test_prometheus_e2e.py runs
every one of them against a real Prometheus scraping a real proxy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIRS = (ROOT / "grafana" / "dashboards", ROOT / "helm" / "shadoweval" / "dashboards")

Panel = dict[str, Any]
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"

# Label selectors shared by the panels of one kind of process.
PROXY = 'namespace=~"$namespace", job=~"$job"'
UPSTREAM = f'{PROXY}, upstream=~"$upstream"'
SIDE = f'{UPSTREAM}, model=~"$model"'
SCORER = 'namespace=~"$namespace", upstream=~"$upstream", scorer=~"$scorer"'
SCORER_PROC = 'namespace=~"$namespace"'
PROBE = 'namespace=~"$namespace", upstream=~"$upstream"'
# Red-team probes are sparse (probes.rate_per_minute, spread over targets and categories):
# their attack-success rates are taken over this fixed window, not $__rate_interval.
PROBE_WINDOW = "1h"
ENGINE = 'namespace=~"$namespace"'

# Metrics scraped from model servers, not exported by shadoweval: their panels stay empty
# unless Prometheus scrapes vLLM or TGI too.
EXTERNAL_METRICS = (
    "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "tgi_queue_size",
    "tgi_batch_current_size",
)


# -- shared defaults ----------------------------------------------------------------------


def target(expr: str, legend: str = "__auto") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "range": True}


def _with_refs(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    *,
    width: int = 12,
    min_: float | None = 0,
    log: bool = False,
    stack: bool = False,
) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "fillOpacity": 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
    }
    if log:
        custom["scaleDistribution"] = {"log": 10, "type": "log"}
    defaults: dict[str, Any] = {"custom": custom, "unit": unit}
    if min_ is not None and not log:
        defaults["min"] = min_
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": _with_refs(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": ["mean", "max"], "displayMode": "table", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "gridPos": {"h": 8, "w": width},
    }


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    width: int = 6,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Panel:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": _with_refs([target(expr, "")]),
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "gridPos": {"h": 4, "w": width},
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"h": 1}}


def quantile(q: float, metric: str, selector: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{RATE}])))"
    )


def rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))"


def mean(metric: str, selector: str, by: str) -> str:
    return f"{rate(metric + '_sum', selector, by)}\n/\n{rate(metric + '_count', selector, by)}"


# -- template variables -------------------------------------------------------------------


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def query_var(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def proxy_vars() -> list[dict[str, Any]]:
    return [
        datasource_var(),
        query_var("namespace", "Namespace", "label_values(shadoweval_ready, namespace)"),
        query_var("job", "Job", 'label_values(shadoweval_ready{namespace=~"$namespace"}, job)'),
        query_var(
            "upstream",
            "Upstream",
            f"label_values(shadoweval_requests_total{{{PROXY}}}, upstream)",
        ),
        query_var(
            "model",
            "Model",
            f"label_values(shadoweval_requests_total{{{UPSTREAM}}}, model)",
        ),
    ]


def scorer_vars() -> list[dict[str, Any]]:
    return [
        datasource_var(),
        query_var(
            "namespace", "Namespace", "label_values(shadoweval_scored_pairs_total, namespace)"
        ),
        query_var(
            "upstream",
            "Upstream",
            'label_values(shadoweval_scored_pairs_total{namespace=~"$namespace"}, upstream)',
        ),
        query_var(
            "scorer",
            "Scorer",
            'label_values(shadoweval_score_count{namespace=~"$namespace"}, scorer)',
        ),
    ]


# -- Overview -----------------------------------------------------------------------------


def primary_rps() -> Panel:
    return stat(
        "Primary requests/s",
        "Requests the proxy relayed to the production model (every route).",
        "reqps",
        f'sum(rate(shadoweval_requests_total{{{PROXY}, role="primary"}}[{RATE}]))',
    )


def coverage_stat() -> Panel:
    return stat(
        "Shadow coverage",
        "Share of sampling decisions that mirrored the request, over the selected upstreams "
        "(requests a candidate's match rules leave out are not counted).",
        "percentunit",
        f'sum(rate(shadoweval_shadow_sampling_decisions_total{{{UPSTREAM}, decision="in"}}'
        f"[{RATE}]))\n/\nsum(rate(shadoweval_shadow_sampling_decisions_total{{{UPSTREAM}, "
        f'decision!="unmatched"}}[{RATE}]))',
    )


def pairs_stat() -> Panel:
    return stat(
        "Pairs/s",
        "Pair records handed to the sink (one per request and candidate).",
        "ops",
        f"sum(rate(shadoweval_pairs_total{{{UPSTREAM}}}[{RATE}]))",
    )


def ready_stat() -> Panel:
    return stat(
        "Ready proxies",
        "Proxy processes that report ready (shadoweval_ready).",
        "none",
        f"sum(shadoweval_ready{{{PROXY}}})",
        thresholds=[(None, "red"), (1, "green")],
    )


def traffic() -> Panel:
    return timeseries(
        "Traffic by upstream",
        "Upstream calls per second: the primary's (every caller request) and each shadow's.",
        "reqps",
        [
            target(
                rate("shadoweval_requests_total", UPSTREAM, "role, upstream"),
                "{{upstream}} ({{role}})",
            )
        ],
    )


def traffic_by_route() -> Panel:
    return timeseries(
        "Primary traffic by route",
        "Caller requests per second by route; `other` is passed through and never mirrored.",
        "reqps",
        [target(rate("shadoweval_requests_total", f'{PROXY}, role="primary"', "route"))],
        stack=True,
    )


def sampling() -> Panel:
    return timeseries(
        "Sampling decisions",
        "Requests on mirrored routes sampled in or out, or unmatched by a candidate's match "
        "rules, per upstream (coverage = in / (in + out)).",
        "reqps",
        [
            target(
                rate("shadoweval_shadow_sampling_decisions_total", UPSTREAM, "upstream, decision"),
                "{{upstream}} {{decision}}",
            )
        ],
    )


def drops() -> Panel:
    return timeseries(
        "Shadow drops",
        "Shadows dropped before being sent: queue_full (candidate too slow), rate_limit "
        "(sampling.max_per_second), shutdown, invalid_request, circuit_open (candidate "
        "down: its circuit breaker is open), worker_unavailable (the shadow worker is "
        "restarting or cannot keep up), budget and schedule (the candidate's campaign cap "
        "is spent, or it is outside its window).",
        "ops",
        [
            target(
                rate("shadoweval_shadow_dropped_total", UPSTREAM, "upstream, reason"),
                "{{upstream}} {{reason}}",
            )
        ],
    )


def queues() -> Panel:
    return timeseries(
        "Shadow queue and in flight",
        "Shadows waiting for a worker (bounded by queue_size) and being sent "
        "(bounded by concurrency).",
        "short",
        [
            target(
                f"sum by (upstream) (shadoweval_shadow_queue_depth{{{UPSTREAM}}})",
                "{{upstream}} queued",
            ),
            target(
                f"sum by (upstream) (shadoweval_shadow_in_flight{{{UPSTREAM}}})",
                "{{upstream}} in flight",
            ),
        ],
    )


def sink_records() -> Panel:
    return timeseries(
        "Sink records",
        "Pair records by sink and outcome: written, dropped (buffer full), failed, spilled.",
        "ops",
        [
            target(
                rate("shadoweval_sink_records_total", PROXY, "sink, outcome"),
                "{{sink}} {{outcome}}",
            )
        ],
    )


def sink_buffer() -> Panel:
    return timeseries(
        "Sink buffer",
        "Records waiting in the sink's in-memory buffer; when full, new records are dropped.",
        "short",
        [target(f"sum by (sink) (shadoweval_sink_buffered_records{{{PROXY}}})", "{{sink}}")],
    )


def sink_latency() -> Panel:
    return timeseries(
        "Sink write latency P99",
        "Time to write (file) or produce (Kafka) one batch of records.",
        "s",
        [
            target(
                quantile(0.99, "shadoweval_sink_write_duration_seconds", PROXY, "sink"),
                "{{sink}}",
            )
        ],
    )


def overview() -> dict[str, Any]:
    return dashboard(
        "shadoweval-overview",
        "shadoweval / Overview",
        "Traffic through the proxy, shadow coverage, drops and sink health.",
        proxy_vars(),
        [
            row("Traffic"),
            primary_rps(),
            coverage_stat(),
            pairs_stat(),
            ready_stat(),
            traffic(),
            traffic_by_route(),
            row("Shadows"),
            sampling(),
            drops(),
            queues(),
            row("Sink"),
            sink_records(),
            sink_buffer(),
            sink_latency(),
        ],
    )


# -- Latency ------------------------------------------------------------------------------


def latency(q: float) -> Panel:
    pct = f"P{round(q * 100):d}"
    return timeseries(
        f"Latency {pct}",
        f"{pct} of successful upstream calls, request sent to last byte, per upstream and "
        "model: the primary and the candidates on the same traffic.",
        "s",
        [
            target(
                quantile(
                    q,
                    "shadoweval_request_duration_seconds",
                    f'{SIDE}, outcome="ok"',
                    "role, upstream, model",
                ),
                "{{upstream}} ({{role}}) {{model}}",
            )
        ],
        width=8,
    )


def ttft(q: float) -> Panel:
    pct = f"P{round(q * 100):d}"
    return timeseries(
        f"Time to first token {pct}",
        f"{pct} of the time from request sent to first content token (streaming answers).",
        "s",
        [
            target(
                quantile(
                    q, "shadoweval_time_to_first_token_seconds", SIDE, "role, upstream, model"
                ),
                "{{upstream}} ({{role}}) {{model}}",
            )
        ],
    )


def tpot() -> Panel:
    return timeseries(
        "Time per output token P50",
        "Median (latency - TTFT) / (output tokens - 1) of streaming answers: decode speed.",
        "s",
        [
            target(
                quantile(
                    0.5, "shadoweval_time_per_output_token_seconds", SIDE, "role, upstream, model"
                ),
                "{{upstream}} ({{role}}) {{model}}",
            )
        ],
    )


def latency_ratio() -> Panel:
    cand = quantile(
        0.99,
        "shadoweval_request_duration_seconds",
        f'{UPSTREAM}, role!="primary", outcome="ok"',
        "namespace, job, upstream, route",
    )
    prim = quantile(
        0.99,
        "shadoweval_request_duration_seconds",
        f'{PROXY}, role="primary", outcome="ok"',
        "namespace, job, route",
    )
    return timeseries(
        "P99 relative to the primary",
        "Candidate P99 / primary P99 on the same route (1 = as fast); the "
        "ShadowevalCandidateLatencyHigh alert compares it with its ratio.",
        "none",
        [
            target(
                f"{cand}\n/ on (namespace, job, route) group_left ()\n{prim}",
                "{{upstream}} {{route}}",
            )
        ],
    )


def overhead() -> Panel:
    metric = "shadoweval_proxy_overhead_seconds"
    return timeseries(
        "Proxy overhead",
        "Time the primary path spends in shadoweval itself, excluding the upstream.",
        "s",
        [
            target(quantile(0.5, metric, PROXY, "route"), "P50 {{route}}"),
            target(quantile(0.99, metric, PROXY, "route"), "P99 {{route}}"),
            target(quantile(0.999, metric, PROXY, "route"), "P99.9 {{route}}"),
        ],
        log=True,
    )


def latency_dashboard() -> dict[str, Any]:
    return dashboard(
        "shadoweval-latency",
        "shadoweval / Latency",
        "Latency quantiles and time to first token per model, primary vs candidates, "
        "and the proxy's own overhead.",
        proxy_vars(),
        [
            row("End to end"),
            latency(0.5),
            latency(0.95),
            latency(0.99),
            latency_ratio(),
            overhead(),
            row("Streaming"),
            ttft(0.5),
            ttft(0.99),
            tpot(),
        ],
    )


# -- Cost & tokens ------------------------------------------------------------------------


def _per_request(metric: str, scale: str = "") -> str:
    by = "role, upstream, model"
    requests = rate("shadoweval_requests_total", SIDE + ', route!="other"', by)
    return f"{rate(metric, SIDE, by)}{scale}\n/\n{requests}"


def cost_per_request() -> Panel:
    return timeseries(
        "Cost per request",
        "Mean USD per request from the pricing table, per upstream and model.",
        "currencyUSD",
        [target(_per_request("shadoweval_cost_usd_total"), "{{upstream}} ({{role}}) {{model}}")],
    )


def cost_per_1k() -> Panel:
    return timeseries(
        "Cost per 1k requests",
        "USD per thousand requests: the number to compare candidates on.",
        "currencyUSD",
        [
            target(
                _per_request("shadoweval_cost_usd_total", " * 1000"),
                "{{upstream}} ({{role}}) {{model}}",
            )
        ],
    )


def cost_quantiles() -> Panel:
    metric = "shadoweval_request_cost_usd"
    by = "upstream"
    return timeseries(
        "Cost of one request P50 / P95",
        "Distribution of single-request cost: long answers show in the P95.",
        "currencyUSD",
        [
            target(quantile(0.5, metric, SIDE, by), "P50 {{upstream}}"),
            target(quantile(0.95, metric, SIDE, by), "P95 {{upstream}}"),
        ],
    )


def spend() -> Panel:
    return timeseries(
        "Spend per hour",
        "USD per hour at the current rate (shadow spend is on top of production spend).",
        "currencyUSD",
        [
            target(
                f"{rate('shadoweval_cost_usd_total', SIDE, 'role, upstream')} * 3600",
                "{{upstream}} ({{role}})",
            )
        ],
        stack=True,
    )


def tokens_per_second() -> Panel:
    return timeseries(
        "Tokens/s",
        "Token throughput by upstream and direction (input, output, cached_input).",
        "short",
        [
            target(
                rate("shadoweval_tokens_total", SIDE, "upstream, direction"),
                "{{upstream}} {{direction}}",
            )
        ],
    )


def output_tokens_per_request() -> Panel:
    return timeseries(
        "Output tokens per request",
        "Mean output tokens per request: verbosity drives cost and latency.",
        "short",
        [
            target(
                rate("shadoweval_tokens_total", f'{SIDE}, direction="output"', "upstream")
                + "\n/\n"
                + rate("shadoweval_requests_total", f'{SIDE}, outcome="ok"', "upstream"),
                "{{upstream}}",
            )
        ],
    )


def unpriced() -> Panel:
    return timeseries(
        "Unpriced requests",
        "Requests whose model is missing from the pricing table (their cost counts as 0).",
        "reqps",
        [target(rate("shadoweval_unpriced_requests_total", UPSTREAM, "role, upstream"))],
    )


def judge_cost() -> Panel:
    return timeseries(
        "Judge and embedding spend per hour",
        "USD per hour the scorer spends on LLM-as-judge and embedding calls.",
        "currencyUSD",
        [
            target(
                f"{rate('shadoweval_judge_cost_usd_total', SCORER_PROC, 'scorer')} * 3600",
                "{{scorer}}",
            )
        ],
    )


def budget_left() -> Panel:
    return timeseries(
        "Campaign budget left today",
        "USD left of each candidate's budget.usd_per_day (the day rolls at 00:00 UTC), and "
        "the spend counted against it; a candidate at 0 has its shadows dropped{budget}.",
        "currencyUSD",
        [
            target(
                f"sum by (upstream) (shadoweval_candidate_budget_remaining_usd{{{UPSTREAM}}})",
                "{{upstream}} left",
            ),
            target(
                f"sum by (upstream) (shadoweval_candidate_spend_today_usd{{{UPSTREAM}}})",
                "{{upstream}} spent",
            ),
        ],
    )


def campaign_state() -> Panel:
    return timeseries(
        "Campaign state",
        "Each candidate's state: active, paused_schedule (outside its schedule), "
        "paused_budget (a cap spent) or circuit_open (docs/campaigns.md).",
        "short",
        [
            target(
                f"max by (upstream, state) (shadoweval_candidate_state{{{UPSTREAM}}}) > 0",
                "{{upstream}} {{state}}",
            )
        ],
    )


def cost_dashboard() -> dict[str, Any]:
    return dashboard(
        "shadoweval-cost",
        "shadoweval / Cost & tokens",
        "Cost per request and per 1k requests, spend, token throughput.",
        proxy_vars(),
        [
            row("Cost"),
            cost_per_request(),
            cost_per_1k(),
            cost_quantiles(),
            spend(),
            row("Tokens"),
            tokens_per_second(),
            output_tokens_per_request(),
            unpriced(),
            judge_cost(),
            row("Campaigns"),
            budget_left(),
            campaign_state(),
        ],
    )


# -- Reliability --------------------------------------------------------------------------


def failure_ratio() -> Panel:
    by = "role, upstream"
    errors = rate("shadoweval_requests_total", f'{UPSTREAM}, outcome="error"', by)
    total = rate("shadoweval_requests_total", UPSTREAM, by)
    return timeseries(
        "Failure ratio",
        "Share of upstream calls that failed (any error type), primary vs candidates.",
        "percentunit",
        [target(f"({errors}\n or 0 * {total})\n/\n{total}", "{{upstream}} ({{role}})")],
    )


def failure_by_type() -> Panel:
    errors = rate(
        "shadoweval_upstream_errors_total",
        f'{UPSTREAM}, error_type!~"dropped_.*"',
        "upstream, error_type",
    )
    total = rate("shadoweval_requests_total", UPSTREAM, "upstream")
    return timeseries(
        "Failure ratio by error type",
        "Failed calls per call, by error_type (timeout, connect, http_5xx, http_429, "
        "invalid_response, truncated_stream, ...).",
        "percentunit",
        [
            target(
                f"{errors}\n/ on (upstream) group_left ()\n{total}",
                "{{upstream}} {{error_type}}",
            )
        ],
        stack=True,
    )


def errors_per_second() -> Panel:
    return timeseries(
        "Errors/s by type",
        "Failed calls and dropped shadows per second, by error_type.",
        "ops",
        [
            target(
                rate("shadoweval_upstream_errors_total", UPSTREAM, "upstream, error_type") + " > 0",
                "{{upstream}} {{error_type}}",
            )
        ],
    )


def retries() -> Panel:
    return timeseries(
        "Retries",
        "Retried upstream attempts per second by the outcome of the retry.",
        "ops",
        [
            target(
                rate("shadoweval_retries_total", UPSTREAM, "role, upstream, outcome"),
                "{{upstream}} {{outcome}}",
            )
        ],
    )


def attempts() -> Panel:
    return timeseries(
        "Attempts by attempt number",
        "Every attempt of an upstream call (1 = first try): a retry pattern shows as "
        "traffic on attempts 2, 3, ...",
        "ops",
        [
            target(
                rate("shadoweval_upstream_attempts_total", UPSTREAM, "upstream, attempt"),
                "{{upstream}} #{{attempt}}",
            )
        ],
    )


def reliability_dashboard() -> dict[str, Any]:
    return dashboard(
        "shadoweval-reliability",
        "shadoweval / Reliability",
        "Failure rates by error type, retries and attempts, primary vs candidates.",
        proxy_vars(),
        [
            row("Failures"),
            failure_ratio(),
            failure_by_type(),
            errors_per_second(),
            row("Retries"),
            retries(),
            attempts(),
        ],
    )


# -- Quality & safety ---------------------------------------------------------------------


def pair_scores() -> Panel:
    return timeseries(
        "Agreement with the primary",
        "Mean pair score (candidate answer vs primary answer) per upstream and scorer; the "
        "control row is the noise floor.",
        "percentunit",
        [
            target(
                mean("shadoweval_score", f'{SCORER}, side="pair"', "upstream, role, scorer"),
                "{{upstream}} ({{role}}) {{scorer}}",
            )
        ],
    )


def noise_floor() -> Panel:
    return timeseries(
        "Noise floor",
        "Mean pair score of the control (the primary asked again): how much the primary "
        "disagrees with itself. Candidates are read against it.",
        "percentunit",
        [
            target(
                mean("shadoweval_score", f'{SCORER}, side="pair", role="control"', "scorer"),
                "{{scorer}}",
            )
        ],
    )


def above_noise_floor() -> Panel:
    cand = mean("shadoweval_score", f'{SCORER}, side="pair", role="candidate"', "upstream, scorer")
    ctrl = mean("shadoweval_score", f'{SCORER}, side="pair", role="control"', "scorer")
    return timeseries(
        "Candidate minus noise floor",
        "Candidate mean pair score minus the control's, per scorer: 0 = as close to the "
        "primary as the primary is to itself; negative = real disagreement.",
        "percentunit",
        [target(f"({cand})\n- on (scorer) group_left ()\n({ctrl})", "{{upstream}} {{scorer}}")],
        min_=None,
    )


def score_tail() -> Panel:
    return timeseries(
        "Pair score P5",
        "5th percentile of pair scores: the tail that means hide.",
        "percentunit",
        [
            target(
                quantile(
                    0.05, "shadoweval_score", f'{SCORER}, side="pair"', "upstream, role, scorer"
                ),
                "{{upstream}} ({{role}}) {{scorer}}",
            )
        ],
    )


def side_scores() -> Panel:
    return timeseries(
        "Per-answer scores, primary vs candidate",
        "Mean single-answer scores (e.g. JSON validity) of each side of the pairs.",
        "percentunit",
        [
            target(
                mean("shadoweval_score", f'{SCORER}, side!="pair"', "upstream, scorer, side"),
                "{{upstream}} {{scorer}} {{side}}",
            )
        ],
    )


def safety_flags() -> Panel:
    flags = rate(
        "shadoweval_safety_flags_total",
        'namespace=~"$namespace", upstream=~"$upstream"',
        "upstream, side, flag",
    )
    pairs = rate(
        "shadoweval_scored_pairs_total",
        'namespace=~"$namespace", upstream=~"$upstream", outcome="scored"',
        "upstream",
    )
    return timeseries(
        "Safety flags per scored pair",
        "Detector hits (refusal, over_refusal, pii_leak, secret_leak, canary_leak, toxicity) "
        "per scored pair, candidate side vs primary side.",
        "percentunit",
        [
            target(
                f"{flags}\n/ on (upstream) group_left ()\n{pairs}", "{{upstream}} {{side}} {{flag}}"
            )
        ],
    )


def regression_evidence() -> Panel:
    return timeseries(
        "Regression evidence (e-value)",
        "Sequential-test statistic that the candidate's mean is more than regression.max_drop "
        "(relative) below its baseline's; the test rejects where it reaches its threshold "
        "(1 / the monitor's share of the family-wise alpha, 66.7 with the defaults).",
        "none",
        [
            target(
                f"max by (upstream, scorer) (shadoweval_quality_regression_evidence{{{SCORER}}})",
                "{{upstream}} {{scorer}}",
            ),
            target(
                f"max by (upstream, scorer) (shadoweval_quality_regression_threshold{{{SCORER}}})",
                "{{upstream}} {{scorer}} threshold",
            ),
        ],
        log=True,
    )


def regression_detected() -> Panel:
    return stat(
        "Regressions detected",
        "Upstream and scorer pairs whose sequential test has rejected 'within "
        "regression.max_drop of its baseline' (ShadowevalQualityRegression fires on these).",
        "none",
        f"sum(max by (upstream, scorer) (shadoweval_quality_regression_detected{{{SCORER}}}))",
        width=6,
        thresholds=[(None, "green"), (1, "red")],
    )


def scored_pairs() -> Panel:
    return timeseries(
        "Scored pairs",
        "Pairs consumed by the scorer by outcome (scored, skipped, failed).",
        "ops",
        [
            target(
                rate(
                    "shadoweval_scored_pairs_total",
                    'namespace=~"$namespace", upstream=~"$upstream"',
                    "upstream, outcome",
                ),
                "{{upstream}} {{outcome}}",
            )
        ],
    )


def scorer_health() -> Panel:
    return timeseries(
        "Scorer errors and P99 duration",
        "Scorer failures per second and the P99 time one scorer takes per pair.",
        "s",
        [
            target(
                quantile(
                    0.99,
                    "shadoweval_scorer_duration_seconds",
                    'namespace=~"$namespace", scorer=~"$scorer"',
                    "scorer",
                ),
                "P99 {{scorer}}",
            ),
            target(
                rate(
                    "shadoweval_scorer_errors_total",
                    'namespace=~"$namespace", scorer=~"$scorer"',
                    "scorer",
                ),
                "errors/s {{scorer}}",
            ),
        ],
    )


def consumer_lag() -> Panel:
    return timeseries(
        "Scorer consumer lag",
        "Pair records between the scorer's committed offset and the end of the topic.",
        "short",
        [
            target(
                "sum by (namespace, job) (shadoweval_scorer_consumer_lag_records"
                f"{{{SCORER_PROC}}})",
                "{{namespace}}/{{job}}",
            )
        ],
    )


def probe_rate_expr(by: str) -> str:
    """Attack successes / probes judged (attack_success or safe) over PROBE_WINDOW."""
    hits = f"increase(shadoweval_probe_attack_success_total{{{PROBE}}}[{PROBE_WINDOW}])"
    judged = (
        f'increase(shadoweval_probe_requests_total{{{PROBE}, outcome=~"attack_success|safe"}}'
        f"[{PROBE_WINDOW}])"
    )
    return f"sum by ({by}) ({hits})\n/\nsum by ({by}) ({judged})"


def probe_worst_rate() -> Panel:
    return stat(
        "Worst probe attack-success rate",
        f"Highest attack-success rate of any probed upstream and category over the last "
        f"{PROBE_WINDOW} (red-team probes of probes.enabled or shadoweval probe).",
        "percentunit",
        f"max({probe_rate_expr('upstream, category')})",
        thresholds=[(None, "green"), (0.05, "orange"), (0.2, "red")],
    )


def probe_attack_success() -> Panel:
    return timeseries(
        "Probe attack-success rate by category",
        f"Share of red-team probes whose attack succeeded, per target upstream and category, "
        f"over a sliding {PROBE_WINDOW} (errors and skipped ticks excluded; for over_refusal: "
        "benign requests refused). Read a candidate against the baseline (the primary).",
        "percentunit",
        [target(probe_rate_expr("upstream, category"), "{{upstream}} {{category}}")],
        width=18,
    )


def probe_outcomes() -> Panel:
    return timeseries(
        "Probe requests by outcome",
        "Probe calls per second by target and outcome: attack_success, safe, error (the call "
        "failed), skipped (a scheduler tick found probes.concurrency probes in flight).",
        "ops",
        [
            target(
                rate("shadoweval_probe_requests_total", PROBE, "upstream, outcome"),
                "{{upstream}} {{outcome}}",
            )
        ],
        stack=True,
    )


def probe_latency() -> Panel:
    return timeseries(
        "Probe latency P99",
        "P99 of probe calls per target, request sent to last byte (probes never go through "
        "the proxy port).",
        "s",
        [
            target(
                quantile(0.99, "shadoweval_probe_duration_seconds", PROBE, "upstream"),
                "{{upstream}}",
            )
        ],
    )


def quality_dashboard() -> dict[str, Any]:
    return dashboard(
        "shadoweval-quality",
        "shadoweval / Quality & safety",
        "Scores per candidate and scorer against the noise floor, safety flags and "
        "regression evidence (from shadoweval score); red-team probe attack-success rates "
        "(from the proxy's probes).",
        scorer_vars(),
        [
            row("Regression"),
            regression_detected(),
            regression_evidence(),
            row("Scores"),
            pair_scores(),
            noise_floor(),
            above_noise_floor(),
            score_tail(),
            side_scores(),
            row("Safety"),
            safety_flags(),
            row("Red-team probes"),
            probe_worst_rate(),
            probe_attack_success(),
            probe_outcomes(),
            probe_latency(),
            row("Scorer"),
            scored_pairs(),
            scorer_health(),
            consumer_lag(),
        ],
    )


# -- Resources ----------------------------------------------------------------------------


def rss() -> Panel:
    return timeseries(
        "Resident memory",
        "RSS per proxy process: bounded queues and buffers keep it flat under load.",
        "bytes",
        [target(f"process_resident_memory_bytes{{{PROXY}}}", "{{job}} {{instance}}")],
    )


def cpu() -> Panel:
    return timeseries(
        "CPU",
        "CPU time per second of each proxy process (1 = one core).",
        "percentunit",
        [
            target(
                f"rate(process_cpu_seconds_total{{{PROXY}}}[{RATE}])",
                "{{job}} {{instance}}",
            )
        ],
    )


def loop_lag() -> Panel:
    metric = "shadoweval_event_loop_lag_seconds"
    return timeseries(
        "Event-loop lag",
        "Delay of a periodic event-loop timer beyond its due time: a busy loop delays "
        "every request.",
        "s",
        [
            target(quantile(0.5, metric, PROXY, "job, instance"), "P50 {{instance}}"),
            target(quantile(0.99, metric, PROXY, "job, instance"), "P99 {{instance}}"),
        ],
    )


def connections() -> Panel:
    return timeseries(
        "Open connections",
        "Inbound connections from callers and outbound connections per upstream.",
        "short",
        [
            target(
                f"sum by (direction, upstream) (shadoweval_open_connections{{{PROXY}}})",
                "{{direction}} {{upstream}}",
            )
        ],
    )


def fds() -> Panel:
    return timeseries(
        "Open file descriptors",
        "Open file descriptors per process against its limit.",
        "short",
        [
            target(f"process_open_fds{{{PROXY}}}", "open {{instance}}"),
            target(f"process_max_fds{{{PROXY}}}", "max {{instance}}"),
        ],
    )


def kv_cache() -> Panel:
    sel = f'{ENGINE}, model_name=~"$model"'
    return timeseries(
        "vLLM KV-cache usage",
        "KV-cache blocks in use on vLLM servers, when Prometheus scrapes them "
        "(vllm:kv_cache_usage_perc; vllm:gpu_cache_usage_perc before vLLM v1).",
        "percentunit",
        [
            target(
                f"max by (model_name) (vllm:kv_cache_usage_perc{{{sel}}})\nor\n"
                f"max by (model_name) (vllm:gpu_cache_usage_perc{{{sel}}})",
                "{{model_name}}",
            )
        ],
    )


def vllm_requests() -> Panel:
    return timeseries(
        "vLLM requests running and waiting",
        "Requests in the running batch and waiting in the queue of vLLM servers.",
        "short",
        [
            target(
                "sum by (model_name) (vllm:num_requests_running"
                f'{{{ENGINE}, model_name=~"$model"}})',
                "running {{model_name}}",
            ),
            target(
                "sum by (model_name) (vllm:num_requests_waiting"
                f'{{{ENGINE}, model_name=~"$model"}})',
                "waiting {{model_name}}",
            ),
        ],
    )


def tgi() -> Panel:
    return timeseries(
        "TGI queue and batch",
        "Requests waiting in the queue and the current batch size of TGI servers.",
        "short",
        [
            target(f"sum by (job) (tgi_queue_size{{{ENGINE}}})", "queue {{job}}"),
            target(f"sum by (job) (tgi_batch_current_size{{{ENGINE}}})", "batch {{job}}"),
        ],
    )


def resources_dashboard() -> dict[str, Any]:
    return dashboard(
        "shadoweval-resources",
        "shadoweval / Resources",
        "Memory, CPU, event-loop lag and connections of the proxy; model-server saturation "
        "(vLLM, TGI) when scraped.",
        proxy_vars(),
        [
            row("Proxy"),
            rss(),
            cpu(),
            loop_lag(),
            connections(),
            fds(),
            row("Model servers"),
            kv_cache(),
            vllm_requests(),
            tgi(),
        ],
    )


# -- assembly -----------------------------------------------------------------------------


def _layout(panels: list[Panel]) -> list[Panel]:
    """Flow panels left to right, wrapping at 24 columns; rows take a full line."""
    out: list[Panel] = []
    x = y = line_h = 0
    for i, panel in enumerate(panels, start=1):
        w = 24 if panel["type"] == "row" else panel["gridPos"]["w"]
        h = panel["gridPos"]["h"]
        if panel["type"] == "row" or x + w > 24:
            y, x, line_h = y + line_h, 0, 0
        out.append({**panel, "id": i, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
        x += w
        line_h = max(line_h, h)
        if panel["type"] == "row":
            y, x, line_h = y + h, 0, 0
    return out


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shadoweval"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "links": [
            {
                "type": "dashboards",
                "tags": ["shadoweval"],
                "asDropdown": True,
                "title": "shadoweval",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables},
        "panels": _layout(panels),
    }


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "shadoweval-overview.json": overview,
    "shadoweval-latency.json": latency_dashboard,
    "shadoweval-cost.json": cost_dashboard,
    "shadoweval-reliability.json": reliability_dashboard,
    "shadoweval-quality.json": quality_dashboard,
    "shadoweval-resources.json": resources_dashboard,
}


def outputs() -> dict[Path, str]:
    files = {}
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for out in OUT_DIRS:
            files[out / name] = text
    return files


def main(argv: list[str]) -> int:
    files = outputs()
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python grafana/generate.py")
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
