"""``shadoweval demo``: the whole loop on one machine in well under a minute, no Kafka.

A fake primary, two fake candidates and a control sit behind a real proxy writing pairs to a
JSONL file; a few hundred requests (streaming and not) go through; a summary is printed.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from shadoweval.config.proxy import parse
from shadoweval.console import Column, print_table
from shadoweval.server import ProxyServer
from shadoweval.testing.fake_upstream import FakeUpstream, Latency

PROMPTS = [
    "What is the capital of France?",
    "Summarise the plot of Hamlet in one sentence.",
    "Translate 'good morning' into Spanish.",
    "Write a haiku about the sea.",
    "What is 17 times 23?",
    "Name three prime numbers above 100.",
    "Explain what a hash map is.",
    "My email is jane.doe@example.com, please confirm my order.",
]


# USD per million tokens for the demo's fake models.
DEMO_PRICES = {
    "prod-model": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
    "small-model": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    "other-model": {"input_per_mtok": 0.50, "output_per_mtok": 1.50},
}


async def _send(session: aiohttp.ClientSession, url: str, i: int, rng: random.Random) -> int:
    stream = i % 3 == 0
    body = {
        "model": "prod-model",
        "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    async with session.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer caller-secret"}
    ) as resp:
        await resp.read()
        return resp.status


async def run_demo(requests: int, out: Path, concurrency: int = 16) -> dict[str, Any]:
    primary = FakeUpstream(
        model="prod-model", latency=Latency.lognormal(0.04, 0.4), token_delay_s=0.002, seed=1
    )
    cand_a = FakeUpstream(
        model="small-model",
        latency=Latency.lognormal(0.015, 0.3),
        token_delay_s=0.001,
        disagree_rate=0.1,
        seed=2,
    )
    cand_b = FakeUpstream(
        model="other-model",
        latency=Latency.lognormal(0.08, 0.8),
        token_delay_s=0.004,
        disagree_rate=0.3,
        error_rate=0.05,
        seed=3,
    )
    fakes = [primary, cand_a, cand_b]
    for fake in fakes:
        fake.record = False
        await fake.start()
    await asyncio.to_thread(_fresh_file, out)
    cfg = parse(
        {
            "listen": {"port": 0},
            "admin": {"port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                {"name": "cand-a", "url": cand_a.url, "model": "small-model"},
                {
                    "name": "cand-b",
                    "url": cand_b.url,
                    "model": "other-model",
                    "params": {"temperature": 0},
                },
                {"name": "control", "url": primary.url, "role": "control"},
            ],
            "sink": {"kind": "file", "path": str(out)},
            "shutdown": {"grace_s": 5, "shadow_grace_s": 5},
            "pricing": {"models": DEMO_PRICES},
        },
        "demo",
        environ={},
    )
    proxy = ProxyServer(cfg)
    await proxy.start()
    rng = random.Random(7)
    started = time.perf_counter()
    statuses: Counter[int] = Counter()
    sem = asyncio.Semaphore(concurrency)
    try:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> None:
                async with sem:
                    statuses[await _send(session, proxy.proxy_url, i, rng)] += 1

            await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        await proxy.stop()
        for fake in fakes:
            await fake.stop()
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "statuses": dict(statuses), **summarise(out)}


def _fresh_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarise(path: Path) -> dict[str, Any]:
    by_cand: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(path, "rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            by_cand[rec["candidate"]["upstream"]].append(rec)
    rows = {}
    for name, recs in sorted(by_cand.items()):
        ok = [r for r in recs if not r["candidate"]["error_type"]]
        rows[name] = {
            "role": recs[0]["candidate"]["role"],
            "pairs": len(recs),
            "errors": dict(
                Counter(r["candidate"]["error_type"] for r in recs if r["candidate"]["error_type"])
            ),
            "exact_match": sum(
                r["candidate"]["output_text"] == r["primary"]["output_text"] for r in ok
            )
            / max(len(ok), 1),
            "p50_ms": 1000 * _pct([r["candidate"]["latency_s"] for r in ok], 50),
            "p95_ms": 1000 * _pct([r["candidate"]["latency_s"] for r in ok], 95),
            "primary_p50_ms": 1000 * _pct([r["primary"]["latency_s"] for r in recs], 50),
            "cost_ratio": _ratio(
                sum(r["candidate"]["cost_usd"] or 0 for r in ok),
                sum(r["primary"]["cost_usd"] or 0 for r in ok),
            ),
            "output_tokens": sum(
                (r["candidate"]["usage"] or {}).get("output_tokens") or 0 for r in ok
            ),
        }
    return {"pairs_file": str(path), "candidates": rows}


def print_summary(result: dict[str, Any]) -> None:
    total = sum(result["statuses"].values())
    print(f"\nshadoweval demo: {total} requests in {result['elapsed_s']:.1f}s")
    print(f"caller statuses: {result['statuses']}")
    print(f"pairs written to {result['pairs_file']}\n")
    numbers = ("pairs", "exact", "p50 ms", "p95 ms", "prod p50", "cost")
    columns: list[Column | str] = [
        "upstream",
        "role",
        *(Column(c, right=True) for c in numbers),
        "errors",
    ]
    rows = [
        (
            name,
            row["role"],
            row["pairs"],
            f"{row['exact_match']:.1%}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['primary_p50_ms']:.1f}",
            f"{row['cost_ratio']:.2f}x",
            row["errors"] or "-",
        )
        for name, row in result["candidates"].items()
    ]
    print_table(columns, rows)
    print(
        "\n'exact' is the share of answers identical to the primary's; "
        "the control (the primary asked twice) is the noise floor; "
        "'cost' is relative to the primary on the same requests."
    )


async def score_and_report(pairs: Path) -> Path | None:
    """The rest of the loop on the demo's pairs: cheap scorers, then the report (terminal +
    HTML). Needs the ``score`` and ``report`` extras; returns the HTML path, or None."""
    try:
        from shadoweval.config.scorer import parse_scorer
        from shadoweval.report.command import Options
        from shadoweval.report.command import run as report
        from shadoweval.score.runner import run_scorer
    except ImportError:
        return None
    scores = pairs.with_name("scores.jsonl")
    await asyncio.to_thread(_fresh_file, scores)
    await asyncio.to_thread(_fresh_file, scores.with_name("scores.jsonl.offsets"))
    cfg = parse_scorer(
        {
            "source": {"kind": "file", "path": str(pairs)},
            "sink": {"kind": "file", "path": str(scores)},
            "admin": {"port": 0},
        },
        "demo",
        environ={},
    )
    await run_scorer(cfg, once=True, install_signals=False)
    html = pairs.with_name("report.html")
    opts = Options(pairs=[str(pairs)], scores=[str(scores)], html_out=str(html), details=False)
    await asyncio.to_thread(report, opts)
    return html
