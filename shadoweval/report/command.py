"""``shadoweval report``: load, aggregate, render; the exit code is the CI gate."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from shadoweval.archive.layout import has_files, is_archive, readable
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Pricing
from shadoweval.config.report_settings import ReportSettings, load_report_settings
from shadoweval.pricing import PriceTable
from shadoweval.report.aggregate import build_report
from shadoweval.report.load import Dataset, Filters, load, parse_time

# Read when neither --pricing nor a config names a pricing table (relative to the cwd).
DEFAULT_PRICING = Path("config/pricing.yaml")

EXIT_OK, EXIT_GATE = 0, 1


@dataclass
class Options:
    pairs: list[str]
    scores: list[str]
    config: str | None = None
    pricing: str | None = None
    since: str | None = None
    until: str | None = None
    sources: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    json_out: str | None = None
    html_out: str | None = None
    terminal: bool = True
    details: bool = True
    strict: bool = False
    allow_empty: bool = False  # no valid pair record: a report of nothing instead of an error
    by: tuple[str, ...] = ()  # segments: task, route, model, input_tokens_bucket
    detector_accuracy: str | None = None  # measured detector counts: corrected safety rates


def load_pricing(path: Path) -> Pricing:
    """A pricing file: ``models``/``upstreams`` at the top, or under ``pricing:``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read pricing file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pricing file {path} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and "pricing" in raw:
        raw = raw["pricing"]
    try:
        return Pricing.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"pricing file {path}: {exc}") from None


def _settings(opts: Options) -> tuple[ReportSettings, str | None]:
    settings = load_report_settings(opts.config) if opts.config else ReportSettings()
    source = opts.config if opts.config and settings.pricing.models else None
    if opts.pricing:
        settings = settings.model_copy(update={"pricing": load_pricing(Path(opts.pricing))})
        source = opts.pricing
    elif source is None and DEFAULT_PRICING.is_file():
        settings = settings.model_copy(update={"pricing": load_pricing(DEFAULT_PRICING)})
        source = str(DEFAULT_PRICING)
    return settings, source


def _engine() -> str:
    """DuckDB reads the score files when it is installed (the report extra)."""
    return "duckdb" if importlib.util.find_spec("duckdb") is not None else "python"


def make_report(opts: Options) -> dict[str, Any]:
    settings, pricing_source = _settings(opts)
    accuracy = None
    if opts.detector_accuracy:
        from shadoweval.report import corrected

        accuracy = corrected.load_accuracy(opts.detector_accuracy)
    try:
        filters = Filters(
            since=parse_time(opts.since) if opts.since else None,
            until=parse_time(opts.until) if opts.until else None,
            sources=frozenset(opts.sources),
            tasks=frozenset(opts.tasks),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for path in [*opts.pairs, *opts.scores]:
        if not readable(path):
            raise ConfigError(f"report: no such file: {path}")
    scores = opts.scores or [p for p in opts.pairs if is_archive(p) and has_files(p, "scores")]
    ds = load(opts.pairs, scores, filters, settings.report.snippet_chars, engine=_engine())
    _tell_skipped(ds)
    if ds.pairs_read == 0 and not opts.allow_empty:
        files = ", ".join(opts.pairs)
        raise ConfigError(f"report: no valid pair record in {files} (--allow-empty: report it)")
    described = {
        "since": opts.since,
        "until": opts.until,
        "sources": list(opts.sources),
        "tasks": list(opts.tasks),
    }
    if opts.by:
        described["by"] = list(opts.by)
    report = build_report(
        ds,
        settings.report,
        PriceTable(settings.pricing),
        settings.redaction,
        filters=described,
        by=opts.by,
    )
    report["inputs"]["pricing"] = pricing_source
    if accuracy is not None:
        corrected.apply(report, accuracy, settings.report.confidence)
    if not ds.pairs:
        report["notes"].append("no pair records in the input (or none in the window)")
    return report


def _tell_skipped(ds: Dataset) -> None:
    """Damaged lines, on stderr: a report silently built from part of a file misleads."""
    files: dict[str, Counter[str]] = {}
    for (path, reason), n in ds.corrupt.items():
        files.setdefault(path, Counter())[reason] += n
    for path, reasons in files.items():
        detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
        total = sum(reasons.values())
        line = "line" if total == 1 else "lines"
        print(f"shadoweval: report: skipped {total} {line} in {path} ({detail})", file=sys.stderr)


def exit_code(report: dict[str, Any], strict: bool) -> int:
    gate = report["gate"]
    if gate == "fail" or (strict and gate != "pass"):
        return EXIT_GATE
    return EXIT_OK


def run(opts: Options) -> int:
    report = make_report(opts)
    if opts.json_out:
        data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        if opts.json_out == "-":
            sys.stdout.buffer.write(data + b"\n")
            sys.stdout.flush()
        else:
            _write(Path(opts.json_out), data)
    if opts.html_out:
        from shadoweval.report.html import render

        _write(Path(opts.html_out), render(report).encode())
    if opts.terminal and opts.json_out != "-":
        from shadoweval.report.terminal import render as show

        show(report, details=opts.details)
    return exit_code(report, opts.strict)


def _write(path: Path, data: bytes) -> None:
    """Atomic write; a failure is bad input (exit 2), never the gate's exit 1."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise ConfigError(f"report: cannot write {path}: {exc.strerror or exc}{where}") from None
