"""The statistical validation suite: one command regenerates every table of docs/report.md's
"Validity" section.

    .venv/bin/python benchmarks/validity/run.py            # full (a few minutes per module)
    .venv/bin/python benchmarks/validity/run.py --quick    # smoke run, same tables, fewer runs
    .venv/bin/python benchmarks/validity/run.py --only verdict,alarm
    .venv/bin/python benchmarks/validity/run.py --jobs 2     # parts in parallel processes
    .venv/bin/python benchmarks/validity/run.py --docs       # docs/report.md from the results

Every module in this folder with a ``run(quick: bool) -> list[Table]`` function is a part;
a table is ``{"name", "target", "columns", "rows"}``. Results go to
``benchmarks/results/validity.json`` and ``validity.md`` (quick runs to ``validity-quick.*``);
a full run also rewrites the tables between the ``validity:start``/``validity:end`` markers
of docs/report.md, so the docs quote what was measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
DOCS = HERE.parent.parent / "docs" / "report.md"
START, END = "<!-- validity:start -->", "<!-- validity:end -->"


def parts() -> list[str]:
    """The modules of this folder that define ``run`` (world.py is the shared simulator)."""
    sys.path.insert(0, str(HERE.parent.parent))
    names = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name != "run")
    return [n for n in names if hasattr(importlib.import_module(f"benchmarks.validity.{n}"), "run")]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(results: dict[str, Any], level: int = 1) -> str:
    head = "#" * level
    lines = [f"{head} Validity ({'quick' if results['quick'] else 'full'} run)", ""]
    for part, tables in results["parts"].items():
        for t in tables:
            lines += [f"{head}# {part}: {t['name']}", "", f"Target: {t['target']}", ""]
            lines.append("| " + " | ".join(t["columns"]) + " |")
            lines.append("|" + "---|" * len(t["columns"]))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t["rows"]]
            lines.append("")
    return "\n".join(lines)


def _run_part(part: str, quick: bool) -> tuple[list[dict[str, Any]], float]:
    sys.path.insert(0, str(HERE.parent.parent))
    module = importlib.import_module(f"benchmarks.validity.{part}")
    start = time.perf_counter()
    tables = module.run(quick)
    return tables, round(time.perf_counter() - start, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer simulated runs (a smoke test)")
    ap.add_argument("--only", default="", help="comma-separated parts, e.g. verdict,alarm")
    ap.add_argument("--jobs", type=int, default=1, help="parts run in this many processes")
    ap.add_argument(
        "--docs", action="store_true", help="only rewrite docs/report.md's tables from the results"
    )
    args = ap.parse_args(argv)
    if args.docs:
        _update_docs(json.loads((RESULTS / "validity.json").read_text()))
        return 0
    sys.path.insert(0, str(HERE.parent.parent))
    wanted = [p for p in args.only.split(",") if p] or parts()
    unknown = sorted(set(wanted) - set(parts()))
    if unknown:
        print(f"unknown part(s): {', '.join(unknown)} (have: {', '.join(parts())})")
        return 2
    name = "validity-quick" if args.quick else "validity"
    out_json = RESULTS / f"{name}.json"
    results: dict[str, Any] = {"quick": args.quick, "parts": {}, "seconds": {}}
    if args.only and out_json.exists():  # --only refreshes those parts, keeps the others
        previous = json.loads(out_json.read_text())
        results["parts"].update(previous.get("parts", {}))
        results["seconds"].update(previous.get("seconds", {}))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(_run_part, part, args.quick): part for part in wanted}
        for future in as_completed(futures):
            part = futures[future]
            tables, seconds = future.result()
            results["parts"][part] = tables
            results["seconds"][part] = seconds
            print(f"{part}: {seconds} s", flush=True)
            RESULTS.mkdir(exist_ok=True)
            out_json.write_text(json.dumps(results, indent=1) + "\n")  # kept part by part
    results["parts"] = dict(sorted(results["parts"].items()))
    RESULTS.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(results) + "\n")
    print(f"wrote {out_json} and {name}.md")
    if not args.quick:
        _update_docs(results)
    return 0


def _update_docs(results: dict[str, Any]) -> None:
    text = DOCS.read_text()
    if START not in text or END not in text:
        return
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    body = markdown(results, level=3).split("\n", 2)[2]  # without its own title
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items())
    stamp = f"_Regenerated by `benchmarks/validity/run.py` ({seconds})._\n\n"
    DOCS.write_text(before + START + "\n" + stamp + body.rstrip() + "\n" + END + after)
    print(f"updated the tables in {DOCS}")


if __name__ == "__main__":
    raise SystemExit(main())
