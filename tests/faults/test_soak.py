"""Soak: steady load with 5% candidate faults against a real ``shadoweval serve`` process.

    SHADOWEVAL_SOAK_SECONDS=600 .venv/bin/pytest -m soak -s tests/faults/test_soak.py

By default (and in CI) it runs a 20-second smoke version that checks the accounting and the
bounds; from 120 s on it also fits a line through RSS, open file descriptors and live asyncio
tasks after a warm-up and requires each to be flat (growth over the window within noise).
A JSON summary with every sample is written next to the pairs file and printed (-s).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadoweval.testing import FakeUpstream, Latency
from tests.faults.helpers import FlakyUpstream, ProxyProcess, linear_fit, proc_fds, proc_rss_bytes

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("SHADOWEVAL_SOAK_SECONDS", "20"))
RATE = float(os.environ.get("SHADOWEVAL_SOAK_RPS", "40"))  # requests per second
SLOPES_FROM = 120.0  # shorter runs are all warm-up: only accounting and bounds are checked


async def scrape(admin_url: str) -> list[tuple[str, dict[str, str], float]]:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/metrics") as r:
        text = await r.text()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(
        v
        for n, labels, v in samples
        if n == name and all(labels.get(k) == w for k, w in match.items())
    )


def flat(xs: list[float], ys: list[float], allowed_growth: float) -> tuple[bool, float]:
    """Growth over the window from the fitted slope; flat when within the allowance or
    within three standard errors of zero (noise)."""
    slope, stderr = linear_fit(xs, ys)
    window = xs[-1] - xs[0]
    growth = slope * window
    return growth <= allowed_growth or slope <= 3 * stderr, growth


async def test_soak_steady_load_with_faults(tmp_path: Path) -> None:
    rng = random.Random(7)
    primary = FakeUpstream(model="prod", latency=Latency.lognormal(0.02, 0.5), record=False, seed=1)
    flaky = FlakyUpstream(model="flaky", record=False, seed=2, hang_s=2.0)
    healthy = FakeUpstream(model="healthy", record=False, seed=3)
    for fake in (primary, flaky, healthy):
        await fake.start()
    pairs_file = tmp_path / "pairs.jsonl"
    proxy = ProxyProcess(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                {
                    "name": "flaky",
                    "url": flaky.url,
                    "timeout_s": 1.0,
                    "retry": {"max_attempts": 2, "backoff_s": 0.05},
                },
                {"name": "healthy", "url": healthy.url},
            ],
            "sink": {"kind": "file", "path": str(pairs_file), "max_bytes": 512 * 1024 * 1024},
            "shutdown": {"grace_s": 10, "shadow_grace_s": 5},
            "metrics": {"loop_lag_interval_s": 0.5},
        },
        tmp_path,
    )
    sent = ok = 0
    failures: list[str] = []
    samples: list[dict[str, float]] = []
    try:
        await proxy.start()
        started = time.monotonic()
        sem = asyncio.Semaphore(32)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(n: int) -> None:
                nonlocal ok
                stream = rng.random() < 0.3
                body = {
                    "model": "prod",
                    "stream": stream,
                    "messages": [{"role": "user", "content": f"question {n}"}],
                }
                try:
                    async with session.post(proxy.url + "/v1/chat/completions", json=body) as r:
                        data = await r.read()
                        if r.status == 200 and (
                            data.endswith(b"[DONE]\n\n") if stream else b"Echo:" in data
                        ):
                            ok += 1
                        else:
                            failures.append(f"{r.status} {data[:100]!r}")
                except Exception as exc:  # the caller must never see a shadow-side fault
                    failures.append(repr(exc))
                finally:
                    sem.release()

            async def sampler() -> None:
                while True:
                    metrics = await scrape(proxy.admin_url)
                    samples.append(
                        {
                            "t": time.monotonic() - started,
                            "rss": proc_rss_bytes(proxy.pid),
                            "fds": proc_fds(proxy.pid),
                            "tasks": total(metrics, "shadoweval_event_loop_tasks"),
                        }
                    )
                    await asyncio.sleep(2.0)

            sampling = asyncio.create_task(sampler())
            pending: set[asyncio.Task[None]] = set()
            while (now := time.monotonic() - started) < SECONDS:
                # Paced, not closed-loop: a steady arrival rate whatever the latency.
                while sent < now * RATE:
                    await sem.acquire()
                    task = asyncio.create_task(one(sent))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*pending)
            await asyncio.sleep(3.0)  # hung flaky shadows time out (1 s x 2 attempts)
            sampling.cancel()
            metrics = await scrape(proxy.admin_url)
        assert await proxy.terminate() == 0
    finally:
        await proxy.kill()
        for fake in (primary, flaky, healthy):
            await fake.stop()

    records = [orjson.loads(line) for line in pairs_file.read_bytes().splitlines()]
    counts = proxy.final_counts()
    summary: dict[str, Any] = {"seconds": SECONDS, "rps": RATE, "sent": sent, "ok": ok, "counts": counts,
                               "flaky_injected": flaky.injected, "flaky_served": flaky.served, "samples": samples}  # fmt: skip
    (tmp_path / "soak-summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))

    # The callers never saw a fault.
    assert failures == [] and ok == sent, failures[:5]
    # The proxy's counters agree with the load generator and with the fakes.
    assert total(metrics, "shadoweval_requests_total", role="primary") == sent
    for name in ("flaky", "healthy"):
        assert (
            total(
                metrics, "shadoweval_shadow_sampling_decisions_total", upstream=name, decision="in"
            )
            == sent
        )
        assert (
            total(metrics, "shadoweval_pairs_total", upstream=name) == sent
        )  # queues never filled
    # Each attempt reached the fake, plus the pool's one silent resend when a kept-alive
    # connection is closed before any answer (a "reset" fault looks exactly like a stale one).
    attempts = total(
        metrics, "shadoweval_upstream_attempts_total", role="candidate", upstream="flaky"
    )
    assert attempts <= flaky.served <= attempts + flaky.injected["reset"]
    failed = [
        r for r in records if r["candidate"]["upstream"] == "flaky" and r["candidate"]["error_type"]
    ]
    assert total(
        metrics, "shadoweval_upstream_errors_total", role="candidate", upstream="flaky"
    ) == len(failed)
    assert 0 < len(failed) <= sum(flaky.injected.values())
    assert (
        total(metrics, "shadoweval_upstream_errors_total", role="candidate", upstream="healthy")
        == 0
    )
    # Nothing lost: every pair written, every written pair in the file.
    assert counts["pairs"] == counts["sink_written"] == len(records) == 2 * sent
    assert counts["sampled_in"] == counts["pairs"] and counts["shadows_dropped"] == 0

    # Bounded: tasks and descriptors never exceed what the configuration allows.
    assert max(s["tasks"] for s in samples) < 300, samples
    assert max(s["fds"] for s in samples) < 200, samples
    if SECONDS >= SLOPES_FROM:
        steady = [s for s in samples if s["t"] >= max(30.0, 0.2 * SECONDS)]
        ts = [s["t"] for s in steady]
        mean_rss = sum(s["rss"] for s in steady) / len(steady)
        for key, allowance in (
            ("rss", max(4 * 2**20, 0.03 * mean_rss)),
            ("fds", 3.0),
            ("tasks", 10.0),
        ):
            is_flat, growth = flat(ts, [s[key] for s in steady], allowance)
            assert is_flat, (
                f"{key} grows by {growth:.0f} over {ts[-1] - ts[0]:.0f} s (allowed {allowance:.0f})"
            )
