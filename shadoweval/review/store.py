"""SQLite storage of the review: comparisons, ratings, expected answers and sessions.

SQLite (standard library) in WAL mode with ``synchronous=FULL``: a rating the API has
acknowledged survives a crash. Methods are synchronous; the web application runs them on
one dedicated thread (:meth:`Store.call`), which also serialises every access, so no locks
are needed and the event loop never waits on the disk.

Blind order: which of an item's two answers a reviewer sees on the left is an HMAC of
(item, reviewer) under a secret kept in the database, so it is random-looking, stable
across reloads, different per reviewer, and never sent to the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from shadoweval.types import Json

T = TypeVar("T")
Kind = Literal["compare", "expected"]
Letter = Literal["a", "b"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    route TEXT NOT NULL,
    task TEXT,
    prompt TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    a_key TEXT NOT NULL,
    b_key TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_request ON items(request_id);
CREATE INDEX IF NOT EXISTS items_a ON items(a_key);
CREATE INDEX IF NOT EXISTS items_b ON items(b_key);
CREATE TABLE IF NOT EXISTS ratings (
    item_id TEXT NOT NULL REFERENCES items(id),
    reviewer TEXT NOT NULL,
    choice TEXT CHECK (choice IN ('a', 'b', 'tie')),
    rubric TEXT,
    flags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (item_id, reviewer)
);
CREATE TABLE IF NOT EXISTS skips (
    kind TEXT NOT NULL, item_id TEXT NOT NULL, reviewer TEXT NOT NULL,
    PRIMARY KEY (kind, item_id, reviewer)
);
CREATE TABLE IF NOT EXISTS outbox (item_id TEXT PRIMARY KEY, queued_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dataset_items (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    line TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS expected (
    item_id TEXT PRIMARY KEY REFERENCES dataset_items(id),
    text TEXT NOT NULL,
    scoring TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('approved', 'written')),
    reviewer TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, reviewer TEXT NOT NULL, expires_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Comparison:
    """Two answers to one request. ``a``/``b`` are side dicts: upstream, role, text,
    truncated, and ``pair`` (the pair record's ids; None for the primary)."""

    id: str
    request_id: str
    route: str
    task: str | None
    prompt: list[Json]
    a: Json
    b: Json

    @staticmethod
    def answer_key(request_id: str, upstream: str) -> str:
        return f"{request_id}\0{upstream}"


@dataclass(frozen=True)
class Rating:
    item_id: str
    reviewer: str
    choice: Literal["a", "b", "tie"] | None
    rubric: dict[str, dict[str, int]] | None  # "a"/"b" -> criterion -> score
    flags: list[Letter]
    note: str
    left: Letter
    updated_at: float


def _rating(row: sqlite3.Row) -> Rating:
    return Rating(
        item_id=row["item_id"],
        reviewer=row["reviewer"],
        choice=row["choice"],
        rubric=orjson.loads(row["rubric"]) if row["rubric"] else None,
        flags=orjson.loads(row["flags"]),
        note=row["note"],
        left=row["left_side"],
        updated_at=row["updated_at"],
    )


def _comparison(row: sqlite3.Row) -> Comparison:
    return Comparison(
        id=row["id"],
        request_id=row["request_id"],
        route=row["route"],
        task=row["task"],
        prompt=orjson.loads(row["prompt"]),
        a=orjson.loads(row["a"]),
        b=orjson.loads(row["b"]),
    )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),)
            )
        self._secret = bytes.fromhex(self._scalar("SELECT value FROM meta WHERE key='secret'"))
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing -------------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the store's own thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-db")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _scalar(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _order(self, reviewer: str, item_id: str) -> bytes:
        return hmac.digest(self._secret, f"order\0{reviewer}\0{item_id}".encode(), "sha256")

    def left_side(self, item_id: str, reviewer: str) -> Letter:
        """Which answer (a or b) this reviewer sees on the left of this item."""
        bit = hmac.digest(self._secret, f"left\0{reviewer}\0{item_id}".encode(), "sha256")[0]
        return "a" if bit & 1 == 0 else "b"

    # -- comparisons ------------------------------------------------------------------------

    def add_comparisons(self, items: Iterable[Comparison]) -> int:
        """Insert new comparisons (an id already present is left as it is)."""
        now = time.time()
        added = 0
        with self._tx():
            position = self._scalar("SELECT COALESCE(MAX(position), 0) FROM items")
            for it in items:
                position += 1
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        it.id,
                        position,
                        it.request_id,
                        it.route,
                        it.task,
                        orjson.dumps(it.prompt).decode(),
                        orjson.dumps(it.a).decode(),
                        orjson.dumps(it.b).decode(),
                        Comparison.answer_key(it.request_id, it.a["upstream"]),
                        Comparison.answer_key(it.request_id, it.b["upstream"]),
                        now,
                    ),
                )
                added += cur.rowcount
        return added

    def comparison(self, item_id: str) -> Comparison | None:
        row = self._db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else _comparison(row)

    def next_comparison(self, reviewer: str, target: int) -> str | None:
        """The next item for ``reviewer``: not rated by them; items short of ``target``
        ratings first, items they skipped last, otherwise in their own random order."""
        rows = self._db.execute(
            """
            SELECT i.id,
                   (SELECT COUNT(*) FROM ratings r WHERE r.item_id = i.id) AS n,
                   EXISTS (SELECT 1 FROM skips s WHERE s.kind = 'compare'
                           AND s.item_id = i.id AND s.reviewer = ?) AS skipped
            FROM items i
            WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = i.id AND r.reviewer = ?)
            """,
            (reviewer, reviewer),
        ).fetchall()
        if not rows:
            return None
        best = min(
            rows, key=lambda r: (r["skipped"], r["n"] >= target, self._order(reviewer, r[0]))
        )
        return str(best[0])

    def rating(self, item_id: str, reviewer: str) -> Rating | None:
        row = self._db.execute(
            "SELECT * FROM ratings WHERE item_id = ? AND reviewer = ?", (item_id, reviewer)
        ).fetchone()
        return None if row is None else _rating(row)

    def ratings(self, item_id: str) -> list[Rating]:
        rows = self._db.execute(
            "SELECT * FROM ratings WHERE item_id = ? ORDER BY reviewer", (item_id,)
        ).fetchall()
        return [_rating(r) for r in rows]

    def all_ratings(self) -> list[Rating]:
        rows = self._db.execute("SELECT * FROM ratings ORDER BY item_id, reviewer").fetchall()
        return [_rating(r) for r in rows]

    def save_rating(self, rating: Rating) -> None:
        """Store (or replace) a reviewer's rating and queue the item for publishing, in one
        transaction: a rating is never stored without being published eventually."""
        now = time.time()
        with self._tx():
            self._db.execute(
                """
                INSERT INTO ratings VALUES (?,?,?,?,?,?,?,?,?)
                ON CONFLICT (item_id, reviewer) DO UPDATE SET
                    choice = excluded.choice, rubric = excluded.rubric,
                    flags = excluded.flags, note = excluded.note,
                    left_side = excluded.left_side, updated_at = excluded.updated_at
                """,
                (
                    rating.item_id,
                    rating.reviewer,
                    rating.choice,
                    None if rating.rubric is None else orjson.dumps(rating.rubric).decode(),
                    orjson.dumps(rating.flags).decode(),
                    rating.note,
                    rating.left,
                    now,
                    now,
                ),
            )
            self._db.execute(
                "DELETE FROM skips WHERE kind = 'compare' AND item_id = ? AND reviewer = ?",
                (rating.item_id, rating.reviewer),
            )
            self._db.execute("INSERT OR REPLACE INTO outbox VALUES (?, ?)", (rating.item_id, now))

    def skip(self, kind: Kind, item_id: str, reviewer: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO skips VALUES (?, ?, ?)", (kind, item_id, reviewer)
            )

    def answer_ratings(self, key: str) -> list[tuple[Letter, Rating]]:
        """Every rating of every item that shows the answer ``key``, with its letter there."""
        rows = self._db.execute(
            """
            SELECT r.*, CASE WHEN i.a_key = ? THEN 'a' ELSE 'b' END AS letter
            FROM ratings r JOIN items i ON i.id = r.item_id
            WHERE i.a_key = ? OR i.b_key = ?
            ORDER BY r.item_id, r.reviewer
            """,
            (key, key, key),
        ).fetchall()
        return [(row["letter"], _rating(row)) for row in rows]

    def request_pairs(self, request_id: str) -> list[Json]:
        """The pair ids (and record fields) of a request's non-primary answers in any item."""
        found: dict[str, Json] = {}
        for row in self._db.execute("SELECT a, b FROM items WHERE request_id = ?", (request_id,)):
            for side in (orjson.loads(row["a"]), orjson.loads(row["b"])):
                if side.get("pair"):
                    found[side["pair"]["pair_id"]] = side["pair"]
        return [found[k] for k in sorted(found)]

    # -- publishing outbox ------------------------------------------------------------------

    def outbox(self, limit: int = 100) -> list[tuple[str, float]]:
        """Items waiting to be published, with when they were queued."""
        rows = self._db.execute(
            "SELECT item_id, queued_at FROM outbox ORDER BY queued_at LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def outbox_done(self, entries: list[tuple[str, float]]) -> None:
        """Forget published items, unless re-rated since they were read (then they go out
        again with the new rating)."""
        with self._tx():
            self._db.executemany("DELETE FROM outbox WHERE item_id = ? AND queued_at = ?", entries)

    def requeue_all(self) -> int:
        """Queue every rated item for publishing again (e.g. for a new score sink)."""
        now = time.time()
        with self._tx():
            cur = self._db.execute(
                "INSERT OR REPLACE INTO outbox SELECT DISTINCT item_id, ? FROM ratings", (now,)
            )
        return cur.rowcount

    # -- progress ---------------------------------------------------------------------------

    def progress(self, reviewer: str, target: int) -> Json:
        items = self._scalar("SELECT COUNT(*) FROM items")
        mine = self._scalar("SELECT COUNT(*) FROM ratings WHERE reviewer = ?", reviewer)
        complete = self._scalar(
            "SELECT COUNT(*) FROM (SELECT item_id FROM ratings GROUP BY item_id "
            "HAVING COUNT(*) >= ?)",
            target,
        )
        dataset = self._scalar("SELECT COUNT(*) FROM dataset_items")
        with_expected = self._scalar(
            "SELECT COUNT(*) FROM dataset_items d WHERE EXISTS "
            "(SELECT 1 FROM expected e WHERE e.item_id = d.id) "
            "OR json_extract(d.line, '$.expected') IS NOT NULL"
        )
        return {
            "compare": {
                "items": items,
                "rated_by_you": mine,
                "ratings": self._scalar("SELECT COUNT(*) FROM ratings"),
                "target_per_item": target,
                "items_at_target": complete,
                "reviewers": self._scalar("SELECT COUNT(DISTINCT reviewer) FROM ratings"),
                "unpublished": self._scalar("SELECT COUNT(*) FROM outbox"),
            },
            "expected": {
                "items": dataset,
                "with_expected": with_expected,
                "by_you": self._scalar(
                    "SELECT COUNT(*) FROM expected WHERE reviewer = ?", reviewer
                ),
            },
        }

    # -- dataset items and expected answers ------------------------------------------------

    def add_dataset(self, lines: Iterable[Json]) -> int:
        """Load dataset items (``id`` required); an item loaded again is updated in place."""
        now = time.time()
        n = 0
        with self._tx():
            position = self._scalar("SELECT COALESCE(MAX(position), 0) FROM dataset_items")
            for line in lines:
                position += 1
                self._db.execute(
                    """
                    INSERT INTO dataset_items VALUES (?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET line = excluded.line
                    """,
                    (str(line["id"]), position, orjson.dumps(line).decode(), now),
                )
                n += 1
        return n

    def dataset_item(self, item_id: str) -> tuple[Json, Json | None] | None:
        """The item's line and its stored expected answer (text, scoring, origin, ...)."""
        row = self._db.execute(
            "SELECT d.line, e.text, e.scoring, e.origin, e.reviewer, e.updated_at "
            "FROM dataset_items d LEFT JOIN expected e ON e.item_id = d.id WHERE d.id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            return None
        expected = None
        if row["text"] is not None:
            expected = {
                "text": row["text"],
                "scoring": row["scoring"],
                "origin": row["origin"],
                "reviewer": row["reviewer"],
                "updated_at": row["updated_at"],
            }
        return orjson.loads(row["line"]), expected

    def next_expected(self, reviewer: str) -> str | None:
        """The next dataset item without an expected answer (skipped ones last)."""
        row = self._db.execute(
            """
            SELECT d.id FROM dataset_items d
            WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.item_id = d.id)
            ORDER BY EXISTS (SELECT 1 FROM skips s WHERE s.kind = 'expected'
                             AND s.item_id = d.id AND s.reviewer = ?), d.position
            LIMIT 1
            """,
            (reviewer,),
        ).fetchone()
        return None if row is None else str(row[0])

    def save_expected(
        self, item_id: str, text: str, scoring: str, origin: str, reviewer: str
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO expected VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, text, scoring, origin, reviewer, time.time()),
            )

    def export_dataset(self) -> Iterator[Json]:
        """Dataset lines with the stored expected answers and scoring rules filled in."""
        rows = self._db.execute(
            "SELECT d.line, e.text, e.scoring, e.origin, e.reviewer, e.updated_at "
            "FROM dataset_items d LEFT JOIN expected e ON e.item_id = d.id ORDER BY d.position"
        ).fetchall()
        for row in rows:
            line = orjson.loads(row["line"])
            if row["text"] is not None:
                line["expected"] = row["text"]
                line["scoring"] = row["scoring"]
                line["expected_review"] = {
                    "origin": row["origin"],
                    "reviewer": row["reviewer"],
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["updated_at"])),
                }
            yield line

    # -- sessions -----------------------------------------------------------------------------

    def create_session(self, reviewer: str, ttl_s: float) -> str:
        """A new session token (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._tx():
            self._db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)", (_hash(token), reviewer, now + ttl_s)
            )
        return token

    def session(self, token: str) -> str | None:
        """The reviewer of a live session, or None."""
        row = self._db.execute(
            "SELECT reviewer FROM sessions WHERE token_hash = ? AND expires_at >= ?",
            (_hash(token), time.time()),
        ).fetchone()
        return None if row is None else str(row[0])

    def drop_session(self, token: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash(token),))
