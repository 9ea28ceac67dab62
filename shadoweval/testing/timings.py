"""Are a record's candidate timings the wire's? A proxy with the shadow worker (its shipped
scheduling: the CPU-heavy side under SCHED_IDLE) beside CPU-burning processes, and a
candidate in a process of its own that answers after a known delay; each record's latency
and time to first token minus that delay is the error of the measurement.

The shadows are sent and read while the burners run; the burners stop before the records
are awaited (an idle process beside them gets no CPU at all, so its records would wait for
them). Used by the fault test of the worker's timings and ``benchmarks/worker_timings.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shadoweval.records import iter_jsonl
from shadoweval.testing.harness import running_stack

CANDIDATE = "cand"


@contextlib.contextmanager
def cpu_burners(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` processes that spin at the normal priority until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.02
) -> bool:
    """Whether ``check`` came true within ``timeout_s`` (polled: state, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


@contextlib.asynccontextmanager
async def candidate_process(delay_s: float) -> AsyncIterator[str]:
    """``shadoweval fake-upstream`` answering after ``delay_s``, in its own process (so
    the load in this one does not lengthen the delay); yields its URL."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadoweval", "fake-upstream", "--port", str(port),
        "--latency-ms", f"{delay_s * 1000:g}", "--model", "cand-model",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Where allowed, ahead of the burners: its delay is then the one it was given, and what
    # a record adds to it is the proxy's own error.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, -10)

    async def listening() -> bool:
        assert proc.returncode is None, "the fake candidate exited"
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        return False

    try:
        if not await _until(listening, 30.0):
            raise TimeoutError("the fake candidate did not start listening in 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        await proc.wait()


@dataclass
class Timings:
    """Per record, seconds: the record's figure minus the candidate's known delay, and the
    waits the record reports; per answer, the candidate's own timing of it (from the
    request's arrival to its first and last writes: the wire, as the candidate saw it)."""

    latency_error: list[float] = field(default_factory=list)
    ttft_error: list[float] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    served_first: list[float] = field(default_factory=list)
    queue_wait: list[float] = field(default_factory=list)
    parse_wait: list[float] = field(default_factory=list)
    # Whether every shadow had been answered before the burners stopped.
    sent_under_load: bool = False

    def wire_error(self) -> tuple[float, float]:
        """Median record figure minus the candidate's median own timing (latency, TTFT):
        the proxy's error, without the delays a loaded machine adds at the candidate."""
        return (
            statistics.median(self.latency_error) - statistics.median(self.served),
            statistics.median(self.ttft_error) - statistics.median(self.served_first),
        )

    def summary(self) -> dict[str, Any]:
        def median(xs: list[float]) -> float | None:
            return statistics.median(xs) if xs else None

        wire: tuple[float | None, float | None] = (
            self.wire_error() if self.served and self.ttft_error else (None, None)
        )

        def p90(xs: list[float]) -> float | None:
            return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else None

        return {
            "records": len(self.latency_error),
            "sent_under_load": self.sent_under_load,
            "latency_error_median_s": median(self.latency_error),
            "latency_error_p90_s": p90(self.latency_error),
            "ttft_error_median_s": median(self.ttft_error),
            "ttft_error_p90_s": p90(self.ttft_error),
            # The same against the candidate's own timing (its delay plus what it took).
            "wire_latency_error_median_s": wire[0],
            "wire_ttft_error_median_s": wire[1],
            "queue_wait_median_s": median(self.queue_wait),
            "parse_wait_median_s": median(self.parse_wait),
        }


def _sent(text: str) -> float:
    """Candidate attempts made so far (the worker's own counter: it answers scrapes while its
    idle child is starved)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "shadoweval_upstream_attempts_total" and s.labels.get("upstream") == CANDIDATE
    )


async def measure(
    directory: Path,
    *,
    requests: int = 60,
    burners: int = 2,
    delay_s: float = 0.2,
    concurrency: int = 4,
    worker: bool = True,
    sent_timeout_s: float = 60.0,
) -> Timings:
    """Streamed chat requests through the proxy while ``burners`` spin; the records'
    candidate timings against ``delay_s`` (the fake sends its first token after it). The
    burners run until every shadow is answered or ``sent_timeout_s`` has passed."""
    pairs = directory / "pairs.jsonl"
    overrides: dict[str, Any] = {
        "shadow_worker": {"enabled": worker},
        "sink": {"kind": "file", "path": str(pairs), "flush_interval_s": 0.1},
        "shutdown": {"grace_s": 30, "shadow_grace_s": 30},
    }
    body = {"model": "prod", "stream": True, "messages": [{"role": "user", "content": "time"}]}
    async with candidate_process(delay_s) as url:
        cand = {"name": CANDIDATE, "url": url, "concurrency": 2 * concurrency}
        overrides["candidates"] = [cand]
        async with (
            running_stack(candidates={}, overrides=overrides) as stack,
            aiohttp.ClientSession() as session,
        ):

            async def caller(n: int) -> None:
                for _ in range(n):
                    async with session.post(f"{stack.url}/v1/chat/completions", json=body) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status

            async def all_sent() -> bool:
                async with session.get(f"{stack.proxy.admin_url}/metrics") as resp:
                    return _sent(await resp.text()) >= requests

            share = [requests // concurrency] * concurrency
            share[0] += requests - sum(share)
            with cpu_burners(burners):
                await asyncio.gather(*(caller(n) for n in share))
                # Polled slowly: a scrape costs the worker CPU beside the shadows it times.
                sent_under_load = await _until(all_sent, sent_timeout_s, 0.5)
            async with session.get(f"{url}/_fake/served") as resp:
                served = (await resp.json())["served"]
        # Stopping the stack flushed every record (nothing was due to be dropped).
    out = Timings(sent_under_load=sent_under_load)
    for last, first in served:
        out.served.append(last - delay_s)
        out.served_first.append(first - delay_s)
    for record in iter_jsonl([pairs], Counter()):
        cand = record["candidate"]
        out.latency_error.append(cand["latency_s"] - delay_s)
        if cand.get("ttft_s") is not None:
            out.ttft_error.append(cand["ttft_s"] - delay_s)
        if "queue_wait_s" in cand:
            out.queue_wait.append(cand["queue_wait_s"])
        if "parse_wait_s" in cand:
            out.parse_wait.append(cand["parse_wait_s"])
    return out
