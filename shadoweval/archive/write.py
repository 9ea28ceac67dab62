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


_SIDE = [
    ("upstream", "VARCHAR"), ("role", "VARCHAR"), ("model", "VARCHAR"),
    ("error_type", "VARCHAR"), ("latency_s", "DOUBLE"), ("ttft_s", "DOUBLE"),
    ("attempts", "BIGINT"), ("cost_usd", "DOUBLE"),
    ("usage.input_tokens", "BIGINT"), ("usage.output_tokens", "BIGINT"),
]  # fmt: skip


def _side(side: str, prefix: str) -> list[tuple[str, str, str]]:
    return [(prefix + path.removeprefix("usage."), f"{side}.{path}", t) for path, t in _SIDE]


# Typed columns (for queries) beside the record's own text (for readers): (column, JSON
# path, type). The ClickHouse tables of deploy/clickhouse have the same columns.
COLUMNS: dict[Kind, list[tuple[str, str, str]]] = {
    "pairs": [
        *[(k, k, "VARCHAR") for k in ("pair_id", "request_id", "source", "route", "task")],
        *_side("primary", "primary_"),
        *_side("candidate", ""),
    ],
    "scores": [
        *[
            (k, k, "VARCHAR")
            for k in ("pair_id", "request_id", "source", "task", "upstream", "role", "scorer")
        ],
        ("side", "side", "VARCHAR"),
        ("value", "value", "DOUBLE"),
        ("label", "label", "VARCHAR"),
    ],
}


def _select(kind: Kind) -> str:
    """The typed columns from one parse of each record: an expression per column would
    parse the JSON once per column, and DuckDB's per-expression parse buffers would
    outgrow a small memory limit."""
    cols = COLUMNS[kind]
    paths = ", ".join(f"'$.{path}'" for _, path, _ in cols)
    exprs = [
        f"v[{i}] AS {name}" if t == "VARCHAR" else f"TRY_CAST(v[{i}] AS {t}) AS {name}"
        for i, (name, _, t) in enumerate(cols, 1)
    ]
    return (
        f"SELECT CAST(ts AS DATE) AS date, ts, {', '.join(exprs)}, record, 1 AS gen, file_no, "
        f"seq FROM (SELECT *, CAST(json AS VARCHAR) AS record, json_extract_string(json, "
        f"[{paths}]) AS v FROM raw WHERE ours AND ts IS NOT NULL)"
    )


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
    """A DuckDB database file under ``out/.tmp`` (removed by the command), so the staged
    records live on disk and only DuckDB's buffers, capped at ``memory_limit``, in memory."""
    import duckdb

    tmp = out / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        str(tmp / "work.duckdb"),
        config={
            "memory_limit": memory_limit,
            "temp_directory": str(tmp),
            "preserve_insertion_order": False,
            "threads": 2,
        },
    )
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
    con.execute("DROP TABLE IF EXISTS raw")
    for n, path in enumerate(files):
        params = {"file": n, "schema": SCHEMAS[kind], "path": path}
        into = "CREATE TABLE raw AS" if n == 0 else "INSERT INTO raw"
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
    con.execute(f"CREATE TABLE incoming AS {_select(kind)}")
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
    if existing:
        files_sql = "[" + ", ".join(_literal(f) for f in existing) + "]"
        result.before = int(
            con.execute(f"SELECT count(*) FROM read_parquet({files_sql})").fetchone()[0]
        )
        con.execute(
            "INSERT INTO incoming BY NAME SELECT *, 0 AS gen, 0 AS file_no, 0 AS seq "
            f"FROM read_parquet({files_sql}, hive_partitioning = true)"
        )
    # The winner of each key chosen on narrow columns, then the wide rows copied once.
    con.execute("DROP TABLE IF EXISTS winners")
    con.execute(
        "CREATE TABLE winners AS SELECT max_by(rowid, (gen, file_no, seq)) AS rid "
        f"FROM incoming GROUP BY {KEYS[kind]}"
    )
    result.written = int(con.execute("SELECT count(*) FROM winners").fetchone()[0])
    staging = out / f".staging-{uuid.uuid4().hex}"
    # One plain COPY per date (the Hive layout written by hand): DuckDB's PARTITION_BY
    # writer buffers a partition in memory and outgrew a 256 MB limit with 2.7M score
    # records; a plain COPY streams. Winners by SEMI JOIN: the mark join of `IN (...)`
    # does not spill.
    for d in dates:
        part = staging / f"date={d}"
        part.mkdir(parents=True)
        con.execute(
            "COPY (SELECT i.* EXCLUDE (gen, file_no, seq, rid, date) FROM (SELECT rowid AS "
            f"rid, * FROM incoming WHERE date = DATE {_literal(d)}) AS i SEMI JOIN winners "
            f"AS w ON i.rid = w.rid) TO {_literal(str(part / f'part-{uuid.uuid4()}.parquet'))} "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384)"
        )
    con.execute("DROP TABLE incoming")
    con.execute("DROP TABLE winners")
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
