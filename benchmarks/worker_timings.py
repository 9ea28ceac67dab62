"""Candidate timings in the records against the truth, beside CPU-burning processes.

    .venv/bin/python benchmarks/worker_timings.py            # 3 rounds of 60 requests per mode
    .venv/bin/python benchmarks/worker_timings.py --quick    # 1 round of 30
    .venv/bin/python benchmarks/worker_timings.py --label before   # adds a row, keeps the others

A candidate in its own process answers streamed requests after a known delay (200 ms to
its first and last token); the proxy mirrors to it while two processes spin at the normal
priority. Each record's ``latency_s`` and ``ttft_s`` minus the delay is the error of the
measurement (``shadoweval.testing.timings``). Modes: the shadow worker with its shipped
scheduling (``idle``) and the proxy in one process, for reference. Rows are kept per
``--label``, so a run on another revision of the code (e.g. before a change) sits beside
this one. Writes results/worker_timings.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from shadoweval.testing.timings import Timings, measure

RESULTS = Path(__file__).parent / "results" / "worker_timings"
TARGET_MS = 5.0  # the median error a record may have (issue: record minus wire time)
MODES = {"shadow worker (idle)": True, "one process": False}


async def run_mode(worker: bool, rounds: int, requests: int) -> dict[str, Any]:
    total = Timings(sent_under_load=True)
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            t = await measure(Path(d), requests=requests, burners=2, worker=worker)
        total.latency_error += t.latency_error
        total.ttft_error += t.ttft_error
        total.queue_wait += t.queue_wait
        total.parse_wait += t.parse_wait
        total.served += t.served
        total.served_first += t.served_first
        total.sent_under_load &= t.sent_under_load
    return total.summary()


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:+.1f}"


def _wait(value: float | None) -> str:
    return "not recorded" if value is None else f"{value * 1000:.0f}"


def write(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = [
        "# Candidate timings beside CPU-burning processes",
        "",
        "Record minus the candidate's known delay (200 ms), in ms; two processes spin at the",
        "normal priority while the shadows are sent. *vs wire*: the median record figure",
        "minus the candidate's median own timing of its answers (the delays the loaded",
        f"machine added at the candidate's end taken out); target {TARGET_MS:g} ms. "
        "`queue_wait_s` / `parse_wait_s`: the medians the records report (load, not latency).",
        "Written by `benchmarks/worker_timings.py`.",
        "",
        "| code | mode | records | latency error P50 | P90 | TTFT error P50 | P90 "
        "| latency vs wire P50 | TTFT vs wire P50 | queue wait P50 | parse wait P50 "
        "| answered under load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in results["runs"].items():
        for mode, r in run["modes"].items():
            lines.append(
                f"| {label} | {mode} | {r['records']} | {_ms(r['latency_error_median_s'])} "
                f"| {_ms(r['latency_error_p90_s'])} | {_ms(r['ttft_error_median_s'])} "
                f"| {_ms(r['ttft_error_p90_s'])} | {_ms(r.get('wire_latency_error_median_s'))} "
                f"| {_ms(r.get('wire_ttft_error_median_s'))} | {_wait(r['queue_wait_median_s'])} "
                f"| {_wait(r['parse_wait_median_s'])} | {r['sent_under_load']} |"
            )
    lines += ["", *(f"- {label}: {run['machine']}" for label, run in results["runs"].items())]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 30 requests per mode")
    ap.add_argument("--label", default="after", help="the row's name (the code measured)")
    args = ap.parse_args()
    rounds, requests = (1, 30) if args.quick else (3, 60)
    path = RESULTS.with_suffix(".json")
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    modes = {name: asyncio.run(run_mode(w, rounds, requests)) for name, w in MODES.items()}
    load = os.getloadavg()[0]
    results["runs"][args.label] = {
        "modes": modes,
        "machine": f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, load average {load:.1f} at the end, "
        f"{rounds} x {requests} requests per mode",
    }
    write(results)
    for name, r in modes.items():
        print(name, {k: v for k, v in r.items() if v is not None})
    print(RESULTS.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
