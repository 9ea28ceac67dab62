"""Sustained produce throughput of the Kafka sink from one process.

    eval "$(scripts/kafka.sh start)"
    .venv/bin/python benchmarks/kafka_produce.py            # --seconds 10 --sizes 2048,20480

For each record size and compression codec, a feeder keeps the sink's buffer topped up (never
full, so nothing is dropped) for a fixed time and counts what Kafka acknowledged. Reported:
records/s, MB/s of JSON payload (before compression), and the CPU seconds of this whole
process (time.process_time: serialisation, compression, the producer and the event loop; the
broker is another process) per 1,000 records. Writes benchmarks/results/kafka_produce.json
and kafka_produce.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import harness
import orjson

from shadoweval import loop
from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks.kafka import KafkaSink

RESULTS = Path(__file__).parent / "results"
WARMUP_S = 2.0


def _text(rng: random.Random, words: list[str], chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def _side(rng: random.Random, upstream: str, role: str) -> dict[str, Any]:
    return {
        "upstream": upstream, "role": role, "model": f"{upstream}-model", "status": 200,
        "error_type": None, "error": None, "latency_s": round(rng.uniform(0.2, 4), 6),
        "ttft_s": None, "stream": False, "output_text": "", "finish_reason": "stop",
        "tool_calls": None, "truncated": False, "attempts": 1,
        "usage": {"input_tokens": 120, "output_tokens": 300, "cached_input_tokens": None,
                  "estimated": False},
    }  # fmt: skip


def pair_records(size: int, count: int = 200, seed: int = 7) -> list[dict[str, Any]]:
    """Pair-shaped records of about ``size`` bytes of JSON, with text that compresses like
    prose (a vocabulary of pseudo-words, not one repeated character)."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choices("etaoinshrdlucmfwypvbgkjqxz", k=rng.randint(2, 9))) for _ in range(3000)
    ]
    records = []
    for _ in range(count):
        request_id = uuid.UUID(int=rng.getrandbits(128)).hex

        record: dict[str, Any] = {
            "schema": "shadoweval.pair.v1", "pair_id": f"{request_id}:cand-a",
            "request_id": request_id, "ts": "2026-01-01T00:00:00.000+00:00",
            "source": "traffic", "route": "chat", "path": "/v1/chat/completions", "task": None,
            "sampling_key": None, "trace_id": None,
            "request": {"model": "prod", "messages": [{"role": "user", "content": ""}]},
            "primary": _side(rng, "prod", "primary"), "candidate": _side(rng, "cand-a", "candidate"),
        }  # fmt: skip
        room = max(size - len(orjson.dumps(record)), 30)
        record["request"]["messages"][0]["content"] = _text(rng, words, room // 5)
        record["primary"]["output_text"] = _text(rng, words, room * 2 // 5)
        record["candidate"]["output_text"] = _text(rng, words, room - 3 * (room // 5))
        records.append(record)
    return records


async def run_case(bootstrap: str, size: int, compression: str, seconds: float) -> dict[str, Any]:
    metrics = Metrics()
    written = metrics.sink_records.labels("kafka", "written")
    dropped = metrics.sink_records.labels("kafka", "dropped")
    # Enough buffered to keep the producer busy (about 32 MB), always below capacity.
    high_water = max(500, min(5000, 32_000_000 // size))
    cfg = KafkaSinkConfig.model_validate(
        {
            "kind": "kafka",
            "bootstrap_servers": [bootstrap],
            "topic": f"bench-{size}-{compression}-{uuid.uuid4().hex[:8]}",
            "compression": compression,
            "buffer_records": 2 * high_water,
        }
    )
    records = pair_records(size)
    mean_bytes = sum(len(orjson.dumps(r)) for r in records) / len(records)
    sink = KafkaSink(cfg, metrics)
    await sink.start()
    stop = asyncio.Event()

    async def feed() -> None:
        i = 0
        while not stop.is_set():
            room = high_water - sink.pending
            if room <= 0:
                await asyncio.sleep(0.001)
                continue
            for _ in range(min(room, 500)):
                record = dict(records[i % len(records)])
                record["pair_id"] = f"{i}:cand-a"  # every record distinct
                sink.put(record)
                i += 1
            await asyncio.sleep(0)

    feeder = asyncio.create_task(feed())
    await asyncio.sleep(WARMUP_S)  # connect, create the topic, fill the pipeline
    w0, c0, t0 = _get(written), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    w1, c1, t1 = _get(written), time.process_time(), time.perf_counter()
    stop.set()
    await feeder
    await sink.close(30)
    count, elapsed, cpu = w1 - w0, t1 - t0, c1 - c0
    return {
        "record_bytes": round(mean_bytes),
        "compression": compression,
        "seconds": round(elapsed, 2),
        "records": int(count),
        "records_per_s": round(count / elapsed),
        "mb_per_s": round(count * mean_bytes / elapsed / 1e6, 2),
        "cpu_s_per_1k_records": round(cpu / count * 1000, 4) if count else None,
        "cpu_utilisation": round(cpu / elapsed, 2),
        "dropped": int(_get(dropped)),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of a case (by records/s), with the spread of all runs."""
    ordered = sorted(runs, key=lambda r: r["records_per_s"])
    case = dict(ordered[len(ordered) // 2])
    case["runs"] = len(runs)
    case["records_per_s_range"] = [ordered[0]["records_per_s"], ordered[-1]["records_per_s"]]
    case["cpu_s_per_1k_records_median"] = statistics.median(
        r["cpu_s_per_1k_records"] for r in runs if r["cpu_s_per_1k_records"] is not None
    )
    case["dropped"] = sum(r["dropped"] for r in runs)
    return case


def _get(counter: Any) -> float:
    # The in-process value of one labelled child; cheaper than a registry collection.
    return float(counter._value.get())


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Kafka sink produce throughput",
        "",
        f"One Python process producing through `KafkaSink` to {env['broker']}: "
        f"{result['seconds_per_case']:g} s per case after a {WARMUP_S:g} s warm-up, with the "
        "sink's defaults (acks=all, idempotent, linger 10 ms, 256 KiB batches).",
        f"Python {env['python']}, aiokafka {env['aiokafka']}, cramjam {env['cramjam']}, "
        f"{env['cpus']} CPUs (load average {env['load_average']} at the start), event loop "
        f"{env['event_loop']}. Broker and producer share the machine, so the figures are a "
        "floor for a dedicated cluster.",
        "",
        f"Median of {result['repeat']} runs per case (records/s range in parentheses). "
        "MB/s counts the JSON before compression; CPU is this process only "
        "(serialising, compressing, producing).",
        "",
        "| record | compression | records/s | MB/s | CPU s per 1k records | CPU use | dropped |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in result["cases"]:
        low, high = c["records_per_s_range"]
        lines.append(
            f"| {c['record_bytes'] / 1024:.0f} KiB | {c['compression']} "
            f"| {c['records_per_s']:,} ({low:,}-{high:,}) | {c['mb_per_s']} "
            f"| {c['cpu_s_per_1k_records_median']:.3f} | {c['cpu_utilisation']:.0%} "
            f"| {c['dropped']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", default="2048,20480", help="record sizes in bytes")
    parser.add_argument("--compression", default="zstd,gzip", help="codecs to compare")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median reported)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load = round(os.getloadavg()[0], 1)
    cases = []
    for size in (int(s) for s in args.sizes.split(",")):
        for codec in args.compression.split(","):
            runs = []
            for _ in range(args.repeat):
                runs.append(loop.run(run_case(args.bootstrap, size, codec, args.seconds)))
                print(json.dumps(runs[-1]))
            cases.append(summarise(runs))

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    result = {
        "benchmark": "kafka_produce",
        "seconds_per_case": args.seconds,
        "repeat": args.repeat,
        "environment": {
            "python": platform.python_version(),
            "aiokafka": version("aiokafka"),
            "cramjam": version("cramjam"),
            "cpus": os.cpu_count(),
            # Other work on the machine moves these figures; the load says how much there was.
            "load_average": load,
            "event_loop": "uvloop" if version("uvloop") != "not installed" else "asyncio",
            "broker": "a single-node local broker (scripts/kafka.sh)",
        },
        "cases": cases,
    }
    harness.write_results(args.out / "kafka_produce", result, markdown(result))


if __name__ == "__main__":
    main()
