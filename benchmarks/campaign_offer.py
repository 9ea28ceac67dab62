"""What campaigns add to ``ShadowDispatcher.offer``: CPU per offered request with no
campaign, with budgets and a schedule, and with ``match.models`` (which parses the body in
``offer``; the candidates' workers then reuse the parse).

    .venv/bin/python benchmarks/campaign_offer.py           # 20,000 offers per case
    .venv/bin/python benchmarks/campaign_offer.py --quick   # 2,000

``offer`` runs off the caller's path (after the answer is handed over, or in the shadow
worker), so this is shadow-side CPU, not caller latency. The queues are drained between
rounds so every offer takes the same path. Writes results/campaign_offer.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from shadoweval import sinks
from shadoweval.config.proxy import parse
from shadoweval.metrics import Metrics
from shadoweval.pricing import PriceTable
from shadoweval.proxy.shadow import ShadowDispatcher

RESULTS = Path(__file__).parent / "results" / "campaign_offer"
BODY = json.dumps(
    {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Summarise this paragraph. " * 40}],
        "temperature": 0,
    }
).encode()

CASES: dict[str, dict[str, Any]] = {
    "no campaign": {},
    "budget + schedule": {
        "budget": {"usd_per_day": 100, "max_requests": 10**9, "max_pairs": 10**9},
        "schedule": {"start": "2020-01-01T00:00:00Z", "duration": "36500d"},
    },
    "match models + route + task": {
        "match": {"models": ["gpt-4o", "gpt-4o-2024-*"], "routes": ["chat"], "tasks": ["*"]},
    },
    "match + budget + schedule": {
        "match": {"models": ["gpt-4o", "gpt-4o-2024-*"]},
        "budget": {"usd_per_day": 100},
        "schedule": {"start": "2020-01-01T00:00:00Z", "duration": "36500d"},
    },
}


async def per_offer_us(campaign: dict[str, Any], n: int, rounds: int = 5) -> float:
    cfg = parse(
        {
            "primary": {"url": "http://127.0.0.1:1"},
            "sink": {"kind": "memory"},
            "candidates": [
                {"name": f"c{i}", "url": "http://127.0.0.1:2", "queue_size": n, **campaign}
                for i in range(2)
            ],
        },
        environ={},
    )
    m = Metrics()
    d = ShadowDispatcher.from_config(cfg, sinks.build(cfg.sink, m), m, PriceTable(cfg.pricing))
    headers = {"x-shadoweval-task": "support"}
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            d.offer("chat", "/v1/chat/completions", headers, BODY)
        results.append((time.perf_counter() - start) / n * 1e6)
        for lane in d._lanes:  # drain, untouched by workers (never started)
            while not lane.queue.empty():
                lane.queue.get_nowait()
    return statistics.median(results)


async def main(quick: bool) -> None:
    n = 2_000 if quick else 20_000
    rows = {name: await per_offer_us(c, n) for name, c in CASES.items()}
    base = rows["no campaign"]
    RESULTS.parent.mkdir(exist_ok=True)
    data = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "offers_per_round": n,
        "candidates": 2,
        "body_bytes": len(BODY),
        "us_per_offer": rows,
    }
    RESULTS.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Campaigns: CPU per `offer` (two candidates)",
        "",
        f"{n} offers per round, median of 5 rounds, a {len(BODY)}-byte chat body; "
        f"Python {platform.python_version()}.",
        "",
        "| case | µs per offer | added |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v:.1f} | {v - base:+.1f} |" for k, v in rows.items()]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 offers per case")
    asyncio.run(main(parser.parse_args().quick))
