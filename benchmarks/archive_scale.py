"""CPU time, wall time and peak memory of ``shadoweval archive`` (JSONL -> Parquet) and of
reading the archive back, at report sizes.

The inputs are report_scale.py's (same generator, same cache directory): 3 pairs per
request, 9 score records per pair. Each step runs as ``shadoweval archive`` / a reader in a
child process, so its peak RSS (``os.wait4``) is its own. The second archive pass rewrites
the same partitions with the same records (the idempotent path: existing rows are read back
and deduplicated), so it is the costlier one.

    python benchmarks/archive_scale.py                 # 30k pairs (quick)
    python benchmarks/archive_scale.py --sizes 30000 300000

Results: benchmarks/results/archive_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from report_scale import write_inputs

RESULTS = Path(__file__).parent / "results"
READ = (
    "import sys; from collections import Counter; from shadoweval.archive.layout import "
    "read_records; print(sum(1 for _ in read_records([sys.argv[1]], 'pairs', Counter())))"
)


def run(argv: list[str]) -> dict[str, Any]:
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed with exit code {proc.returncode}")
    return {
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "wall_s": round(time.monotonic() - start, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[30_000], help="pair counts")
    ap.add_argument("--memory-limit", default="256MB", help="DuckDB's limit before it spills")
    ap.add_argument("--data", default=str(Path(__file__).parent / ".report_scale"))
    args = ap.parse_args()
    data = Path(args.data)
    exe = [sys.executable, "-m", "shadoweval"]
    rows = []
    for size in args.sizes:
        pair_path, score_path = write_inputs(size, data)
        arch = data / f"archive-{size}"
        shutil.rmtree(arch, ignore_errors=True)
        step = [*exe, "archive", "-q", "-o", str(arch), "--memory-limit", args.memory_limit]
        step += ["--pairs", str(pair_path), "--scores", str(score_path)]
        first, again = run(step), run(step)
        read = run([sys.executable, "-c", READ, str(arch)])
        input_mb = (pair_path.stat().st_size + score_path.stat().st_size) / 2**20
        archive_mb = sum(f.stat().st_size for f in arch.rglob("*.parquet")) / 2**20
        row = {
            "pairs": size,
            "input_mb": round(input_mb, 1),
            "archive_mb": round(archive_mb, 1),
            "memory_limit": args.memory_limit,
            "first": first,
            "again": again,
            "read_pairs": read,
        }
        print(orjson.dumps(row).decode(), flush=True)
        rows.append(row)
    write(rows)
    return 0


def write(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "archive_scale.json"
    old: list[dict[str, Any]] = orjson.loads(path.read_bytes()) if path.exists() else []
    sizes = {r["pairs"] for r in rows}
    merged = sorted([r for r in old if r["pairs"] not in sizes] + rows, key=lambda r: r["pairs"])
    path.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2) + b"\n")
    lines = [
        "# shadoweval archive at scale",
        "",
        "Synthetic inputs of benchmarks/report_scale.py (9 score records per pair). `first`:",
        "archiving into an empty directory; `again`: the same records again (partitions read",
        "back, deduplicated, rewritten); `read pairs`: every pair record read back as JSON.",
        "CPU and peak RSS of the child process; 2 shared cores.",
        "",
        "| pairs | input MB | archive MB | DuckDB limit | first CPU s / wall s / RSS MB "
        "| again CPU s / wall s / RSS MB | read pairs CPU s / RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in merged:
        f, a, d = r["first"], r["again"], r["read_pairs"]
        lines.append(
            f"| {r['pairs']:,} | {r['input_mb']} | {r['archive_mb']} | {r['memory_limit']} "
            f"| {f['cpu_s']} / {f['wall_s']} / {f['peak_rss_mb']} "
            f"| {a['cpu_s']} / {a['wall_s']} / {a['peak_rss_mb']} "
            f"| {d['cpu_s']} / {d['peak_rss_mb']} |"
        )
    (RESULTS / "archive_scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
