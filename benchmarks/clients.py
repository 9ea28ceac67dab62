"""Python load clients for what vegeta and wrk cannot measure: many concurrent SSE streams
(time to first token and chunk relay delay) and many concurrent long-held requests."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp

STREAM_BODY = {
    "model": "prod-model",
    "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(200))}],
    "stream": True,
}


async def _stream(
    session: aiohttp.ClientSession, url: str, delay: float = 0.0
) -> tuple[float, list[float]]:
    """Returns (TTFT, arrival times of each chunk relative to the request start)."""
    await asyncio.sleep(delay)
    start = time.perf_counter()
    arrivals: list[float] = []
    async with session.post(url, json=STREAM_BODY) as resp:
        resp.raise_for_status()
        async for _ in resp.content.iter_any():
            arrivals.append(time.perf_counter() - start)
    return (arrivals[0] if arrivals else float("nan")), arrivals


async def streams(url: str, concurrency: int, ramp_s: float = 0.0) -> dict[str, Any]:
    """``concurrency`` simultaneous streams; gaps between chunks show relay delay.

    Starts are spread evenly over ``ramp_s`` (steady arrivals, as in production, rather
    than one burst of connection set-ups that would measure the burst, not the relay)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as s:
        starts = [ramp_s * i / concurrency for i in range(concurrency)]
        results = await asyncio.gather(
            *(_stream(s, url, d) for d in starts), return_exceptions=True
        )
    ok = [r for r in results if not isinstance(r, BaseException)]
    ttfts = sorted(r[0] for r in ok)
    # Chunk arrival times; with a fixed upstream token interval, extra gap is relay delay.
    gaps = sorted(b - a for _, arr in ok for a, b in itertools.pairwise(arr))
    return {
        "errors": len(results) - len(ok),
        "ttft": ttfts,
        "gaps": gaps,
        "chunks": sum(len(a) for _, a in ok),
    }


async def held(url: str, concurrency: int) -> dict[str, Any]:
    """``concurrency`` requests in flight at once against an upstream that holds each one."""
    connector = aiohttp.TCPConnector(limit=0)
    body = {"model": "prod-model", "messages": [{"role": "user", "content": "hold"}]}
    errors: dict[str, int] = {}

    async def one(s: aiohttp.ClientSession) -> None:
        try:
            async with s.post(url, json=body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors[f"http_{resp.status}"] = errors.get(f"http_{resp.status}", 0) + 1
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    start = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as s:
        await asyncio.gather(*(one(s) for _ in range(concurrency)))
    return {"errors": errors, "elapsed_s": time.perf_counter() - start}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(int(q * len(values)), len(values) - 1)]
