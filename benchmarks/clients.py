"""Python load clients for what vegeta and wrk cannot measure: many concurrent SSE streams
(time to first token and chunk relay delay) and many concurrent long-held requests."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import yarl

STREAM_BODY = {
    "model": "prod-model",
    "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(200))}],
    "stream": True,
}


class _StreamReader(asyncio.Protocol):
    """One SSE stream read with a bare protocol: a timestamp per packet and nothing else.

    An aiohttp client costs ~15 µs per chunk; at 20,000 chunks a second it saturates the
    load core and measures itself. The answer's framing is not parsed: the stream ends
    when the server's terminating chunk or the close arrives."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.arrivals: list[float] = []
        self.head = True
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter() - self.start
        if self.head:
            if not data.startswith(b"HTTP/1.1 200"):
                self._end(RuntimeError(data[:100].decode("latin-1")))
                return
            self.head = False
            _, _, data = data.partition(b"\r\n\r\n")
        if b"data:" in data:
            self.arrivals.append(now)
        if data.endswith(b"0\r\n\r\n"):
            self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or (None if self.arrivals else ConnectionError("closed early")))

    def _end(self, exc: BaseException | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)


async def _stream(url: str, delay: float = 0.0) -> tuple[float, list[float]]:
    """Returns (TTFT, arrival times of each chunk relative to the request start)."""
    await asyncio.sleep(delay)
    u = yarl.URL(url)
    body = json.dumps(STREAM_BODY).encode()
    request = (
        f"POST {u.raw_path_qs} HTTP/1.1\r\nHost: {u.host}:{u.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    transport, reader = await loop.create_connection(lambda: _StreamReader(start), u.host, u.port)
    transport.write(request)
    try:
        await asyncio.wait_for(reader.done, 120)
    finally:
        transport.close()
    arrivals = reader.arrivals
    return (arrivals[0] if arrivals else float("nan")), arrivals


async def streams(url: str, concurrency: int, ramp_s: float = 0.0) -> dict[str, Any]:
    """``concurrency`` simultaneous streams; gaps between chunks show relay delay.

    Starts are spread evenly over ``ramp_s`` (steady arrivals, as in production, rather
    than one burst of connection set-ups that would measure the burst, not the relay)."""
    starts = [ramp_s * i / concurrency for i in range(concurrency)]
    results = await asyncio.gather(*(_stream(url, d) for d in starts), return_exceptions=True)
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
