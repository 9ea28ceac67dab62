"""Read pair and score records (JSONL) into compact rows for the report.

Only what the report needs is kept: numbers, ids and short text snippets (for the worst
examples), so a large pairs file does not have to fit in memory as full records. A pair
that appears twice (re-delivery) is kept once; of several scores with the same score_id
the last one read wins (a re-score replaces).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from shadoweval.archive.layout import Kind, is_archive, iter_parquet
from shadoweval.records import iter_jsonl
from shadoweval.report.pairs import PairStore, StoreBuilder, Strings
from shadoweval.report.rows import (
    PairRow,
    as_float,
    headers_of,
    prompt_text,
    side_text,
    side_values,
    snippet,
)
from shadoweval.score.registry import ScorerInfo, info_of

PAIR_SCHEMA = "shadoweval.pair.v1"
SCORE_SCHEMA = "shadoweval.score.v1"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(slots=True)
class ScoreRow:
    value: float | None
    label: str | None
    explanation: str


ScoreKey = tuple[str, str, str]  # (pair_id, scorer, side)


_INT16_MAX = int(np.iinfo(np.int16).max)


class ScoreTable(MutableMapping[ScoreKey, ScoreRow]):
    """Scores by (pair_id, scorer, side), held as one code array per (scorer, side) over
    the pairs, and one ScoreRow per distinct (value, label, explanation): millions of
    score records cost a few bytes each instead of a dict entry, a tuple and an object."""

    def __init__(self, pair_ids: Sequence[str]) -> None:
        # The list itself when given one (a PairStore's: the report then reads positions
        # as the store's own, see aggregate._Ctx.positions).
        self.ids = pair_ids if isinstance(pair_ids, list | Strings) else list(pair_ids)
        self._by_id: dict[str, int] | None = None
        # Two bytes a score while the distinct rows fit (nine kinds of 3M pairs: 54 MB
        # instead of 108), widened to four when one more would not.
        self._codes: dict[tuple[str, str], NDArray[np.signedinteger[Any]]] = {}
        self._rows: list[ScoreRow] = []
        self._row_codes: dict[tuple[float | None, str | None, str], int] = {}
        self._len = 0
        # Each row's value (label mapping -> array over the rows), rebuilt after a change.
        self._tables: dict[tuple[tuple[str, float], ...], NDArray[np.float64]] = {}

    def _pos(self) -> dict[str, int]:
        """pair_id -> position, made when first asked (the report reads by position)."""
        if self._by_id is None:
            self._by_id = {p: i for i, p in enumerate(self.ids)}
        return self._by_id

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._codes)

    def get(self, key: ScoreKey, default: Any = None) -> Any:
        pos = self._pos().get(key[0])
        codes = self._codes.get((key[1], key[2]))
        if pos is None or codes is None:
            return default
        code = int(codes[pos])
        return self._rows[code] if code >= 0 else default

    def __getitem__(self, key: ScoreKey) -> ScoreRow:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row  # type: ignore[no-any-return]

    def __setitem__(self, key: ScoreKey, row: ScoreRow) -> None:
        pos = self._pos()[key[0]]  # only scores of pairs in the report are kept
        ident = (row.value, row.label, row.explanation)
        code = self._row_codes.get(ident)
        if code is None:
            code = self._row_codes[ident] = len(self._rows)
            self._rows.append(row)
            self._tables.clear()
        codes = self._kind(key[1], key[2], code)
        if codes[pos] < 0:
            self._len += 1
        codes[pos] = code

    def row_at(self, pos: int, scorer: str, side: str) -> ScoreRow | None:
        """The score of the pair at this position (the order the table was made with)."""
        codes = self._codes.get((scorer, side))
        if codes is None:
            return None
        code = int(codes[pos])
        return self._rows[code] if code >= 0 else None

    def positions(self, pair_ids: Sequence[str]) -> NDArray[np.intp]:
        return np.fromiter((self._pos()[p] for p in pair_ids), np.intp, len(pair_ids))

    def values_at(
        self,
        scorer: str,
        side: str,
        positions: NDArray[np.intp],
        labels: Mapping[str, float] | None = None,
    ) -> NDArray[np.float64]:
        """The values at these positions, NaN where there is none; ``labels``: the value of
        a score that has only a label (a pairwise judge's win/tie/loss)."""
        codes = self._codes.get((scorer, side))
        if codes is None:  # one NaN seen as many (read only): kinds not scored cost nothing
            return np.broadcast_to(np.float64(np.nan), (len(positions),))
        key = tuple(sorted(labels.items())) if labels else ()
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self._value_table(labels)
        got: NDArray[np.float64] = table[codes[positions]]
        return got

    def label_index(
        self, scorer: str, side: str, positions: NDArray[np.intp], labels: Sequence[str]
    ) -> NDArray[np.intp]:
        """Each position's label as its index in ``labels``; -1: no score, or another label."""
        codes = self._codes.get((scorer, side))
        if codes is None:
            return np.full(len(positions), -1, np.intp)
        index = {label: i for i, label in enumerate(labels)}
        by_row = np.array(
            [index.get(r.label, -1) if r.label is not None else -1 for r in self._rows] + [-1],
            dtype=np.intp,
        )
        index_of: NDArray[np.intp] = by_row[codes[positions]]
        return index_of

    def _value_table(self, labels: Mapping[str, float] | None) -> NDArray[np.float64]:
        return np.array(
            [
                r.value
                if r.value is not None
                else (labels.get(r.label, np.nan) if labels and r.label else np.nan)
                for r in self._rows
            ]
            + [np.nan],  # code -1: no score
            dtype=np.float64,
        )

    def assign(
        self,
        scorer: str,
        side: str,
        positions: NDArray[np.int32],
        codes: NDArray[np.int32],
        rows: Sequence[ScoreRow],
    ) -> None:
        """Many scores of one (scorer, side) at once: ``rows[codes[i]]`` is the score of the
        pair at ``positions[i]`` (in the order the table was made with); replaces."""
        mapped = np.empty(len(rows), np.int32)
        for i, row in enumerate(rows):
            ident = (row.value, row.label, row.explanation)
            code = self._row_codes.get(ident)
            if code is None:
                code = self._row_codes[ident] = len(self._rows)
                self._rows.append(row)
                self._tables.clear()
            mapped[i] = code
        table = self._kind(scorer, side, int(mapped.max(initial=-1)))
        self._len += int(np.count_nonzero(table[positions] < 0))
        table[positions] = mapped[codes]

    def _kind(self, scorer: str, side: str, code: int) -> NDArray[np.signedinteger[Any]]:
        """The codes of a (scorer, side), made or widened so that ``code`` fits."""
        codes = self._codes.get((scorer, side))
        if codes is None:
            codes = self._codes[(scorer, side)] = np.full(len(self.ids), -1, np.int16)
        if code > _INT16_MAX and codes.dtype == np.int16:
            codes = self._codes[(scorer, side)] = codes.astype(np.int32)
        return codes

    def __delitem__(self, key: ScoreKey) -> None:
        self[key]  # KeyError when absent
        self._codes[(key[1], key[2])][self._pos()[key[0]]] = -1
        self._len -= 1

    def __iter__(self) -> Iterator[ScoreKey]:
        for (scorer, side), codes in self._codes.items():
            for pos in np.flatnonzero(codes >= 0):
                yield (self.ids[int(pos)], scorer, side)

    def __len__(self) -> int:
        return self._len


def score_kinds(scores: Mapping[ScoreKey, ScoreRow]) -> set[tuple[str, str]]:
    """The (scorer, side) combinations that have scores."""
    if isinstance(scores, ScoreTable):
        return scores.kinds()
    return {(scorer, side) for (_, scorer, side) in scores}


@dataclass
class Dataset:
    # A PairStore when loaded (columns); simulations and tests may give rows.
    pairs: Sequence[PairRow] = field(default_factory=list)
    # (pair_id, scorer, side) -> score: a dict, or a ScoreTable (engine="duckdb")
    scores: MutableMapping[ScoreKey, ScoreRow] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    # scorer -> what it is, from its score records (else the registry, else the default)
    scorer_info: dict[str, ScorerInfo] = field(default_factory=dict)
    pair_files: list[str] = field(default_factory=list)
    score_files: list[str] = field(default_factory=list)
    # (file, reason) -> lines that are not a valid record (also counted in ``skipped``), so
    # the command can say which file is damaged; and the pair records read before filters.
    corrupt: Counter[tuple[str, str]] = field(default_factory=Counter)
    pairs_read: int = 0


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    sources: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()

    def keep(self, ts: float, source: str, task: str | None) -> bool:
        if self.since is not None and ts < self.since:
            return False
        if self.until is not None and ts >= self.until:
            return False
        if self.sources and source not in self.sources:
            return False
        return not (self.tasks and (task or "") not in self.tasks)


def parse_time(value: str, now: datetime | None = None) -> float:
    """An ISO 8601 time, or a duration back from now: ``30m``, ``24h``, ``7d``."""
    match = _DURATION.match(value.strip())
    if match:
        ago = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        return ((now or datetime.now(UTC)) - ago).timestamp()
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO 8601 time nor a duration like 24h") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _records(
    ds: Dataset, paths: list[str], kind: Kind = "pairs"
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Each file's JSON objects with its name and the line's byte offset (-1: not a JSONL
    file); its unreadable lines counted as corrupt."""
    for path in paths:
        if is_archive(path):  # Parquet (shadoweval archive): the records as written
            yield from ((path, -1, rec) for rec in iter_parquet(path, kind))
            continue
        bad: Counter[str] = Counter()
        at = [0, 0]  # the current line's offset, the next line's

        def read(size: int, at: list[int] = at) -> None:
            at[0] = at[1]
            at[1] += size

        for rec in iter_jsonl([path], bad, read):
            yield path, at[0], rec
        for reason, n in bad.items():
            ds.corrupt[path, reason] += n
        ds.skipped.update(bad)


def _corrupt(ds: Dataset, path: str, reason: str) -> None:
    ds.skipped[reason] += 1
    ds.corrupt[path, reason] += 1


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Millions of new records (none in a cycle) would run the cyclic collector over the
    whole growing heap again and again: ~20% of reading a pairs file."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_pairs(ds: Dataset, filters: Filters, snippet_chars: int) -> PairStore:
    store = StoreBuilder(snippet_chars)
    files: dict[str, int] = {}
    for path, offset, rec in _records(ds, ds.pair_files):
        if rec.get("schema") != PAIR_SCHEMA:
            _corrupt(ds, path, "pairs file: not a shadoweval.pair.v1 record")
            continue
        if rec.get("stateful") is True:
            ds.skipped["stateful request: the candidate lacked the primary's stored state"] += 1
            continue
        try:
            ts = datetime.fromisoformat(str(rec["ts"])).timestamp()
            probe = rec.get("probe") if isinstance(rec.get("probe"), dict) else None
            cluster = rec.get("sampling_key")
            if probe is not None and isinstance(probe.get("base_id"), str):
                cluster = "probe:" + probe["base_id"]
            raw = rec["primary"]
            # A request's pairs repeat its primary side, usually adjacent: equal JSON (orjson
            # tells 1 from 1.0 and true, unlike ==) is the same row, kept once.
            key = orjson.dumps(raw) if type(raw) is dict else None
            primary = store.primary(key, functools.partial(side_values, raw))
            cand = rec["candidate"]
            candidate = side_values(cand)
            pair_id, request_id = str(rec["pair_id"]), str(rec["request_id"])
            source = str(rec.get("source") or "traffic")
            route = str(rec.get("route") or "")
            task = rec.get("task")
            task = task if type(task) is str else None
            headers = headers_of(rec.get("headers"))
            where: tuple[int, int] | tuple[str, str, str]
            if offset >= 0:  # texts read again from the file for the examples shown
                where = (
                    files[path] if path in files else files.setdefault(path, store.file(path)),
                    offset,
                )
            else:
                where = (
                    snippet(prompt_text(rec.get("request")), snippet_chars),
                    side_text(raw, snippet_chars),
                    side_text(cand, snippet_chars),
                )
        except (KeyError, TypeError, ValueError):
            _corrupt(ds, path, "malformed pair record")
            continue
        ds.pairs_read += 1
        if not filters.keep(ts, source, task):
            ds.skipped["pair outside the window or filters"] += 1
            continue
        store.add(
            pair_id=pair_id,
            request_id=request_id,
            ts=ts,
            source=source,
            route=route,
            task=task,
            primary=primary,
            candidate=candidate,
            cluster=cluster if isinstance(cluster, str) and cluster else None,
            probe=probe,
            headers=headers,
            where=where,
        )
    built = store.build()
    if store.duplicates:
        ds.skipped["duplicate pair (re-delivery)"] += store.duplicates
    return built


def load(
    pair_paths: Iterable[str | Path],
    score_paths: Iterable[str | Path] = (),
    filters: Filters | None = None,
    snippet_chars: int = 160,
    engine: str = "python",
) -> Dataset:
    """``engine="duckdb"`` reads the score files (nine records in ten) with DuckDB; the
    result is the same Dataset (see _load_scores_duckdb for the one difference)."""
    filters = filters or Filters()
    ds = Dataset(pair_files=[str(p) for p in pair_paths], score_files=[str(p) for p in score_paths])
    with _no_cyclic_gc():
        store = _read_pairs(ds, filters, snippet_chars)
    trim_heap()
    ds.pairs = store
    if engine == "duckdb":
        ds.scores = ScoreTable(store.pair_ids)
    by_id: set[str] | None = None  # only the Python reader asks
    for path in ds.score_files:  # in order: a later file's re-score replaces
        if not _duck(engine, path) or not _load_scores_duckdb(ds, path, snippet_chars):
            by_id = set(store.pair_ids) if by_id is None else by_id
            _load_scores_python(ds, path, by_id, snippet_chars)
    trim_heap()
    return ds


def trim_heap() -> None:
    """Hand the heap that reading freed back to the system: glibc keeps freed blocks of
    up to 32 MB (the arrays grown while reading) in the process, where DuckDB's own
    allocator cannot use them (~300 MB at 3M pairs)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _duck(engine: str, path: str) -> bool:
    return engine == "duckdb" and not is_archive(path)


def _load_scores_python(ds: Dataset, path: str, by_id: set[str], snippet_chars: int) -> None:
    for _, _, rec in _records(ds, [path], "scores"):
        if rec.get("schema") != SCORE_SCHEMA:
            _corrupt(ds, path, "scores file: not a shadoweval.score.v1 record")
            continue
        pair_id = rec.get("pair_id")
        scorer = rec.get("scorer")
        side = rec.get("side")
        if not (isinstance(pair_id, str) and isinstance(scorer, str) and isinstance(side, str)):
            _corrupt(ds, path, "malformed score record")
            continue
        if pair_id not in by_id:
            ds.skipped["score of a pair not in the report"] += 1
            continue
        value = as_float(rec.get("value"))
        if value is not None and not 0.0 <= value <= 1.0:
            ds.skipped["score value outside [0, 1]"] += 1
            continue
        if scorer not in ds.scorer_info or "scorer_info" in rec:
            declared = rec.get("scorer_info")
            ds.scorer_info[scorer] = (
                ScorerInfo.from_dict(declared) if declared is not None else info_of(scorer)
            )
        label = rec.get("label")
        ds.scores[(pair_id, scorer, side)] = ScoreRow(
            value=value,
            label=label if isinstance(label, str) else None,
            explanation=snippet(str(rec.get("explanation") or ""), snippet_chars),
        )


# DuckDB's memory: a base, and room for the hash table of the pairs' ids it joins to
# (below that the join cannot even spill: 256 MB alone failed at 3M pairs). The base is
# small: past it the scores table spills to the database file (at 300k pairs 96 MB cost
# no more CPU than 256 MB and 150 MB less peak RSS).
_DUCKDB_MEMORY_MB = 96
_DUCKDB_BYTES_PER_PAIR = 100


def _duckdb_memory(pairs: int) -> str:
    return f"{_DUCKDB_MEMORY_MB + pairs * _DUCKDB_BYTES_PER_PAIR // 2**20}MB"


# One pass over the file: DuckDB's reader parses each line once into the fields the
# report reads (each kept as its JSON text, so it is typed in SQL as the Python reader
# types it), joined to the pairs' positions (a table: it spills to disk).
_FIELDS = ("schema", "pair_id", "scorer", "side", "value", "label", "explanation", "scorer_info")
_SCORES_SQL = """
WITH raw AS (
    -- Each field's JSON text, as the reader wrote it (minified; JSON null -> NULL).
    SELECT ordinality AS seq, schema::VARCHAR AS schema, pair_id::VARCHAR AS pair_id,
        scorer::VARCHAR AS scorer, side::VARCHAR AS side, value::VARCHAR AS value,
        label::VARCHAR AS label, explanation::VARCHAR AS explanation,
        scorer_info::VARCHAR AS scorer_info
    FROM {source}
), typed AS (
    -- Types read from the text's first character (a string's quote, a number's digit or
    -- sign), strings unquoted by slicing unless they hold an escape: parsing each field
    -- again (json_type, ->>) cost twice the reading of the file.
    SELECT
        seq,
        CASE
            WHEN schema IS NULL AND pair_id IS NULL AND scorer IS NULL AND side IS NULL
                AND value IS NULL AND label IS NULL AND explanation IS NULL
                AND scorer_info IS NULL THEN 'empty'
            WHEN NOT coalesce(shadoweval_text(schema) = $schema, false) THEN 'foreign'
            WHEN NOT coalesce(pair_id[1] = '"' AND scorer[1] = '"' AND side[1] = '"', false)
                THEN 'malformed'
            ELSE 'record'
        END AS line,
        shadoweval_text(pair_id) AS pair_id,
        shadoweval_text(scorer) AS scorer,
        shadoweval_text(side) AS side,
        CASE WHEN value[1] IN ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
            THEN TRY_CAST(value AS DOUBLE) END AS raw_value,
        shadoweval_text(label) AS label,
        CASE
            WHEN explanation IS NULL OR explanation = 'null' THEN ''
            WHEN explanation[1] = '"' THEN shadoweval_text(explanation)
            ELSE explanation
        END AS explanation,
        CASE WHEN scorer_info <> 'null' THEN scorer_info END AS scorer_info
    FROM raw
), scored AS (
    SELECT
        seq, line, pos.pos, scorer, side, label, scorer_info,
        CASE WHEN isfinite(raw_value) THEN raw_value END AS value,
        coalesce(isfinite(raw_value) AND (raw_value < 0 OR raw_value > 1), false) AS outside,
        CASE WHEN length(explanation) <= $limit THEN explanation
            ELSE left(explanation, $limit - 1) || '\u2026' END AS explanation
    FROM typed LEFT JOIN pos ON line = 'record' AND typed.pair_id = pos.pair_id
)
SELECT * FROM scored
"""


_LINES_SQL = """
SELECT
    count(*) FILTER (WHERE line = 'empty'),
    count(*) FILTER (WHERE line = 'foreign'),
    count(*) FILTER (WHERE line = 'malformed'),
    count(*) FILTER (WHERE line = 'record' AND pos IS NULL),
    count(*) FILTER (WHERE line = 'record' AND pos IS NOT NULL AND outside)
FROM scored
"""
# The records the report keeps; of several for one (pair, scorer, side) the last wins,
# decided in numpy per (scorer, side) (a window over every record sorted them all).
_KEPT = "line = 'record' AND pos IS NOT NULL AND NOT outside"


def _load_scores_duckdb(ds: Dataset, path: str, limit: int) -> bool:
    """One score file through DuckDB into ``ds``; False (nothing done) when the file has
    a line that is not a JSON object (DuckDB's reader stops there) or an object with none
    of a score's fields: the Python reader then reads it, so the skipped counts stay exact.

    The last record of a (pair, scorer, side) wins, as in the Python reader. Where they
    differ: a non-string ``explanation`` is kept as its JSON text."""
    import duckdb  # the report extra: only this engine needs it

    # A database file in a directory of its own, removed after: past the memory limit
    # DuckDB spills there instead of growing the report's RSS (or failing).
    with tempfile.TemporaryDirectory(prefix="shadoweval-report-") as tmp:
        con = duckdb.connect(
            str(Path(tmp) / "scores.duckdb"),
            config={
                "threads": 1,
                "memory_limit": _duckdb_memory(len(ds.pairs)),
                "preserve_insertion_order": False,
                "temp_directory": tmp,
            },
        )
        try:
            return _reduce_scores(con, ds, path, limit)
        except duckdb.InvalidInputException:  # invalid JSON, or a line not an object
            return False
        finally:
            con.close()


def _relation(path: str) -> str:
    """The one place an input path becomes a DuckDB relation: the fields of _FIELDS, each
    as its JSON text (NULL when absent), with the line's position (``ordinality``)."""
    del path  # JSONL is the only format so far; the path is bound as $path
    columns = ", ".join(f"{name}: 'JSON'" for name in _FIELDS)
    return f"read_ndjson($path, columns = {{{columns}}}, ignore_errors = false) WITH ORDINALITY"


def _last_wins(
    pos: NDArray[np.int32], seq: NDArray[np.int64], code: NDArray[np.int32], pairs: int
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Of several records for one pair, the one latest in the file (highest ``seq``)."""
    if not np.any(np.bincount(pos, minlength=pairs) > 1):
        return pos, code
    order = np.lexsort((-seq, pos))  # by pair, the latest first
    pos, code = pos[order], code[order]
    first = np.ones(len(pos), bool)
    first[1:] = pos[1:] != pos[:-1]
    return pos[first], code[first]


def _reduce_scores(con: Any, ds: Dataset, path: str, limit: int) -> bool:
    """The score file into ``ds`` (see _load_scores_duckdb)."""
    # The JSON reader tells the planner ~42 rows, so it would build the join's hash table
    # from every score record (with its text) and probe it with the pairs: the plain
    # order (the pairs' ids built, the records probing) costs ~10% less of the pass.
    con.execute("SET disabled_optimizers = 'build_side_probe_side'")
    # A JSON string's text -> the string (NULL when not a string).
    con.execute(
        "CREATE MACRO shadoweval_text(x) AS CASE WHEN x[1] = '\"' THEN"
        " CASE WHEN contains(x, '\\') THEN x::JSON ->> '$' ELSE x[2:-2] END END"
    )
    pairs = ds.pairs
    ids = pairs.pair_ids if isinstance(pairs, PairStore) else [p.pair_id for p in pairs]
    # The ids as a numpy array of references to the same strings: bound as a list they were
    # one DuckDB value each, hundreds of MB at millions of pairs.
    source = np.fromiter(ids, dtype=object, count=len(ids))
    con.register("pos_source", {"pair_id": source, "pos": np.arange(len(ids), dtype=np.int32)})
    con.execute("CREATE TABLE pos AS SELECT pair_id, pos FROM pos_source")
    con.unregister("pos_source")
    del source
    params = {"path": path, "schema": SCORE_SCHEMA, "limit": limit}
    sql = _SCORES_SQL.replace("{source}", _relation(path))
    con.execute(f"CREATE TABLE scored AS {sql}", params)
    empty, foreign, malformed, unknown, outside = con.execute(_LINES_SQL).fetchone() or (0,) * 5
    if empty:
        return False
    for reason, n, corrupt in (
        ("scores file: not a shadoweval.score.v1 record", foreign, True),
        ("malformed score record", malformed, True),
        ("score of a pair not in the report", unknown, False),
        ("score value outside [0, 1]", outside, False),
    ):
        if n:
            ds.skipped[reason] += int(n)
            if corrupt:
                ds.corrupt[path, reason] += int(n)
    # The distinct scores get a code; each (scorer, side) is fetched as int arrays.
    con.execute(
        "CREATE TABLE dist AS SELECT (row_number() OVER () - 1)::INTEGER AS code, *"
        f" FROM (SELECT DISTINCT value, label, explanation FROM scored WHERE {_KEPT})"
    )
    rows = [
        ScoreRow(value, label, explanation)
        for value, label, explanation in con.execute(
            "SELECT value, label, explanation FROM dist ORDER BY code"
        ).fetchall()
    ]
    con.execute(
        "CREATE TABLE kept AS SELECT seq, pos, scorer, side, code FROM scored JOIN dist"
        " ON scored.value IS NOT DISTINCT FROM dist.value"
        " AND scored.label IS NOT DISTINCT FROM dist.label"
        " AND scored.explanation IS NOT DISTINCT FROM dist.explanation"
        f" WHERE {_KEPT}"
    )
    kinds = con.execute("SELECT DISTINCT scorer, side FROM kept ORDER BY ALL").fetchall()
    for scorer, side in kinds:
        if scorer not in ds.scorer_info:
            ds.scorer_info[scorer] = info_of(scorer)
        got = con.execute(
            "SELECT pos, seq, code FROM kept WHERE scorer = $scorer AND side = $side",
            {"scorer": scorer, "side": side},
        ).fetchnumpy()
        pos, code = _last_wins(
            np.asarray(got["pos"], np.int32),
            np.asarray(got["seq"], np.int64),
            np.asarray(got["code"], np.int32),
            len(ids),
        )
        table = ds.scores
        if isinstance(table, ScoreTable):
            table.assign(scorer, side, pos, code, rows)
        else:
            for p, c in zip(pos.tolist(), code.tolist(), strict=True):
                table[(ids[p], scorer, side)] = rows[c]
    for scorer, info in con.execute(
        "SELECT scorer, arg_max(scorer_info, seq) FROM scored"
        f" WHERE {_KEPT} AND scorer_info IS NOT NULL GROUP BY scorer"
    ).fetchall():
        ds.scorer_info[scorer] = ScorerInfo.from_dict(orjson.loads(info))
    return True
