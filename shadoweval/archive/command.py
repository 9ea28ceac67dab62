"""``shadoweval archive``: JSONL files or a Kafka time window into the Parquet archive."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from shadoweval import loop
from shadoweval.archive.kafka import ArchiveKafka
from shadoweval.archive.layout import KINDS, Kind
from shadoweval.archive.write import Result, archive, connect
from shadoweval.config.base import ConfigError


@dataclass
class Options:
    out: str
    pairs: list[str]
    scores: list[str]
    kafka_config: str | None = None  # YAML with ArchiveKafka's keys: read a window
    bootstrap: str | None = None
    start: str | None = None  # --from
    end: str | None = None  # --to
    memory_limit: str = "1GB"
    quiet: bool = False


Say = Callable[[str], None]


def _say(opts: Options) -> Say:
    def say(line: str) -> None:
        if not opts.quiet:
            print(f"archive: {line}", file=sys.stderr, flush=True)

    return say


def load_kafka(opts: Options) -> ArchiveKafka:
    raw: object = {}
    if opts.kafka_config:
        path = Path(opts.kafka_config)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"archive: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"archive: {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"archive: {path}: expected a mapping of kafka settings")
        raw = raw.get("kafka", raw)
    if opts.bootstrap:
        raw = {**(raw if isinstance(raw, dict) else {}), "bootstrap_servers": opts.bootstrap}
    try:
        return ArchiveKafka.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "kafka"
        raise ConfigError(f"archive: kafka.{key}: {err['msg']}") from None


def run(opts: Options) -> int:
    say = _say(opts)
    out = Path(opts.out)
    for path in [*opts.pairs, *opts.scores]:
        if not Path(path).is_file():
            raise ConfigError(f"archive: no such file: {path}")
    kafka = opts.kafka_config is not None or opts.bootstrap is not None
    if not kafka and not (opts.pairs or opts.scores):
        raise ConfigError("archive: give --pairs/--scores files, or --kafka-config/--bootstrap")
    if kafka and not opts.start:
        raise ConfigError("archive: --from is required with Kafka (the window's start)")
    if not kafka and (opts.start or opts.end):
        raise ConfigError("archive: --from/--to select a Kafka window; files are archived whole")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"archive: cannot create {out}: {exc.strerror}") from None
    with _lock(out):
        return _run(opts, out, kafka, say)


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One writer per archive: a second would rewrite the same partitions from a stale read."""
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"archive: another archive command is writing {out}") from None
        yield


def _run(opts: Options, out: Path, kafka: bool, say: Say) -> int:
    from shadoweval.report.load import parse_time

    inputs: dict[Kind, list[str]] = {"pairs": list(opts.pairs), "scores": list(opts.scores)}
    spool_dir = out / ".spool"
    skipped: Counter[str] = Counter()
    try:
        if kafka:
            try:
                start_ms = int(parse_time(opts.start or "") * 1000)
                end_ms = int(parse_time(opts.end) * 1000) if opts.end else None
            except ValueError as exc:
                raise ConfigError(f"archive: --from/--to: {exc}") from None
            if end_ms is not None and end_ms <= start_ms:
                raise ConfigError("archive: --to must be after --from")
            inputs = _from_kafka(opts, start_ms, end_ms, spool_dir, skipped, say)
        import duckdb

        con = connect(out, opts.memory_limit)
        try:
            for kind in KINDS:
                try:
                    result = archive(con, out, kind, inputs[kind], say)
                except duckdb.OutOfMemoryException:
                    raise ConfigError(
                        f"archive: {kind}: DuckDB ran out of memory within --memory-limit "
                        f"{opts.memory_limit}: raise it"
                    ) from None
                except duckdb.Error as exc:
                    first = str(exc).splitlines()[0]
                    raise ConfigError(f"archive: {kind}: {first}") from None
                if inputs[kind]:
                    _tell(kind, result, say)
        finally:
            con.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
        shutil.rmtree(out / ".tmp", ignore_errors=True)
    for reason, n in sorted(skipped.items()):
        say(f"skipped {n}: {reason}")
    return 0


def _from_kafka(
    opts: Options,
    start_ms: int,
    end_ms: int | None,
    spool_dir: Path,
    skipped: Counter[str],
    say: Say,
) -> dict[Kind, list[str]]:
    from shadoweval.archive.kafka import read_window, spool

    cfg = load_kafka(opts)
    inputs: dict[Kind, list[str]] = {"pairs": [], "scores": []}
    topics: list[tuple[Kind, str | None]] = [
        ("pairs", cfg.pairs_topic),
        ("scores", cfg.scores_topic),
    ]
    for kind, topic in topics:
        if topic is None:
            continue
        path = spool(spool_dir, topic)
        with open(path, "wb") as fh:
            loop.run(read_window(cfg, topic, start_ms, end_ms, fh, skipped, say))
        inputs[kind].append(str(path))
    return inputs


def _tell(kind: str, result: Result, say: Say) -> None:
    for reason, n in sorted(result.skipped.items()):
        say(f"{kind}: skipped {n}: {reason}")
    dates = f"{result.dates[0]}..{result.dates[-1]}" if result.dates else "none"
    say(
        f"{kind}: {result.read} records read; {len(result.dates)} date partitions "
        f"rewritten ({dates}): {result.before} rows before, {result.written} after "
        f"({result.added} new)"
    )
