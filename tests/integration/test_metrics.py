"""/metrics under traffic: counts, percentiles from buckets, cost, retries, error types."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadoweval.testing import FakeUpstream, Latency, running_stack
from tests.waiting import wait_for

PRICING = {
    "models": {
        "prod-model": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
        "cand": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},  # prefix of "cand-model"
    }
}


async def scrape(admin_url: str) -> dict[str, list[Any]]:
    """Fetch /metrics over HTTP and parse it with prometheus-client's own parser."""
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def buckets(samples: dict[str, list[Any]], name: str, **labels: str) -> list[tuple[float, float]]:
    acc: dict[float, float] = {}
    for s in samples.get(name + "_bucket", []):
        if all(s.labels.get(k) == v for k, v in labels.items()):
            le = float(s.labels["le"])
            acc[le] = acc.get(le, 0.0) + s.value
    return sorted(acc.items())


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    count = cumulative[-1][1]
    rank = q * count
    prev_le, prev_count = 0.0, 0.0
    for le, c in cumulative:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(c - prev_count, 1e-12)
        prev_le, prev_count = le, c
    return prev_le


def bucket_of(value: float, bounds: list[float]) -> int:
    # Interpolating up to a bucket's upper edge can overshoot it by one ulp.
    return next(i for i, b in enumerate(bounds) if value <= b * (1 + 1e-9))


async def post_many(url: str, n: int, *, stream_every: int = 0, concurrency: int = 20) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> None:
            body = {
                "model": "prod-model",
                "messages": [{"role": "user", "content": f"question number {i} here"}],
                "stream": bool(stream_every and i % stream_every == 0),
            }
            async with sem, s.post(url + "/v1/chat/completions", json=body) as r:
                await r.read()
                assert r.status == 200

        await asyncio.gather(*(one(i) for i in range(n)))


async def test_histograms_percentiles_and_cost_match_the_traffic() -> None:
    primary = FakeUpstream(model="prod-model", latency=Latency.lognormal(0.03, 0.7), seed=3)
    cand = FakeUpstream(model="cand-model", latency=Latency.fixed(0.001))
    n = 300
    async with running_stack(
        primary=primary,
        candidates={"cand-a": cand},
        candidate_options={"cand-a": {"model": "cand-model"}},
        overrides={"pricing": PRICING},
    ) as stack:
        await post_many(stack.url, n, stream_every=3)
        records = await stack.memory.wait_for(n)
        m: dict[str, list[Any]] = {}

        async def observed() -> bool:  # metric callbacks run just after each response
            nonlocal m
            m = await scrape(stack.proxy.admin_url)
            lat = "shadoweval_request_duration_seconds_count"
            return (
                total(m, lat, role="candidate", upstream="cand-a") == n
                and total(m, "shadoweval_proxy_overhead_seconds_count", route="chat") == n
            )

        await wait_for(observed, what="every request's metrics")

    # Histogram counts equal request counts, per side.
    lat = "shadoweval_request_duration_seconds"
    assert total(m, lat + "_count", role="primary", upstream="prod") == n
    assert total(m, lat + "_count", role="candidate", upstream="cand-a") == n
    assert total(m, "shadoweval_requests_total", role="primary", outcome="ok") == n
    assert total(m, "shadoweval_pairs_total", upstream="cand-a") == n
    assert (
        total(m, "shadoweval_shadow_sampling_decisions_total", upstream="cand-a", decision="in")
        == n
    )
    assert total(m, "shadoweval_proxy_overhead_seconds_count", route="chat") == n
    assert total(m, "shadoweval_time_to_first_token_seconds_count", role="primary") == n // 3

    # P50/P95/P99 from the buckets land in the same bucket as the measured latencies.
    measured = sorted(r["primary"]["latency_s"] for r in records)
    cumulative = buckets(m, lat, role="primary", upstream="prod")
    bounds = [le for le, _ in cumulative]
    for q in (0.5, 0.95, 0.99):
        # The rank histogram_quantile looks for is q*n, so the sample it matches is the
        # ceil(q*n)-th (1-based); measured[int(q*n)] is one too far when q*n is whole.
        true_q = measured[max(math.ceil(q * n) - 1, 0)]
        estimate = histogram_quantile(q, cumulative)
        assert bucket_of(estimate, bounds) == bucket_of(true_q, bounds), (q, estimate, true_q)

    # Cost equals tokens x price, in the records and in the counters.
    def expected(side: str, price_in: float, price_out: float) -> float:
        usage = [r[side]["usage"] for r in records]
        return (
            sum(u["input_tokens"] * price_in + u["output_tokens"] * price_out for u in usage) / 1e6
        )

    prod_cost = expected("primary", 2.5, 10.0)
    cand_cost = expected("candidate", 0.5, 1.5)
    assert prod_cost > 0 and cand_cost > 0
    assert total(m, "shadoweval_cost_usd_total", role="primary") == pytest.approx(prod_cost)
    assert total(m, "shadoweval_cost_usd_total", role="candidate") == pytest.approx(cand_cost)
    assert sum(r["candidate"]["cost_usd"] for r in records) == pytest.approx(cand_cost)
    assert total(m, "shadoweval_request_cost_usd_count", role="candidate") == n
    tokens_out = sum(r["candidate"]["usage"]["output_tokens"] for r in records)
    assert total(m, "shadoweval_tokens_total", role="candidate", direction="output") == tokens_out
    # Process-level figures are there too.
    assert total(m, "process_resident_memory_bytes") > 0
    assert total(m, "shadoweval_open_connections", direction="outbound", upstream="prod") >= 1


async def test_retries_and_error_types_are_counted_exactly() -> None:
    cands = {
        "limited": FakeUpstream(mode="rate_limit", retry_after_s=0),
        "flaky": FakeUpstream(fail_first=1, error_status=503),
        "down": FakeUpstream(mode="error", error_status=500),
    }
    opts = {
        "limited": {"retry": {"max_attempts": 3, "backoff_s": 0}},
        "flaky": {"retry": {"max_attempts": 3, "backoff_s": 0}},
        "down": {"retry": {"max_attempts": 2, "backoff_s": 0, "retry_on": ["connect"]}},
    }
    n = 4
    async with running_stack(candidates=cands, candidate_options=opts) as stack:
        for _ in range(n):  # one at a time: "flaky" fails exactly its first request
            await post_many(stack.url, 1)
        records = await stack.memory.wait_for(3 * n)
        m = await scrape(stack.proxy.admin_url)

    att = "shadoweval_upstream_attempts_total"
    # limited: every shadow = 3 attempts, all 429, 2 retries, final error http_429.
    for attempt in ("1", "2", "3"):
        assert total(m, att, upstream="limited", attempt=attempt, outcome="http_429") == n
    assert total(m, "shadoweval_retries_total", upstream="limited", outcome="error") == 2 * n
    assert (
        total(m, "shadoweval_upstream_errors_total", upstream="limited", error_type="http_429") == n
    )
    # flaky: the very first request fails once, then succeeds on its retry.
    assert total(m, att, upstream="flaky", attempt="1", outcome="http_5xx") == 1
    assert total(m, att, upstream="flaky", attempt="2", outcome="ok") == 1
    assert total(m, "shadoweval_retries_total", upstream="flaky", outcome="ok") == 1
    assert total(m, "shadoweval_upstream_errors_total", upstream="flaky") == 0
    # down: 5xx is not in its retry_on, so one attempt each and no retries.
    assert total(m, att, upstream="down", attempt="1", outcome="http_5xx") == n
    assert total(m, "shadoweval_retries_total", upstream="down") == 0
    assert total(m, "shadoweval_upstream_errors_total", upstream="down", error_type="http_5xx") == n
    attempts = {(r["candidate"]["upstream"], r["candidate"]["attempts"]) for r in records}
    assert attempts == {("limited", 3), ("flaky", 2), ("flaky", 1), ("down", 1)}


async def test_retry_after_is_honoured() -> None:
    cand = FakeUpstream(mode="rate_limit", retry_after_s=0.4)
    opts = {"cand-a": {"retry": {"max_attempts": 2, "backoff_s": 0}}}
    async with running_stack(candidates={"cand-a": cand}, candidate_options=opts) as stack:
        await post_many(stack.url, 1)
        await stack.memory.wait_for(1)
    first, second = cand.received
    assert second.at - first.at >= 0.4


async def test_primary_retry_is_off_by_default_and_opt_in() -> None:
    primary = FakeUpstream(model="prod-model", fail_first=1, error_status=503)
    body = {"model": "m", "messages": []}
    async with (
        running_stack(primary=primary) as stack,
        aiohttp.ClientSession() as s,
        s.post(stack.url + "/v1/chat/completions", json=body) as r,
    ):
        assert r.status == 503  # relayed as the primary sent it
    primary = FakeUpstream(model="prod-model", fail_first=1, error_status=503)
    retry = {"max_attempts": 2, "backoff_s": 0, "retry_on": ["http_5xx"]}
    overrides = {"primary": {"retry": retry}}
    async with (
        running_stack(primary=primary, overrides=overrides) as stack,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(
            stack.url + "/v1/chat/completions", json={"model": "m", "messages": []}
        ) as r:
            assert r.status == 200
        [rec] = await stack.memory.wait_for(1)
        assert rec["primary"]["attempts"] == 2
        m = await scrape(stack.proxy.admin_url)
        assert total(m, "shadoweval_retries_total", role="primary", outcome="ok") == 1
