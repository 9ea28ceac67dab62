"""Caller protection: what a misbehaving candidate (or a flood of idle connections) costs
the callers, measured side by side in one run.

    .venv/bin/python benchmarks/caller_protection.py           # every fault, both modes
    .venv/bin/python benchmarks/caller_protection.py --quick   # short smoke run

Two ``shadoweval serve`` processes on the same fake primary (real processes on loopback):
A mirrors to a healthy candidate, B to the same healthy candidate plus the bad one. One
open-loop load alternates its requests between A and B, so both see the same moments of
the machine; the figure is B's caller latency over A's (P50 and P99), per fault, with the
proxy in one process (default) and with the shadow worker. The first row of each mode
(``none``: B identical to A) is the noise floor of the comparison. A and B each get a core
of their own (A core 0, B core 1), so B's extra CPU cannot slow A down and hide itself;
the fakes and the load float. Writes results/caller_protection.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness as h

RESULTS = Path(__file__).parent / "results" / "caller_protection"
TARGET = 1.2  # B's P50 and P99 over A's

# The bad candidates: fake-upstream arguments (None: no bad candidate; "flood": idle
# connections to B's proxy port instead of a candidate).
FAULTS: dict[str, list[str] | str | None] = {
    "none": None,
    "gzip bomb (60 MiB inflated)": ["--mode", "gzip_bomb", "--bomb-bytes", str(60 << 20)],
    "1 GiB length-framed": ["--mode", "huge_length", "--bomb-bytes", str(1 << 30)],
    "1 GiB chunked": ["--mode", "huge_chunked", "--bomb-bytes", str(1 << 30)],
    "stalling candidate": ["--mode", "stall"],
    "idle connection flood": "flood",
}


class _Reply(asyncio.Protocol):
    """One keep-alive connection of the load generator: answers framed by Content-Length
    (what the fake primary sends), nothing else parsed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.want = -1
        self.done: asyncio.Future[int] | None = None
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> asyncio.Future[int]:
        self.done = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.want = -1
        assert self.transport is not None
        self.transport.write(data)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.want < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.status = int(head[9:12])
            self.want = end + 4 + length
        if len(self.buf) >= self.want and self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed"))


class Target:
    """Keep-alive connections to one proxy; a new one whenever all are busy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Reply] = []
        body = h.REQUEST_BODY.encode()
        self.request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        self.latencies: list[float] = []
        self.fresh: list[float] = []  # those that had to open a connection first
        self.errors = 0
        self.timeouts = 0

    async def call(self, scheduled: float, record: bool) -> None:
        conn = None
        try:
            async with asyncio.timeout(10):
                while self.idle:
                    conn = self.idle.pop()
                    if not conn.closed:
                        break
                    conn = None
                fresh = conn is None
                if conn is None:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Reply, "127.0.0.1", self.port
                    )
                status = await conn.send(self.request)
        except TimeoutError:
            if record:
                self.timeouts += 1
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            return
        except OSError:
            if record:
                self.errors += 1
            return
        # From the moment it was due: a late send counts (no coordinated omission).
        elapsed = time.perf_counter() - scheduled
        self.idle.append(conn)
        if record:
            if status == 200:
                self.latencies.append(elapsed)
                if fresh:
                    self.fresh.append(elapsed)
            else:
                self.errors += 1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def alternate(a: Target, b: Target, rate: int, duration_s: float, warmup_s: float,
                    watch: list[int]) -> dict[str, Any]:  # fmt: skip
    """Open loop at ``rate`` requests/s in all, alternating A, B; RSS of ``watch`` sampled."""
    interval = 1.0 / rate
    start = time.perf_counter()
    total = int((warmup_s + duration_s) * rate)
    tasks: set[asyncio.Task[None]] = set()
    peaks = [0] * len(watch)
    next_rss = start
    for i in range(total):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = i >= warmup_s * rate
        task = asyncio.create_task((a if i % 2 == 0 else b).call(due, record))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if time.perf_counter() >= next_rss:
            next_rss += 0.5
            peaks = [max(p, h.rss_bytes(pid)) for p, pid in zip(peaks, watch, strict=True)]
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    return {"rss_peak_mb": [round(p / 2**20, 1) for p in peaks]}


def summary(t: Target) -> dict[str, Any]:
    lat = t.latencies
    return {
        "requests": len(lat) + t.errors + t.timeouts,
        "ok": len(lat),
        "errors": t.errors,
        "timeouts": t.timeouts,
        "p50_ms": round(pct(lat, 0.50) * 1000, 3),
        "p99_ms": round(pct(lat, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
        # A flood fills the kernel's accept queue: a new connection can wait behind it.
        "new_connections": len(t.fresh),
        "p50_new_connection_ms": round(pct(t.fresh, 0.50) * 1000, 3),
        "max_new_connection_ms": round(max(t.fresh, default=float("nan")) * 1000, 3),
    }


@contextlib.contextmanager
def fake(*args: str) -> Iterator[str]:
    """A fake upstream process, not pinned (the cores are the proxies')."""
    port = h.free_port()
    argv = [h.PYTHON, "-m", "shadoweval", "fake-upstream", "--port", str(port), *args]
    with h.process(argv, "fake-upstream", port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def flood(port: int, connections: int) -> Iterator[None]:
    argv = [h.PYTHON, __file__, "--flood-port", str(port), "--flood-connections", str(connections)]
    with h.process(argv, "flood"):
        yield


async def _flood(port: int, connections: int) -> None:
    """Hold ``connections`` idle sockets to ``port``; each one closed is opened again."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def one() -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await reader.read()  # sends nothing; waits for the proxy to close it
                writer.close()
            except OSError:
                await asyncio.sleep(0.1)

    await asyncio.gather(*(one() for _ in range(min(connections, hard - 64))))


def shadow_metrics(admin: int) -> dict[str, float]:
    out = h.shadow_counts(admin)
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "shadoweval_capture_truncated_total" and s.value:
                out[f"capture_truncated_{s.labels['upstream']}"] = s.value
            elif s.name == "shadoweval_refused_requests_total" and s.value:
                out[f"refused_{s.labels['reason']}"] = s.value
    return out


def run_case(fault: str, worker: bool, rate: int, duration: float, warmup: float,
             flood_n: int) -> dict[str, Any]:  # fmt: skip
    spec = FAULTS[fault]
    extra: dict[str, Any] = {"shadow_worker": {"enabled": worker}}
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(fake("--model", "prod-model", "--latency-ms", "5"))
        good = stack.enter_context(fake("--model", "good-model"))
        b_candidates = [good]
        if isinstance(spec, list):
            b_candidates.append(stack.enter_context(fake("--model", "bad-model", *spec)))
        a_port, _, a_proc = stack.enter_context(
            h.shadoweval_proxy(primary, [good], extra, cores="0")
        )
        b_port, b_admin, b_proc = stack.enter_context(
            h.shadoweval_proxy(primary, b_candidates, extra, cores="1")
        )
        if spec == "flood":
            stack.enter_context(flood(b_port, flood_n))
            time.sleep(2)  # the flood is up before the load starts
        a, b = Target(a_port), Target(b_port)
        cpu = [h.cpu_seconds(a_proc.pid), h.cpu_seconds(b_proc.pid)]
        run = asyncio.run(alternate(a, b, rate, duration, warmup, [a_proc.pid, b_proc.pid]))
        cpu = [h.cpu_seconds(p.pid) - c for p, c in zip((a_proc, b_proc), cpu, strict=True)]
        shadows = shadow_metrics(b_admin)
    sa, sb = summary(a), summary(b)
    return {
        "fault": fault,
        "mode": "shadow worker" if worker else "one process",
        "a": sa,
        "b": sb,
        "p50_ratio": round(sb["p50_ms"] / sa["p50_ms"], 3),
        "p99_ratio": round(sb["p99_ms"] / sa["p99_ms"], 3),
        "rss_peak_mb": {"a": run["rss_peak_mb"][0], "b": run["rss_peak_mb"][1]},
        "cpu_s": {"a": round(cpu[0], 2), "b": round(cpu[1], 2)},
        "b_shadows": shadows,
    }


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"Run {data['started']} on {data['machine']}; load average at start {data['load']}. "
        f"{data['rate']} requests/s alternating A and B for {data['duration_s']} s per row "
        f"(after {data['warmup_s']} s of warm-up); the fake primary answers in 5 ms. A core 0, "
        f"B core 1; B's RSS and CPU include its shadow worker. Target: B/A <= {TARGET}x.",
        "",
        "| fault | mode | P50 A / B (ms) | P50 B/A | P99 A / B (ms) | P99 B/A | "
        "B errors, timeouts | RSS peak A / B (MB) | CPU A / B (s) | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        a, b = r["a"], r["b"]
        met = r["p50_ratio"] <= TARGET and r["p99_ratio"] <= TARGET
        met_text = "yes" if met and not (b["errors"] or b["timeouts"]) else "**no**"
        lines.append(
            f"| {r['fault']} | {r['mode']} | {a['p50_ms']:.2f} / {b['p50_ms']:.2f} | "
            f"{r['p50_ratio']:.2f} | {a['p99_ms']:.2f} / {b['p99_ms']:.2f} | "
            f"{r['p99_ratio']:.2f} | {b['errors']}, {b['timeouts']} | "
            f"{r['rss_peak_mb']['a']:.0f} / {r['rss_peak_mb']['b']:.0f} | "
            f"{r['cpu_s']['a']:.1f} / {r['cpu_s']['b']:.1f} | {met_text} |"
        )
    lines.append("")
    lines.append("What B did with its bad candidate's shadows (from its /metrics):")
    lines.append("")
    for r in data["rows"]:
        shadows = ", ".join(f"{k} {v:g}" for k, v in sorted(r["b_shadows"].items()))
        lines.append(f"- {r['fault']}, {r['mode']}: {shadows}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--only", help="comma-separated fault names (default: all)")
    p.add_argument("--mode", choices=["both", "default", "worker"], default="both")
    p.add_argument("--flood-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--flood-connections", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.flood_port:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_flood(args.flood_port, args.flood_connections))
        return 0
    rate, duration, warmup, flood_n = (40, 5.0, 1.0, 2000) if args.quick else (80, 30.0, 3.0, 12000)
    faults = [f for f in FAULTS if not args.only or any(o in f for o in args.only.split(","))]
    modes = {"both": [False, True], "default": [False], "worker": [True]}[args.mode]
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load": round(os.getloadavg()[0], 2),
        "rate": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "quick": args.quick,
        "rows": [],
    }
    for worker in modes:
        for fault in faults:
            print(f"{fault} ({'worker' if worker else 'one process'})...", file=sys.stderr)
            row = run_case(fault, worker, rate, duration, warmup, flood_n)
            data["rows"].append({**row, "run": data["started"], "load": os.getloadavg()[0]})
    out = RESULTS.with_name(RESULTS.name + "-quick") if args.quick else RESULTS
    previous = out.with_suffix(".json")
    if (args.only or args.mode != "both") and previous.exists():
        # A partial run replaces its own rows and keeps the others (in their order).
        rows = {(r["fault"], r["mode"]): r for r in json.loads(previous.read_text())["rows"]}
        for r in data["rows"]:
            rows[r["fault"], r["mode"]] = r
        order = {(f, m): i for i, (m, f) in enumerate(
            (m, f) for m in ("one process", "shadow worker") for f in FAULTS)}  # fmt: skip
        data["rows"] = sorted(rows.values(), key=lambda r: order[r["fault"], r["mode"]])
    h.write_results(out, data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
