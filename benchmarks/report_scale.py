"""CPU time and peak memory of ``shadoweval report`` at production sizes.

Synthetic pairs and scores (:mod:`shadoweval.testing.synthetic`: a primary, a control and
two candidates, 9 score records per pair, four tasks) are written once per size as JSONL;
each report then runs in a child process of its own, so its peak RSS is its alone
(``os.wait4``) and its CPU time is the report's (``time.process_time`` in the child).

    python benchmarks/report_scale.py            # 30k and 300k pairs
    python benchmarks/report_scale.py --full     # and 3M pairs (~15 GB of JSONL)
    python benchmarks/report_scale.py --label baseline --sizes 30000
    python benchmarks/report_scale.py --stages --sizes 3000000   # where the time goes

``--stages`` also records each stage's CPU, the RSS after it and the peak so far (reading
the pairs, the score pass, building the figures), written beside the row. Results are
merged by label into benchmarks/results/report_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from shadoweval.testing.synthetic import T0, Upstream, generate

RESULTS = Path(__file__).parent / "results"
UPSTREAMS = 3  # pairs per request
TASKS = ("simple", "reasoning", "code", "extraction")
CHUNK = 5000  # requests generated at a time: the generator holds its records in memory
SPACING_S = 0.05  # 1M requests span ~14 hours
# 3 per-side scorers (6 records) + 2 pair scorers + the pairwise judge = 9 per pair.
PER_SIDE = ("exact", "token_f1", "rouge_l")
PAIR_SCORERS = ("semantic", "normalized")

PRIMARY = Upstream("prod", role="primary", model="prod-model", accuracy=0.8, cost_usd=0.002)
OTHERS = [
    Upstream("prod-again", role="control", model="prod-model", accuracy=0.8, cost_usd=0.002),
    Upstream("cand-a", model="cand-a", accuracy=0.78, latency_s=0.4, cost_usd=0.001),
    Upstream("cand-b", model="cand-b", accuracy=0.82, latency_s=0.7, cost_usd=0.003),
]


def write_inputs(pairs: int, directory: Path) -> tuple[Path, Path]:
    """The JSONL files for ``pairs`` pairs (kept between runs: generating is slow)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair_path, score_path = directory / f"pairs-{pairs}.jsonl", directory / f"scores-{pairs}.jsonl"
    done = directory / f"done-{pairs}"
    if done.exists():
        return pair_path, score_path
    requests = pairs // UPSTREAMS
    with pair_path.open("wb") as pf, score_path.open("wb") as sf:
        for start in range(0, requests, CHUNK):
            n = min(CHUNK, requests - start)
            ps, ss = generate(
                PRIMARY,
                OTHERS,
                n,
                seed=start,
                per_side=PER_SIDE,
                pair_scorers=PAIR_SCORERS,
                judge=True,
            )
            # generate numbers requests from 0 on each call: renumber them globally.
            for rec in (*ps, *ss):
                local = int(rec["request_id"][3:])
                i = start + local
                rid = f"req{i:08d}"
                upstream = rec["pair_id"].rsplit(":", 1)[-1]
                rec["pair_id"] = f"{rid}:{upstream}"
                rec["request_id"] = rid
                rec["ts"] = datetime.fromtimestamp(T0 + i * SPACING_S, UTC).isoformat(
                    timespec="milliseconds"
                )
                rec["task"] = TASKS[i % len(TASKS)]
                if rec["schema"] == "shadoweval.score.v1":
                    rec["score_id"] = f"{rec['pair_id']}:{rec['scorer']}:{rec['side']}"
                    rec["scored_at"] = rec["ts"]
            pf.write(b"".join(orjson.dumps(r) + b"\n" for r in ps))
            sf.write(b"".join(orjson.dumps(r) + b"\n" for r in ss))
    done.touch()
    return pair_path, score_path


def _memory_mb() -> tuple[float, float]:
    """(RSS now, peak RSS) of this process in MB, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss, peak = (int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
    return rss, peak


def _time_stages(stages: list[dict[str, Any]]) -> None:
    """Wraps the report's three stages so each appends its CPU and memory to ``stages``."""
    # The modules themselves (the package's ``load`` attribute is the function).
    loader = importlib.import_module("shadoweval.report.load")
    command = importlib.import_module("shadoweval.report.command")

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                rss, peak = _memory_mb()
                cpu = time.process_time() - start
                stages.append(
                    {"stage": name, "cpu_s": round(cpu, 2), "rss_mb": rss, "peak_mb": peak}
                )

        return wrapper

    for module, name, stage in (
        (loader, "_read_pairs", "read pairs"),
        (loader, "_load_scores_duckdb", "score pass"),
        (command, "build_report", "build figures"),
    ):
        setattr(module, name, timed(stage, getattr(module, name)))


def child(pair_path: str, score_path: str, by: list[str], out: str, stages: bool) -> None:
    """One report, the real command's code path; writes its own figures to ``out``."""
    from shadoweval.report import command

    timings: list[dict[str, Any]] = []
    if stages:
        _time_stages(timings)
    start = time.process_time()
    kwargs: dict[str, Any] = {"pairs": [pair_path], "scores": [score_path]}
    if by:
        if "by" not in {f.name for f in dataclasses.fields(command.Options)}:
            Path(out).write_bytes(orjson.dumps({"unsupported": True}))
            return
        kwargs["by"] = tuple(by)
    report = command.make_report(command.Options(**kwargs))
    cpu = time.process_time() - start
    Path(out).write_bytes(
        orjson.dumps(
            {
                "cpu_s": cpu,
                "pairs": report["inputs"]["pair_records"],
                "gate": report["gate"],
                **({"stages": timings} if stages else {}),
            }
        )
    )


def measure(
    pair_path: Path, score_path: Path, by: list[str], tmp: Path, stages: bool
) -> dict[str, Any]:
    out = tmp / "child.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, __file__, "--child", str(pair_path), str(score_path), str(out)]
    argv += ["--stages"] if stages else []
    for name in by:
        argv += ["--by", name]
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode != 0:
        raise SystemExit(f"report child failed with exit code {proc.returncode}")
    figures: dict[str, Any] = orjson.loads(out.read_bytes())
    figures["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    figures["child_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    return figures


def write_results(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "report_scale.json"
    old: list[dict[str, Any]] = orjson.loads(path.read_bytes()) if path.exists() else []
    keys = {(r["label"], r["pairs"], r["by"]) for r in rows}
    merged = [r for r in old if (r["label"], r["pairs"], r["by"]) not in keys] + rows
    merged.sort(key=lambda r: (r["label"], r["by"], r["pairs"]))
    path.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2) + b"\n")
    lines = [
        "# shadoweval report at scale",
        "",
        "Synthetic inputs (benchmarks/report_scale.py): 3 pairs per request, 9 score records",
        "per pair. CPU = `time.process_time` of the report's child process; peak RSS of that",
        "child. Targets: 300k pairs <= 15 s and <= 500 MB; 3M pairs <= 120 s and <= 1 GB.",
        "`baseline`: the report before its engine (index bootstrap, every record parsed in",
        "Python); `engine`: the Poisson bootstrap of means, DuckDB score loading, ScoreTable;",
        "`columnar`: score files reduced in DuckDB to int32 arrays, values read as arrays,",
        "latency quantiles by the windowed Poisson bootstrap; `arrays`: scores read by",
        "DuckDB's typed JSON reader, last record chosen in numpy, each upstream's pairs and",
        "values as arrays in the aggregation, DuckDB at a 96 MB base; `join`: the score pass's",
        "join builds its hash table from the pairs' ids (not from the score records), and a",
        "pair's primary side is reused from the pair before when its JSON is the same, and an",
        "upstream's arrays are read in one pass; `columns`: the pairs held as numpy columns",
        "(report/pairs.py's PairStore), no per-pair objects, texts re-read by byte offset",
        "(docs/report.md, At scale, with repeated runs).",
        "",
        "| label | --by | pairs | input MB | CPU s | peak RSS MB | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in merged:
        lines.append(
            f"| {r['label']} | {r['by'] or '-'} | {r['pairs']:,} | {r['input_mb']:,.0f} | "
            f"{r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | {r['measured']} |"
        )
    for r in merged:
        if r.get("stages"):
            lines += [
                "",
                f"Stages of `{r['label']}` at {r['pairs']:,} pairs (--by {r['by'] or '-'}): CPU,",
                "RSS after the stage, peak RSS so far.",
                "",
                "| stage | CPU s | RSS after MB | peak MB |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {st['stage']} | {st['cpu_s']:.1f} | {st['rss_mb']:,.0f} | {st['peak_mb']:,.0f} |"
                for st in r["stages"]
            ]
    (RESULTS / "report_scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="pair counts")
    ap.add_argument("--full", action="store_true", help="also 3M pairs")
    ap.add_argument("--by", action="append", default=[], help="segment (child: passed on)")
    ap.add_argument("--also-by", action="append", default=[], help="segmented runs: task, ...")
    ap.add_argument("--label", default="current", help="row label in the results")
    ap.add_argument("--data", default=str(Path(__file__).parent / ".report_scale"))
    ap.add_argument("--stages", action="store_true", help="record each stage's CPU and RSS")
    ap.add_argument("--child", nargs=3, metavar=("PAIRS", "SCORES", "OUT"))
    ap.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        write_inputs(args.generate, Path(args.data))
        return
    if args.child:
        pairs, scores, out = args.child
        child(pairs, scores, args.by, out, args.stages)
        return
    sizes = args.sizes or ([30_000, 300_000] + ([3_000_000] if args.full else []))
    data = Path(args.data)
    rows = []
    for by in [[], *([b] for b in args.also_by)]:
        for size in sizes:
            # Generated in a process of its own: a report child forked from a parent that
            # had grown while generating would count the parent's pages in its peak RSS.
            gen = [sys.executable, __file__, "--generate", str(size), "--data", str(data)]
            subprocess.run(gen, check=True)
            pair_path, score_path = write_inputs(size, data)
            figures = measure(pair_path, score_path, by, data, args.stages)
            if figures.get("unsupported"):
                print(f"--by {','.join(by)}: not supported by this code", file=sys.stderr)
                break
            row = {
                "label": args.label,
                "by": ",".join(by),
                "pairs": size,
                "input_mb": round((pair_path.stat().st_size + score_path.stat().st_size) / 1e6),
                "cpu_s": round(figures["cpu_s"], 2),
                "peak_rss_mb": figures["peak_rss_mb"],
                "measured": datetime.now(UTC).date().isoformat(),
                **({"stages": figures["stages"]} if args.stages else {}),
            }
            print(orjson.dumps(row).decode(), flush=True)
            rows.append(row)
    write_results(rows)


if __name__ == "__main__":
    main()
