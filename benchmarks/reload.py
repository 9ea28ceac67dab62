"""What live reload costs the callers: their P50/P99 under steady load with no reloads and
with one reload a second, in one process and with the shadow worker. Each reload goes
through the whole diff, with the same shadow load in every case: one candidate is changed
(a new lane, new connections, the old lane drained) and a third one, sampled at 0, is added
or removed.

    .venv/bin/python benchmarks/reload.py            # 20 s per case, about 1.5 min
    .venv/bin/python benchmarks/reload.py --quick    # 5 s per case

``shadoweval serve`` runs pinned to one core, the fake upstreams and this load generator to
the other. The load is open-loop (requests leave on a fixed schedule; a latency is measured
from the moment its request was due, so a stall cannot hide), half of it streamed. Reloads
are a ConfigMap-style symlink swap followed by SIGHUP (the file poll is off, so exactly one
reload a second happens). Writes results/reload.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import PYTHON, SUT_CORE, fake_upstream, free_port, pinned, process
from benchmarks.harness import wait_port as wait_port_open
from benchmarks.harness import write_results as write

RESULTS = Path(__file__).parent / "results" / "reload"
RATE = 200  # requests per second
ROUNDS = 10  # short interleaved rounds: a neighbour's burst hits every case alike
BODY = {"model": "prod-model", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


class ConfigMap:
    """The file behind a ``..data`` symlink, swapped atomically (as the kubelet does)."""

    def __init__(self, root: Path) -> None:
        self.root, self.version = root, 0
        self.path = root / "shadoweval.json"

    def write(self, cfg: dict[str, Any]) -> None:
        self.version += 1
        version = self.root / f"..v{self.version}"
        version.mkdir()
        (version / "shadoweval.json").write_text(json.dumps(cfg))  # JSON is YAML
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/shadoweval.json")


@contextlib.contextmanager
def serve(cfg: dict[str, Any]) -> Iterator[tuple[int, ConfigMap, int]]:
    """(port, its ConfigMap, pid) of ``shadoweval serve`` with SIGHUP-only reloads."""
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        cm = ConfigMap(Path(tmp))
        cfg["sink"] = {"kind": "file", "path": f"{tmp}/pairs.jsonl"}
        cm.write(cfg)
        argv = [PYTHON, "-m", "shadoweval", "serve", "--config", str(cm.path)]
        argv = pinned(SUT_CORE, [*argv, "--reload-poll-s", "0"])
        with process(argv, "shadoweval", cfg["listen"]["port"]) as proc:
            wait_port_open(cfg["admin"]["port"])
            yield cfg["listen"]["port"], cm, proc.pid


async def drive(url: str, seconds: float, reload: Any | None) -> tuple[list[float], int, int]:
    """Open-loop load for ``seconds``; ``reload()`` once a second if given. The latencies
    (seconds, from when each request was due), the errors, and the reloads done."""
    latencies: list[float] = []
    errors = 0
    reloads = 0
    interval = 1.0 / RATE
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(due: float, stream: bool) -> None:
            nonlocal errors
            try:
                async with session.post(url, json={**BODY, "stream": stream}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        next_reload = start + 0.5  # then every second: 1 reload/s over any segment
        while (now := time.perf_counter()) < start + seconds:
            due = start + n * interval
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(one(due, n % 2 == 1))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            if reload is not None and time.perf_counter() >= next_reload:
                reload()
                reloads += 1
                next_reload += 1.0
        await asyncio.gather(*tasks)
    return latencies, errors, reloads


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


class Server:
    """One ``shadoweval serve`` under test and its reload: every reload changes cand-1 and
    adds or removes cand-2 (sampled at 0), so the shadow load stays the same."""

    def __init__(self, stack: contextlib.ExitStack, worker: bool, urls: list[str]) -> None:
        self.cfg: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": free_port()},
            "admin": {"host": "127.0.0.1", "port": free_port()},
            "primary": {"name": "prod", "url": urls[0]},
            "candidates": [
                {"name": "cand-0", "url": urls[1]},
                {"name": "cand-1", "url": urls[2], "timeout_s": 30},
            ],
            "shadow_worker": {"enabled": worker},
            "log_level": "warning",
        }
        port, self.cm, self.pid = stack.enter_context(serve(self.cfg))
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self._extra = {"name": "cand-2", "url": urls[2], "sample_rate": 0.0}
        self._flip = False

    def reload(self) -> None:
        self._flip = not self._flip
        cand_0, cand_1 = self.cfg["candidates"]
        changed = {**cand_1, "timeout_s": 31 if self._flip else 30}
        extra = [self._extra] if self._flip else []
        self.cm.write({**self.cfg, "candidates": [cand_0, changed, *extra]})
        os.kill(self.pid, signal.SIGHUP)


async def loop_stall(reloads: int) -> dict[str, float]:
    """The longest the proxy's event loop is held by one reload, in process (one process,
    two candidates: one changed, one added or removed each time): a 1 ms ticker's worst
    lateness while each reload runs, against its worst lateness over as many idle windows."""
    from shadoweval.proxy.reload import Reloader
    from shadoweval.testing import FakeUpstream, running_stack

    extra = FakeUpstream(model="cand-2")
    await extra.start()
    worst: list[float] = [0.0]

    async def ticker() -> None:
        while True:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            worst[0] = max(worst[0], time.perf_counter() - due)

    async def window(action: Any) -> float:
        worst[0] = 0.0
        await action()
        await asyncio.sleep(0.01)  # the ticker's next wake-up after it
        return worst[0]

    try:
        async with running_stack(candidates={"cand-0": FakeUpstream(model="c0")}) as stack:
            proxy = stack.proxy
            with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
                cm = ConfigMap(Path(tmp))
                raw = proxy.cfg.for_children()
                cm.write(raw)
                reloader = Reloader(cm.path, proxy.cfg, proxy.reload, proxy.metrics, environ={})
                tick = asyncio.create_task(ticker())
                busy, idle = [], []
                for i in range(reloads):
                    cand = {**raw["candidates"][0], "timeout_s": 30 + i % 2}
                    more = [{"name": "cand-2", "url": extra.url}] if i % 2 else []
                    cm.write({**raw, "candidates": [cand, *more]})
                    busy.append(await window(lambda: reloader.reload("bench")))
                    idle.append(await window(lambda: asyncio.sleep(0.02)))
                tick.cancel()
    finally:
        await extra.stop()
    return {
        "reloads": reloads,
        "stall_median_ms": round(statistics.median(busy) * 1000, 2),
        "stall_max_ms": round(max(busy) * 1000, 2),
        "idle_median_ms": round(statistics.median(idle) * 1000, 2),
        "idle_max_ms": round(max(idle) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per case")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    # Cases interleaved, round after round, so a noisy neighbour on a shared machine
    # lands on every case alike.
    cases = [(w, r) for w in (False, True) for r in (False, True)]
    results: dict[tuple[bool, bool], dict[str, Any]] = {
        c: {"latencies": [], "errors": 0, "reloads": 0, "round_p99": []} for c in cases
    }
    with contextlib.ExitStack() as stack:
        ports = [
            stack.enter_context(fake_upstream("--model", m, "--latency-ms", "20"))
            for m in ("prod-model", "cand-0", "cand-1")
        ]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        servers = {w: Server(stack, w, urls) for w in (False, True)}
        for server in servers.values():
            asyncio.run(drive(server.url, 2.0, None))  # warm-up: connections, first shadows
        for _ in range(ROUNDS):
            for worker, reloading in cases:
                server = servers[worker]
                latencies, errors, reloads = asyncio.run(
                    drive(server.url, seconds / ROUNDS, server.reload if reloading else None)
                )
                row = results[(worker, reloading)]
                row["latencies"] += latencies
                row["round_p99"].append(quantile(latencies, 0.99))
                row["errors"] += errors
                row["reloads"] += reloads
    stall = asyncio.run(loop_stall(10 if args.quick else 50))
    load_avg = os.getloadavg()[0]  # the machine's, for judging the noise in the figures
    rows = []
    for (worker, reloading), row in results.items():
        latencies = row["latencies"]
        rows.append(
            {
                "worker": worker,
                "reloads_per_s": 1 if reloading else 0,
                "reloads": row["reloads"],
                "requests": len(latencies) + row["errors"],
                "errors": row["errors"],
                "p50_ms": round(quantile(latencies, 0.5) * 1000, 3),
                "p99_ms": round(quantile(latencies, 0.99) * 1000, 3),
                # Robust to one noisy round: the median over rounds of each round's P99.
                "median_round_p99_ms": round(statistics.median(row["round_p99"]) * 1000, 3),
                "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
            }
        )
    lines = [
        "# Reload: caller latency under steady load, with and without reloads",
        "",
        f"{RATE} requests/s open-loop (half streamed) for {seconds:g} s per case (in {ROUNDS} "
        "interleaved rounds), primary and "
        "two candidates answering after 20 ms; one reload a second changes a candidate and adds "
        f"or removes another (ConfigMap-style swap + SIGHUP). Python {platform.python_version()}, "
        f"{os.cpu_count()} cores (proxy pinned to one); load average {load_avg:.1f} at the end.",
        "",
        "| mode | reloads/s | reloads | requests | errors | P50 ms | P99 ms | median round P99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mode = "shadow worker" if r["worker"] else "one process"
        lines.append(
            f"| {mode} | {r['reloads_per_s']} | {r['reloads']} | {r['requests']} | "
            f"{r['errors']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['median_round_p99_ms']:.2f} |"
        )
    lines += [
        "",
        f"The proxy's event loop during a reload (in process, {stall['reloads']} reloads): a 1 ms "
        f"ticker was late by {stall['stall_median_ms']:.2f} ms (median) and "
        f"{stall['stall_max_ms']:.2f} ms (worst) while a reload ran, against "
        f"{stall['idle_median_ms']:.2f} / {stall['idle_max_ms']:.2f} ms in as many idle windows.",
    ]
    data = {
        "rate": RATE,
        "seconds": seconds,
        "load_average": load_avg,
        "rows": rows,
        "loop_stall": stall,
    }
    write(RESULTS, data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
