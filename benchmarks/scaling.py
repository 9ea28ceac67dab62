"""Throughput with more than one core: nginx with 1 and 2 worker processes against
shadoweval with 1 and 2 relay processes (``listen.processes``), no candidates.

    .venv/bin/python benchmarks/scaling.py

Every figure is per core elsewhere in the suite; this one asks whether a second process
doubles it, and how the ratio to nginx holds. On a machine with only two cores the load
generator and the upstream cannot have cores of their own: everything runs on all cores,
so the absolute figures are lower than run.py's and only the ratios taken in this run
mean anything. Results: results/scaling.json and results/scaling.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness as h

RESULTS = Path(__file__).parent / "results"
TARGET = "/v1/chat/completions"


def main() -> int:
    repeat, duration = 3, 6
    cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    counts = (1, 2)
    res: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": cores,
        "load_average_at_start": os.getloadavg()[0],
    }
    rps: dict[str, list[float]] = {}

    def measure(name: str, port: int) -> None:
        url = f"http://127.0.0.1:{port}{TARGET}"
        h.wrk(url, 2, cores=cores, threads=2)  # warm-up: pools filled, code paths hot
        rps[name] = [
            h.wrk(url, duration, connections=128, cores=cores, threads=2) for _ in range(repeat)
        ]
        print(name, [f"{x:,.0f}" for x in rps[name]], flush=True)

    with h.nginx_upstreams(1, cores=cores, workers=2) as (p,):
        upstream = f"http://127.0.0.1:{p}"
        for n in counts:
            with h.nginx_proxy(p, [], workers=n, cores=cores) as port:
                measure(f"nginx x{n}", port)
            with h.shadoweval_proxy(upstream, [], processes=n, cores=cores) as (port, _, _):
                measure(f"shadoweval x{n}", port)
    med = {k: statistics.median(v) for k, v in rps.items()}
    res["rps"] = rps
    res["median_rps"] = med
    res["shadoweval_vs_nginx"] = {n: med[f"shadoweval x{n}"] / med[f"nginx x{n}"] for n in counts}
    res["two_vs_one"] = {
        who: med[f"{who} x2"] / med[f"{who} x1"] for who in ("nginx", "shadoweval")
    }
    md = (
        f"Run {res['started']} on cores {cores}, shared by the proxy, the upstream and wrk "
        f"(load average {res['load_average_at_start']:.2f}).\n\n"
        "| processes | nginx req/s | shadoweval req/s | shadoweval vs nginx |\n|---|---|---|---|\n"
        + "".join(
            f"| {n} | {med[f'nginx x{n}']:,.0f} | {med[f'shadoweval x{n}']:,.0f} | "
            f"{res['shadoweval_vs_nginx'][n]:.2f}x |\n"
            for n in counts
        )
        + f"\n2 processes vs 1: nginx {res['two_vs_one']['nginx']:.2f}x, "
        f"shadoweval {res['two_vs_one']['shadoweval']:.2f}x\n"
    )
    h.write_results(RESULTS / "scaling", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
