"""Merge pair or score records (JSONL files) into an archive's date partitions with DuckDB.

Idempotent by partition rewrite: each date the new records touch is rewritten as the union
of what it held and the new records, one row per key (pairs: ``pair_id``; scores:
``(pair_id, scorer, side)``, the report's key), the later record winning, as a re-score
replaces in the report. Re-archiving a window therefore changes nothing; dates the new
records do not touch are not read or written. DuckDB spills to ``DIR/.tmp`` past its
memory limit, so the input need not fit in memory.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shadoweval.archive.layout import Kind

PAIR_SCHEMA = "shadoweval.pair.v1"
SCORE_SCHEMA = "shadoweval.score.v1"
SCHEMAS: dict[Kind, str] = {"pairs": PAIR_SCHEMA, "scores": SCORE_SCHEMA}
KEYS: dict[Kind, str] = {"pairs": "pair_id", "scores": "pair_id, scorer, side"}


def _s(path: str) -> str:
    return f"json ->> '$.{path}'"


def _d(path: str) -> str:
    return f"TRY_CAST(json ->> '$.{path}' AS DOUBLE)"


def _i(path: str) -> str:
    return f"TRY_CAST(json ->> '$.{path}' AS BIGINT)"


_SIDE = {
    "upstream": _s, "role": _s, "model": _s, "error_type": _s, "latency_s": _d,
    "ttft_s": _d, "attempts": _i, "cost_usd": _d,
    "usage.input_tokens": _i, "usage.output_tokens": _i,
}  # fmt: skip


def _side_columns(side: str, prefix: str) -> list[str]:
    return [
        f"{fn(f'{side}.{name}')} AS {prefix}{name.removeprefix('usage.')}"
        for name, fn in _SIDE.items()
    ]


# Typed columns (for queries) beside the record's own text (for readers). One list per
# kind: the ClickHouse tables of deploy/clickhouse have the same columns.
COLUMNS: dict[Kind, list[str]] = {
    "pairs": [
        f"{_s('pair_id')} AS pair_id",
        f"{_s('request_id')} AS request_id",
        f"{_s('source')} AS source",
        f"{_s('route')} AS route",
        f"{_s('task')} AS task",
        *_side_columns("primary", "primary_"),
        *_side_columns("candidate", ""),
    ],
    "scores": [
        f"{_s('pair_id')} AS pair_id",
        f"{_s('request_id')} AS request_id",
        f"{_s('source')} AS source",
        f"{_s('task')} AS task",
        f"{_s('upstream')} AS upstream",
        f"{_s('role')} AS role",
        f"{_s('scorer')} AS scorer",
        f"{_s('side')} AS side",
        f"{_d('value')} AS value",
        f"{_s('label')} AS label",
    ],
}

_READ = """
SELECT
    $file AS file_no, ordinality AS seq, json IS NULL OR json_type(json) <> 'OBJECT' AS bad,
    coalesce(json ->> '$.schema' = $schema, false) AS ours,
    TRY_CAST(json ->> '$.ts' AS TIMESTAMPTZ) AS ts, json
FROM read_json_objects($path, format = 'newline_delimited', ignore_errors = true)
    WITH ORDINALITY
"""


@dataclass
class Result:
    read: int = 0  # records of this kind read from the input
    written: int = 0  # rows in the rewritten partitions
    before: int = 0  # rows those partitions held before
    dates: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def added(self) -> int:
        return self.written - self.before


def connect(out: Path, memory_limit: str) -> Any:
    import duckdb

    tmp = out / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(tmp)})
    con.execute("SET TimeZone = 'UTC'")
    return con


def archive(
    con: Any,
    out: Path,
    kind: Kind,
    files: Sequence[str],
    progress: Callable[[str], None] = lambda line: None,
) -> Result:
    """Merge the records of ``files`` (JSONL, in order) into ``out/kind``."""
    result = Result()
    if not files:
        return result
    cols = ", ".join(COLUMNS[kind])
    con.execute("DROP TABLE IF EXISTS raw")
    for n, path in enumerate(files):
        params = {"file": n, "schema": SCHEMAS[kind], "path": path}
        into = "CREATE TEMP TABLE raw AS" if n == 0 else "INSERT INTO raw"
        con.execute(f"{into} {_READ}", params)
        progress(f"{kind}: read {path}")
    counts = con.execute(
        "SELECT count(*) FILTER (WHERE bad), count(*) FILTER (WHERE NOT bad AND NOT ours), "
        "count(*) FILTER (WHERE ours AND ts IS NULL), count(*) FILTER (WHERE ours AND ts "
        "IS NOT NULL) FROM raw"
    ).fetchone()
    bad, foreign, no_ts, good = counts
    for reason, count in (
        ("invalid JSON line or not an object", bad),
        (f"not a {SCHEMAS[kind]} record", foreign),
        ("record without a valid ts", no_ts),
    ):
        if count:
            result.skipped[reason] = int(count)
    con.execute("DROP TABLE IF EXISTS incoming")
    con.execute(
        f"CREATE TEMP TABLE incoming AS SELECT CAST(ts AS DATE) AS date, ts, {cols}, "
        "CAST(json AS VARCHAR) AS record, 1 AS gen, file_no, seq "
        "FROM raw WHERE ours AND ts IS NOT NULL"
    )
    con.execute("DROP TABLE raw")
    result.read = int(good)
    dates = [
        str(d) for (d,) in con.execute("SELECT DISTINCT date FROM incoming ORDER BY 1").fetchall()
    ]
    result.dates = dates
    if not dates:
        return result
    target = out / kind
    existing = [str(f) for d in dates for f in sorted((target / f"date={d}").glob("*.parquet"))]
    source = "SELECT * FROM incoming"
    if existing:
        files_sql = "[" + ", ".join(_literal(f) for f in existing) + "]"
        result.before = int(
            con.execute(f"SELECT count(*) FROM read_parquet({files_sql})").fetchone()[0]
        )
        source += (
            " UNION ALL BY NAME SELECT *, 0 AS gen, 0 AS file_no, 0 AS seq "
            f"FROM read_parquet({files_sql}, hive_partitioning = true)"
        )
    staging = out / f".staging-{uuid.uuid4().hex}"
    merged = (
        f"SELECT * EXCLUDE (gen, file_no, seq) FROM ({source}) QUALIFY row_number() OVER "
        f"(PARTITION BY {KEYS[kind]} ORDER BY gen DESC, file_no DESC, seq DESC) = 1 "
        "ORDER BY ts, pair_id"
    )
    result.written = int(con.execute(f"SELECT count(*) FROM ({merged})").fetchone()[0])
    con.execute(
        f"COPY ({merged}) TO {_literal(str(staging))} (FORMAT parquet, COMPRESSION zstd, "
        "PARTITION_BY (date), FILENAME_PATTERN 'part-{uuid}')"
    )
    con.execute("DROP TABLE incoming")
    _swap(staging, target, dates)
    return result


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _swap(staging: Path, target: Path, dates: Sequence[str]) -> None:
    """Each rewritten date directory replaces the old one by rename: a reader sees the old
    partition or the new one, never both. A crash between the two renames leaves the old
    one under ``DIR/.trash-*``."""
    target.mkdir(parents=True, exist_ok=True)
    trash = target.parent / f".trash-{uuid.uuid4().hex}"
    for d in dates:
        new, old = staging / f"date={d}", target / f"date={d}"
        if old.exists():
            trash.mkdir(exist_ok=True)
            old.rename(trash / old.name)
        new.rename(old)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
