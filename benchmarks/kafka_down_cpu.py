"""Event-loop CPU of the Kafka sink while Kafka is down, against the same load with it up.

    eval "$(scripts/kafka.sh start)"
    .venv/bin/python benchmarks/kafka_down_cpu.py               # dead port vs up, 10 s each
    .venv/bin/python benchmarks/kafka_down_cpu.py --outage      # STOPS the broker after 5 s

Offers 2 KiB records to one ``KafkaSink`` at a fixed rate (500/s: a proxy at 500 req/s with
one candidate) and reports the process CPU time per second of wall time, the delay of a 5 ms
loop timer, and the log lines written (a log line costs the proxy CPU too).

- default: the sink pointed at a closed port (Kafka down from the start), then at
  ``KAFKA_BOOTSTRAP`` (up).
- ``--outage``: connected to ``KAFKA_BOOTSTRAP``, then ``scripts/kafka.sh stop`` runs after
  5 s (with this process's environment: point ``KAFKA_PORT``/``KAFKA_STATE_DIR`` at a broker
  of your own); CPU and log lines per 5 s window. The window after the stop is the one the
  sink used to spend in aiokafka's metadata-refresh loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import uvloop

from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks.kafka import KafkaSink

ROOT = Path(__file__).resolve().parents[1]


class LogCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def offer(
    bootstrap: str, rate: int, seconds: float, logs: LogCount, outage: bool
) -> list[dict[str, Any]]:
    cfg = KafkaSinkConfig(
        kind="kafka", bootstrap_servers=[bootstrap], topic=f"cpu-{int(time.time())}"
    )
    sink = KafkaSink(cfg, Metrics())
    await sink.start()
    await asyncio.sleep(1.0)  # connected (or failed once)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - due)

    tick = asyncio.create_task(ticker())
    record = {"schema": "shadoweval.pair.v1", "request_id": "", "text": "a" * 2048}
    window = 5.0 if outage else seconds
    rows: list[dict[str, Any]] = []
    start = mark = next_at = time.perf_counter()
    cpu, lines, n = time.process_time(), logs.lines, 0
    stopper: asyncio.subprocess.Process | None = None
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            record["request_id"] = str(n)
            sink.put(record)
            n += 1
        next_at += 10 / rate
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        now = time.perf_counter()
        if outage and stopper is None and now - start >= 5:
            stopper = await asyncio.create_subprocess_exec(
                str(ROOT / "scripts" / "kafka.sh"), "stop",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        if now - mark >= window - 1e-3:
            lags.sort()
            rows.append({
                "t_s": round(now - start), "cpu_ms_per_s": round(1000 * (time.process_time() - cpu) / (now - mark), 1),
                "timer_lag_p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 2),
                "log_lines": logs.lines - lines, "buffered": sink.pending,
            })  # fmt: skip
            mark, cpu, lines, lags[:] = now, time.process_time(), logs.lines, []
    tick.cancel()
    await sink.close(0.2)
    if stopper is not None:
        await stopper.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--rate", type=int, default=500, help="records per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--outage", action="store_true", help="stop the broker after 5 s")
    args = parser.parse_args()
    logs = LogCount()
    logging.basicConfig(level=logging.INFO, handlers=[logs])
    runs = (
        [("outage", args.bootstrap)]
        if args.outage
        else [("down", closed_port()), ("up", args.bootstrap)]
    )
    for name, bootstrap in runs:
        seconds = max(args.seconds, 30) if args.outage else args.seconds
        for row in uvloop.run(offer(bootstrap, args.rate, seconds, logs, args.outage)):
            print(json.dumps({"kafka": name, **row}), flush=True)


if __name__ == "__main__":
    main()
