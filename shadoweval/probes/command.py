"""``shadoweval probe``: run the probe suites once against the baseline and the candidates.

Pair records (``source: probe``) go to the config's sink (or ``--out``); the verdicts are
computed at once and printed as an attack-success table. Exit status: 0 when every
``--fail-on`` rule holds, 1 when one breaks, 2 on bad configuration or suites.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from shadoweval import loop, sinks
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import FileSink, load
from shadoweval.console import progress
from shadoweval.metrics import Metrics
from shadoweval.probes.results import format_table, gate, parse_rule, summarise, to_json
from shadoweval.probes.runner import ProbeResult, run_once
from shadoweval.probes.suite import build, new_canary


@dataclass
class Options:
    config: str
    suites: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    fail_on: list[str] = field(default_factory=list)
    concurrency: int | None = None
    seed: int | None = None
    variants: bool = True
    out: str | None = None  # a JSONL file instead of the config's sink
    json_out: str | None = None
    quiet: bool = False


def run(opts: Options, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    cfg = load(opts.config)
    missing = list(dict.fromkeys(cfg.missing_credentials() + cfg.probes_missing_credentials()))
    if missing:
        raise ConfigError("cannot probe:\n  " + "\n  ".join(missing))
    try:
        rules = [parse_rule(text) for text in opts.fail_on]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    overrides: dict[str, object] = {}
    if opts.categories:
        overrides["categories"] = opts.categories
    if opts.seed is not None:
        overrides["seed"] = opts.seed
    if not opts.variants:
        overrides["transforms"] = []
    settings = cfg.probes.model_copy(update=overrides)
    canary = settings.canary or new_canary()
    probes = build(settings, opts.suites or None, canary)
    cfg = cfg.model_copy(update={"probes": settings})
    concurrency = opts.concurrency or settings.concurrency

    metrics = Metrics()
    sink = (
        sinks.FileSink(FileSink(path=opts.out), metrics)
        if opts.out
        else sinks.build(cfg.sink, metrics)
    )

    async def main() -> list[ProbeResult]:
        await sink.start()
        try:
            shown = nullcontext(None) if opts.quiet else progress("probed", len(probes), err)
            with shown as report:
                return await run_once(
                    cfg, probes, sink, concurrency=concurrency, metrics=metrics, progress=report
                )
        finally:
            await sink.close(cfg.shutdown.grace_s)

    results = loop.run(main())
    rows = summarise(results, cfg.primary.name)
    failures = gate(rows, rules)
    if not opts.quiet:
        where = opts.out or getattr(cfg.sink, "path", None) or cfg.sink.kind
        upstreams = len(results[0].sides) if results else 0
        print(f"{len(probes)} probes x {upstreams} upstreams; pair records: {where}\n", file=out)
        print(format_table(rows, cfg.primary.name), file=out)
        if rules:
            print("", file=out)
            if failures:
                print("FAILED:", file=out)
                for line in failures:
                    print(f"  {line}", file=out)
            else:
                print(f"passed: {', '.join(str(r) for r in rules)}", file=out)
    if opts.json_out:
        doc = to_json(
            rows,
            results,
            failures,
            rules,
            baseline=cfg.primary.name,
            seed=settings.seed,
            canary=canary,
        )
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        if opts.json_out == "-":
            out.write(data.decode())
        else:
            Path(opts.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(opts.json_out).write_bytes(data)
    return 1 if failures else 0
