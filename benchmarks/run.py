"""The benchmark suite: shadoweval against direct calls and nginx `mirror`, in one run.

    benchmarks/setup.sh                  # nginx, wrk (Debian), vegeta (Go module proxy)
    .venv/bin/python benchmarks/run.py   # all scenarios; --quick for a short smoke run

Writes benchmarks/results/latest.json and latest.md. Each figure is measured side by side
in the same run, so ratios are meaningful on a shared, noisy machine; repeated runs give
medians and spreads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h
import uvloop
from clients import held, pct, streams

RESULTS = Path(__file__).parent / "results"


def url(port: int, path: str = "/v1/chat/completions") -> str:
    return f"http://127.0.0.1:{port}{path}"


def median_spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fixed_rate(rate: int, duration: float, repeat: int) -> dict[str, Any]:
    """Added latency at a fixed rate, 100% mirrored to 2 candidates: shadoweval vs nginx."""
    out: dict[str, list[dict[str, Any]]] = {"direct": [], "nginx_mirror": [], "shadoweval": []}
    with h.nginx_upstreams(3) as (p, c1, c2):
        cands = [url(c1, ""), url(c2, "")]
        with (
            h.nginx_proxy(p, [c1, c2]) as np_,
            h.shadoweval_proxy(url(p, ""), cands) as (sp, admin, proc),
        ):
            h.vegeta(url(sp), rate // 2, 2)  # warm connection pools
            h.vegeta(url(np_), rate // 2, 2)
            before = h.shadow_counts(admin)
            for _ in range(repeat):
                # Interleaved so slow drifts of the machine hit all three alike.
                out["direct"].append(h.vegeta(url(p), rate, duration))
                out["nginx_mirror"].append(h.vegeta(url(np_), rate, duration))
                out["shadoweval"].append(h.vegeta(url(sp), rate, duration))
            rss = h.rss_bytes(proc.pid)
            time.sleep(2)  # let queued shadows finish
            shadows = _delta(h.shadow_counts(admin), before)
    res: dict[str, Any] = {"rate": rate, "duration_s": duration, "repeat": repeat, "runs": out}
    for name in ("nginx_mirror", "shadoweval"):
        added50 = [r["p50_ms"] - d["p50_ms"] for r, d in zip(out[name], out["direct"], strict=True)]
        added99 = [r["p99_ms"] - d["p99_ms"] for r, d in zip(out[name], out["direct"], strict=True)]
        res[name] = {
            "added_p50_ms": statistics.median(added50),
            "added_p99_ms": statistics.median(added99),
            "added_p99_spread_ms": [min(added99), max(added99)],
            "errors": sum(r["errors"] for r in out[name]),
            "success": min(r["success"] for r in out[name]),
        }
    res["direct"] = {
        "p50_ms": median_spread(out["direct"], "p50_ms"),
        "p99_ms": median_spread(out["direct"], "p99_ms"),
    }
    nginx99 = max(res["nginx_mirror"]["added_p99_ms"], 1e-3)
    res["p99_added_vs_nginx"] = res["shadoweval"]["added_p99_ms"] / nginx99
    res["shadoweval_rss_mb"] = rss / 1e6
    sent = sum(r["requests"] for r in out["shadoweval"]) * len(cands)
    res["shadows"] = {"expected": sent, **shadows}
    return res


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def saturation(duration: int, repeat: int) -> dict[str, Any]:
    """Closed-loop throughput on one core: shadoweval vs nginx (plain, and mirror to one)."""
    res: dict[str, Any] = {"duration_s": duration, "repeat": repeat}
    with h.nginx_upstreams(2) as (p, c1):
        with h.nginx_proxy(p, []) as plain, h.nginx_proxy(p, [c1]) as mirror:
            res["nginx_plain_rps"] = [h.wrk(url(plain), duration) for _ in range(repeat)]
            res["nginx_mirror1_rps"] = [h.wrk(url(mirror), duration) for _ in range(repeat)]
        with h.shadoweval_proxy(url(p, ""), []) as (sp, _, _proc):
            res["shadoweval_plain_rps"] = [h.wrk(url(sp), duration) for _ in range(repeat)]
        with h.shadoweval_proxy(url(p, ""), [url(c1, "")]) as (sp, admin, _proc):
            res["shadoweval_mirror1_rps"] = [h.wrk(url(sp), duration) for _ in range(repeat)]
            time.sleep(2)
            # Under saturation the proxy sheds shadows before it slows the primary: how many
            # of the requests were mirrored is part of the figure.
            counts = h.shadow_counts(admin)
            served = sum(res["shadoweval_mirror1_rps"]) * duration
            res["shadoweval_mirror1_shadows"] = {"requests": served, **counts}
            res["mirrored_share"] = counts["pairs"] / served if served else 0.0
    med = {k: statistics.median(v) for k, v in res.items() if k.endswith("_rps")}
    res["median_rps"] = med
    res["plain_ratio"] = med["shadoweval_plain_rps"] / med["nginx_plain_rps"]
    res["mirror1_ratio"] = med["shadoweval_mirror1_rps"] / med["nginx_mirror1_rps"]
    return res


def streaming(concurrency: int, seconds: float) -> dict[str, Any]:
    """Concurrent SSE streams at 20 chunks/s each: added TTFT and per-chunk relay delay."""
    words = int(seconds * 20)
    h_args = ["--token-delay-ms", "50", "--model", "prod-model"]
    res: dict[str, Any] = {"concurrency": concurrency, "seconds": seconds}
    with h.fake_upstream(*h_args) as p, h.fake_upstream("--model", "cand") as c:
        # The fake echoes the prompt: ~`words` chunks per stream.
        import clients

        clients.STREAM_BODY["messages"] = [
            {"role": "user", "content": " ".join(f"w{i}" for i in range(words))}
        ]
        # Arrivals spread over one stream's life: `concurrency` in flight at steady state.
        direct = uvloop.run(streams(url(p), concurrency, ramp_s=seconds))
        # nginx on the same core, unbuffered, mirroring to the same candidate: the floor of
        # what relaying this many chunks costs on this machine.
        cpu: dict[str, float] = {}
        pid: list[int] = []
        with h.nginx_proxy(p, [c], streaming=True, pid=pid) as np_:
            before = h.cpu_seconds(pid[0])
            nginx = uvloop.run(streams(url(np_), concurrency, ramp_s=seconds))
            cpu["nginx_mirror"] = h.cpu_seconds(pid[0]) - before
        with h.shadoweval_proxy(url(p, ""), [url(c, "")]) as (sp, _, proc):
            before = h.cpu_seconds(proc.pid)
            proxied = uvloop.run(streams(url(sp), concurrency, ramp_s=seconds))
            cpu["shadoweval"] = h.cpu_seconds(proc.pid) - before
            rss = h.rss_bytes(proc.pid)
    for name, r in (("direct", direct), ("nginx_mirror", nginx), ("shadoweval", proxied)):
        res[name] = {
            "errors": r["errors"],
            "chunks": r["chunks"],
            "ttft_p50_ms": 1000 * pct(r["ttft"], 0.5),
            "ttft_p99_ms": 1000 * pct(r["ttft"], 0.99),
            "gap_p50_ms": 1000 * pct(r["gaps"], 0.5),
            "gap_p99_ms": 1000 * pct(r["gaps"], 0.99),
        }
    res["added_ttft_p99_ms"] = res["shadoweval"]["ttft_p99_ms"] - res["direct"]["ttft_p99_ms"]
    res["added_gap_p99_ms"] = res["shadoweval"]["gap_p99_ms"] - res["direct"]["gap_p99_ms"]
    for key in ("ttft_p99_ms", "gap_p99_ms"):
        res[f"nginx_added_{key}"] = res["nginx_mirror"][key] - res["direct"][key]
    # The relay's cost where the kernel dominates: CPU per chunk delivered (mirror included).
    for name, r in (("nginx_mirror", nginx), ("shadoweval", proxied)):
        res[name]["cpu_s"] = cpu[name]
        res[name]["cpu_us_per_chunk"] = 1e6 * cpu[name] / max(r["chunks"], 1)
    res["shadoweval_rss_mb"] = rss / 1e6
    return res


def concurrency(n: int, hold_s: float) -> dict[str, Any]:
    """``n`` requests in flight at once, the upstream holding each for ``hold_s``."""
    res: dict[str, Any] = {"in_flight": n, "hold_s": hold_s}
    with h.fake_upstream("--latency-ms", str(hold_s * 1000)) as p, h.fake_upstream() as c:
        cand = [url(c, "")]
        extra = {
            "candidates": [
                {"name": "cand-0", "url": url(c, ""), "concurrency": 64, "queue_size": 20000}
            ]
        }
        with h.shadoweval_proxy(url(p, ""), cand, extra) as (sp, _, proc):
            idle = h.rss_bytes(proc.pid)
            peak = peak_pss = 0

            async def run() -> dict[str, Any]:
                nonlocal peak, peak_pss
                task = asyncio.create_task(held(url(sp), n))
                while not task.done():
                    peak = max(peak, h.rss_bytes(proc.pid))
                    peak_pss = max(peak_pss, h.rss_bytes(proc.pid, "Pss"))
                    await asyncio.sleep(0.2)
                return await task

            out = asyncio.run(run())
    res.update(
        {
            "errors": out["errors"],
            "elapsed_s": out["elapsed_s"],
            "rss_idle_mb": idle / 1e6,
            "rss_peak_mb": peak / 1e6,
            "pss_peak_mb": peak_pss / 1e6,
        }
    )
    return res


def bad_candidates(rate: int, duration: float, repeat: int) -> dict[str, Any]:
    """Primary-path P99 with a healthy, a 10x slower and a refusing candidate."""
    res: dict[str, Any] = {"rate": rate}
    with h.nginx_upstreams(2) as (p, healthy), h.fake_upstream("--latency-ms", "20") as slow:
        refused = h.free_port()
        variants = {
            "healthy": url(healthy, ""),
            "slow_10x": url(slow, ""),
            "refusing": url(refused, ""),
        }
        for name, cand in variants.items():
            with h.shadoweval_proxy(url(p, ""), [cand]) as (sp, _, _proc):
                h.vegeta(url(sp), rate // 2, 2)
                runs = [h.vegeta(url(sp), rate, duration) for _ in range(repeat)]
            res[name] = {"p50_ms": median_spread(runs, "p50_ms")["median"], "p99_ms": median_spread(runs, "p99_ms")["median"],
                         "errors": sum(r["errors"] for r in runs)}  # fmt: skip
        direct = [h.vegeta(url(p), rate, duration) for _ in range(repeat)]
    d99 = median_spread(direct, "p99_ms")["median"]
    added = {k: max(res[k]["p99_ms"] - d99, 1e-3) for k in variants}
    res["direct_p99_ms"] = d99
    res["slow_vs_healthy_p99"] = res["slow_10x"]["p99_ms"] / res["healthy"]["p99_ms"]
    res["refusing_vs_healthy_p99"] = res["refusing"]["p99_ms"] / res["healthy"]["p99_ms"]
    res["added_p99_ms"] = added
    return res


def kafka_down(rate: int, duration: float, repeat: int) -> dict[str, Any]:
    """Primary-path P99 with the Kafka sink up, then with the broker unreachable."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        return {"skipped": "KAFKA_BOOTSTRAP not set (scripts/kafka.sh start)"}
    res: dict[str, Any] = {"rate": rate}
    dead = f"127.0.0.1:{h.free_port()}"
    with h.nginx_upstreams(2) as (p, c1):
        for name, servers in (("kafka_up", bootstrap), ("kafka_down", dead)):
            sink = {
                "kind": "kafka",
                "bootstrap_servers": servers,
                "topic": f"bench-{int(time.time())}",
            }
            with h.shadoweval_proxy(url(p, ""), [url(c1, "")], {"sink": sink}) as (sp, _, _proc):
                h.vegeta(url(sp), rate // 2, 2)
                runs = [h.vegeta(url(sp), rate, duration) for _ in range(repeat)]
            res[name] = {
                "p99_ms": median_spread(runs, "p99_ms")["median"],
                "errors": sum(r["errors"] for r in runs),
            }
    res["down_vs_up_p99"] = res["kafka_down"]["p99_ms"] / res["kafka_up"]["p99_ms"]
    return res


def idle_rss() -> dict[str, Any]:
    with (
        h.nginx_upstreams(3) as (p, c1, c2),
        h.shadoweval_proxy(url(p, ""), [url(c1, ""), url(c2, "")]) as (_sp, _, proc),
    ):
        time.sleep(2)
        # RSS counts pages a forked shadow worker shares with the proxy twice; PSS divides
        # them, as the pod's memory accounting does. One process: PSS is RSS less shared
        # libraries' shares.
        return {
            "rss_mb": h.rss_bytes(proc.pid) / 1e6,
            "pss_mb": h.rss_bytes(proc.pid, "Pss") / 1e6,
        }


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    load = os.getloadavg()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_at_start": load, "kernel": platform.release(),
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()}  # fmt: skip


TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], float | None], str, float]] = [
    (
        "fixed_rate",
        "added P50 vs direct (ms)",
        lambda r: r["shadoweval"]["added_p50_ms"],
        "<=",
        0.3,
    ),
    (
        "fixed_rate",
        "added P99 vs direct (ms)",
        lambda r: r["shadoweval"]["added_p99_ms"],
        "<=",
        1.5,
    ),
    (
        "fixed_rate",
        "added P99 / nginx mirror's added P99",
        lambda r: r["p99_added_vs_nginx"],
        "<=",
        2.0,
    ),
    (
        "saturation",
        "throughput / nginx mirror, 1 candidate",
        lambda r: r["mirror1_ratio"],
        ">=",
        0.5,
    ),
    (
        "saturation",
        "throughput / nginx plain proxy, no candidates",
        lambda r: r["plain_ratio"],
        ">=",
        0.5,
    ),
    ("streaming", "added TTFT P99 (ms)", lambda r: r["added_ttft_p99_ms"], "<=", 1.0),
    ("streaming", "chunk relay delay P99 (ms)", lambda r: r["added_gap_p99_ms"], "<=", 1.0),
    ("concurrency", "errors", lambda r: float(sum(r["errors"].values())), "<=", 0.0),
    ("concurrency", "proxy RSS peak (MB)", lambda r: r["rss_peak_mb"], "<=", 500.0),
    (
        "bad_candidates",
        "P99, 10x slower candidate / healthy",
        lambda r: r["slow_vs_healthy_p99"],
        "<=",
        1.1,
    ),
    (
        "bad_candidates",
        "P99, refusing candidate / healthy",
        lambda r: r["refusing_vs_healthy_p99"],
        "<=",
        1.1,
    ),
    ("kafka_down", "P99, Kafka down / up", lambda r: r.get("down_vs_up_p99"), "<=", 1.1),
    ("idle", "proxy RSS idle (MB)", lambda r: r["rss_mb"], "<=", 80.0),
    ("idle", "proxy PSS idle, all its processes (MB)", lambda r: r.get("pss_mb"), "<=", 80.0),
]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run {results['started']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['nginx']}; "
        f"load average at start {m['load_avg_at_start'][0]:.2f}. Proxies pinned to core {h.SUT_CORE}, "
        f"upstreams and load generators to core {h.LOAD_CORE}."
        + (" shadoweval with the shadow worker (same core)." if results.get("worker") else ""),
        "",
        "| scenario | figure | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for scenario, figure, get, op, target in TARGETS:
        r = results["scenarios"].get(scenario)
        value = None
        if r and "skipped" not in r and "error" not in r:
            value = get(r)
        if value is None:
            reason = (r or {}).get("skipped") or (r or {}).get("error") or "not run"
            lines.append(f"| {scenario} | {figure} | — ({reason}) | {op} {target:g} | — |")
            continue
        met = value <= target if op == "<=" else value >= target
        lines.append(
            f"| {scenario} | {figure} | {value:.3g} | {op} {target:g} | {'yes' if met else '**no**'} |"
        )
    fixed = results["scenarios"].get("fixed_rate", {}).get("shadows")
    sat = results["scenarios"].get("saturation", {})
    stream = results["scenarios"].get("streaming", {})
    if fixed or "mirrored_share" in sat or "nginx_added_gap_p99_ms" in stream:
        lines.append("")
    if "nginx_added_gap_p99_ms" in stream:
        lines.append(
            "Streaming, nginx mirror on the same core for reference: added TTFT P99 "
            f"{stream['nginx_added_ttft_p99_ms']:.3g} ms, chunk relay delay P99 "
            f"{stream['nginx_added_gap_p99_ms']:.3g} ms. CPU per chunk delivered: nginx "
            f"{stream['nginx_mirror'].get('cpu_us_per_chunk', float('nan')):.0f} µs, "
            f"shadoweval {stream['shadoweval'].get('cpu_us_per_chunk', float('nan')):.0f} µs."
        )
    if fixed:
        dropped = ", ".join(f"{k} {v:g}" for k, v in fixed.items() if k.startswith("dropped"))
        lines.append(
            f"Shadows at the fixed rate: {fixed['expected']:g} sent to the candidates, "
            f"{fixed['pairs']:g} recorded as pairs" + (f", {dropped}" if dropped else "") + "."
        )
    if "mirrored_share" in sat:
        share = min(sat["mirrored_share"], 1.0)  # requests are estimated from the rate
        lines.append(
            f"Saturation with one candidate: {100 * share:.0f}% of the requests served were "
            "mirrored" + (" (the rest shed and counted)." if share < 0.99 else ".")
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, one repetition")
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument(
        "--worker", action="store_true", help="shadoweval with shadow_worker.enabled"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="relay processes (listen.processes, with the worker), all on the same core",
    )
    parser.add_argument(
        "--out", help="results path without suffix (default: results/latest, or quick)"
    )
    args = parser.parse_args()
    args.worker = args.worker or args.processes > 1
    if args.worker:
        h.SHADOWEVAL_EXTRA["shadow_worker"] = {"enabled": True}
    h.PROCESSES = args.processes
    q = args.quick
    repeat = 1 if q else 3
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "fixed_rate": lambda: fixed_rate(1000, 3 if q else 10, repeat),
        "saturation": lambda: saturation(3 if q else 8, repeat),
        "streaming": lambda: streaming(100 if q else 1000, 3 if q else 10),
        "concurrency": lambda: concurrency(1000 if q else 10000, 5),
        "bad_candidates": lambda: bad_candidates(500, 3 if q else 8, repeat),
        "kafka_down": lambda: kafka_down(500, 3 if q else 8, repeat),
        "idle": idle_rss,
    }
    only = [s for s in args.only.split(",") if s]
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                               "quick": q, "worker": args.worker, "processes": args.processes,
                               "scenarios": {}}  # fmt: skip
    name = ("quick" if q else "latest") + ("-worker" if args.worker else "")
    name += f"-processes{args.processes}" if args.processes > 1 else ""
    out = Path(args.out or RESULTS / name)
    if only and out.with_suffix(".json").exists():
        # A partial run replaces its scenarios' figures and keeps the others'.
        previous = json.loads(out.with_suffix(".json").read_text())
        if previous.get("quick") == q:
            results["scenarios"] = previous.get("scenarios", {})
    for name, fn in scenarios.items():
        if only and name not in only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0]
        try:
            results["scenarios"][name] = fn()
            results["scenarios"][name].update(started=started, load_average_at_start=load)
        except Exception as exc:  # one broken scenario must not lose the others' figures
            results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(
            json.dumps(results["scenarios"][name], default=str)[:600], file=sys.stderr, flush=True
        )
    h.write_results(out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
