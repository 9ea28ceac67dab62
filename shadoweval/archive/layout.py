"""Where an archive keeps its files, and records read back from them.

``DIR/pairs/date=YYYY-MM-DD/part-*.parquet`` and ``DIR/scores/date=.../part-*.parquet``:
one row per record, its typed columns for queries and its ``record`` column, the record's
JSON text as received, so a reader gets back exactly the object a JSONL line held.
"""

from __future__ import annotations

import glob
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from shadoweval.config.base import ConfigError
from shadoweval.records import iter_jsonl

Kind = Literal["pairs", "scores"]
KINDS: tuple[Kind, ...] = ("pairs", "scores")
_GLOB_CHARS = frozenset("*?[")
_BATCH = 10_000
# s3://, gs://, https://, file://: object storage (DuckDB's httpfs) or a local URL.
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def is_url(path: str | Path) -> bool:
    return bool(_URL.match(str(path)))


def _dir_form(path: str | Path) -> bool:
    """An archive (or one kind's) directory, not a file or glob: missing files mean none."""
    text = str(path)
    return not text.endswith(".parquet") and not (_GLOB_CHARS & set(text))


def is_archive(path: str | Path) -> bool:
    """An archive directory (or one kind's directory in it), a Parquet file or a glob."""
    text = str(path)
    if text.endswith(".parquet") or is_url(text):
        return True
    if _GLOB_CHARS & set(text):
        return False
    p = Path(text)
    if not p.is_dir():
        return False
    return any((p / kind).is_dir() for kind in KINDS) or any(p.glob("date=*"))


def parquet_glob(path: str | Path, kind: Kind) -> str:
    """The Parquet files of ``kind`` that ``path`` names, as a DuckDB glob. A URL in
    directory form names an archive: ``s3://bucket/archive`` -> ``.../pairs/*/*.parquet``."""
    if is_url(path):
        text = str(path)
        return f"{text.rstrip('/')}/{kind}/*/*.parquet" if _dir_form(text) else text
    p = Path(path)
    if p.is_dir():
        base = p / kind if (p / kind).is_dir() else p
        return str(base / "**" / "*.parquet")
    return str(path)


def has_files(path: str | Path, kind: Kind) -> bool:
    """Whether ``path`` holds files of ``kind``; for a URL, DuckDB will tell when reading."""
    if is_url(path):
        return True
    return bool(glob.glob(parquet_glob(path, kind), recursive=True))


def iter_parquet(path: str | Path, kind: Kind) -> Iterator[dict[str, Any]]:
    """The records of an archive path, pairs in (ts, pair_id) order; none when a directory
    holds no file of this kind (an archive of pairs only has no scores)."""
    import duckdb  # the report extra

    pattern = parquet_glob(path, kind)
    remote = is_url(path)
    if not remote and not has_files(path, kind):
        if Path(path).is_dir():
            return
        raise ConfigError(f"{kind}: no Parquet file matches {path}")
    order = "ORDER BY ts, pair_id" if kind == "pairs" else ""
    con = duckdb.connect(config={"threads": 1})
    try:
        cur = con.execute(
            f"SELECT record FROM read_parquet($g, hive_partitioning = true, "
            f"union_by_name = true) {order}",
            {"g": pattern},
        )
        while batch := cur.fetchmany(_BATCH):
            for (record,) in batch:
                yield orjson.loads(record)
    except duckdb.Error as exc:
        if remote and _dir_form(path) and "No files found" in str(exc):
            return  # an archive URL without this kind
        raise ConfigError(f"{kind}: cannot read {path}: {exc}") from None
    finally:
        con.close()


def read_records(
    paths: Iterable[str | Path],
    kind: Kind,
    skipped: Counter[str],
    read: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records from JSONL files and archive paths alike (the readers' one entry point);
    ``read`` is told the bytes of each JSONL line read (progress)."""
    for path in paths:
        if is_archive(path):
            yield from iter_parquet(path, kind)
        else:
            yield from iter_jsonl([path], skipped, read)


def readable(path: str | Path) -> bool:
    """A JSONL file, an archive directory, or a Parquet file or glob that matches."""
    if Path(path).is_file() or is_url(path):
        return True
    if is_archive(path) and Path(path).is_dir():
        return True
    return str(path).endswith(".parquet") and bool(glob.glob(str(path), recursive=True))
