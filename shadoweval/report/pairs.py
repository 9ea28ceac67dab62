"""The report's pairs as columns.

A day of traffic is millions of pairs; as one object per pair (and per side) it costs
about a kilobyte each. Here each field is one array over the pairs, in the report's order
((ts, pair_id)); names (upstreams, models, tasks, ...) are small codes into one table; a
request's primary side, repeated in each of its pairs, is kept once per distinct side.
Text (the prompt and both answers) is not held at all where the pairs came from a JSONL
file: it is read again, by the record's byte offset, for the few examples the report
shows. A :class:`PairView` is one upstream's pairs (or a segment's): positions into the
store, and the columns the aggregation reads, gathered once.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import orjson
from numpy.typing import NDArray

from shadoweval.report.rows import (
    PairRow,
    SideRow,
    SideValues,
    prompt_text,
    side_text,
    snippet,
)

Floats = NDArray[np.float64]
Codes = NDArray[np.signedinteger[Any]]  # int16 while the names fit, else int32
NAN = math.nan


class Strings(Sequence[str]):
    """Many short strings (pair ids) in one UTF-8 buffer with their ends, and the order
    they are read in: millions of str objects cost 75 bytes each and pin the allocator's
    pools among the parser's garbage."""

    def __init__(
        self, blob: bytes, ends: NDArray[np.int64], order: NDArray[np.intp] | None = None
    ) -> None:
        self._blob, self._ends = blob, ends
        self._order = order

    def __len__(self) -> int:
        return len(self._ends) if self._order is None else len(self._order)

    def _get(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._blob[start : int(self._ends[i])].decode()

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i < 0:
            i += len(self)
        return self._get(i if self._order is None else int(self._order[i]))

    def __iter__(self) -> Iterator[str]:
        at = range(len(self._ends)) if self._order is None else self._order.tolist()
        get = self._get
        return (get(i) for i in at)

    def ordered(self, order: NDArray[np.intp]) -> Strings:
        """These strings in this order (positions into this one)."""
        base = order if self._order is None else self._order[order]
        return Strings(self._blob, self._ends, base)


class Names:
    """One code per distinct name (-1: None)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str | None) -> int:
        if name is None:
            return -1
        got = self._codes.get(name)
        if got is None:
            got = self._codes[name] = len(self.names)
            self.names.append(name)
        return got

    def name(self, code: int) -> str | None:
        return None if code < 0 else self.names[code]

    def narrow(self, codes: NDArray[np.int32]) -> Codes:
        """A copy of these codes in two bytes each where every name's code fits."""
        return codes.astype(np.int16) if len(self.names) < 2**15 else codes.copy()


@dataclass
class Sides:
    """A table of sides (one answer each): codes into the store's names, NaN for a number
    not recorded."""

    upstream: Codes
    role: Codes
    model: Codes
    error: Codes
    latency: Floats
    ttft: Floats
    attempts: NDArray[np.int32]
    input_tokens: Floats
    output_tokens: Floats
    cached_tokens: Floats
    estimated: NDArray[np.bool_]
    cost: Floats

    def take(self, at: NDArray[np.integer[Any]]) -> Sides:
        return Sides(**{k: v[at] for k, v in vars(self).items()})


class SidesAt:
    """Some rows of a table of sides, each column gathered when first read (a view's
    figures read a few of the twelve)."""

    def __init__(self, sides: Sides, at: NDArray[np.integer[Any]]) -> None:
        self._sides, self._at = sides, at
        self._got: dict[str, NDArray[Any]] = {}

    def __getattr__(self, name: str) -> NDArray[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        got = self._got.get(name)
        if got is None:
            got = self._got[name] = getattr(self._sides, name)[self._at]
        return got


class _SideColumns:
    """Sides as they are read: typed arrays (8 bytes a number, not a Python object)."""

    def __init__(self) -> None:
        self.upstream, self.role, self.model, self.error = (array("i") for _ in range(4))
        self.latency, self.ttft, self.cost = array("d"), array("d"), array("d")
        self.tokens_in, self.tokens_out, self.cached = array("d"), array("d"), array("d")
        self.attempts = array("q")
        self.estimated = bytearray()

    def add(self, side: SideValues, names: Names) -> int:
        upstream, role, model, error, latency, ttft, attempts, t_in, t_out, cached, est, cost = side
        code = names.code
        self.upstream.append(code(upstream))
        self.role.append(code(role))
        self.model.append(code(model))
        self.error.append(code(error))
        self.latency.append(latency)
        self.ttft.append(NAN if ttft is None else ttft)
        self.attempts.append(attempts)
        self.tokens_in.append(NAN if t_in is None else float(t_in))
        self.tokens_out.append(NAN if t_out is None else float(t_out))
        self.cached.append(NAN if cached is None else float(cached))
        self.estimated.append(est)
        self.cost.append(NAN if cost is None else cost)
        return len(self.latency) - 1

    def table(self, names: Names, at: NDArray[np.intp] | None = None) -> Sides:
        """The sides (those at ``at``) as arrays; what was read is let go column by column."""

        def pick(a: NDArray[Any]) -> NDArray[Any]:
            return a.copy() if at is None else a[at]

        def let_go(name: str) -> Any:
            """The column read, and an empty one left in its place (held once, not twice)."""
            column = getattr(self, name)
            setattr(
                self,
                name,
                type(column)() if isinstance(column, bytearray) else array(column.typecode),
            )
            return column

        def i32(a: array[int]) -> Codes:
            return names.narrow(
                pick(np.frombuffer(a, np.int32)) if len(a) else np.zeros(0, np.int32)
            )

        def f64(a: array[float]) -> Floats:
            return pick(np.frombuffer(a, np.float64)) if len(a) else np.zeros(0)

        attempts = let_go("attempts")
        return Sides(
            upstream=i32(let_go("upstream")),
            role=i32(let_go("role")),
            model=i32(let_go("model")),
            error=i32(let_go("error")),
            latency=f64(let_go("latency")),
            ttft=f64(let_go("ttft")),
            attempts=pick(np.frombuffer(attempts, np.int64)).astype(np.int32)
            if len(attempts)
            else np.zeros(0, np.int32),
            input_tokens=f64(let_go("tokens_in")),
            output_tokens=f64(let_go("tokens_out")),
            cached_tokens=f64(let_go("cached")),
            estimated=pick(np.frombuffer(bytes(let_go("estimated")), np.bool_)),
            cost=f64(let_go("cost")),
        )


Texts = tuple[str, str, str]  # prompt, primary answer, candidate answer (snippets)


@dataclass
class _Source:
    """Where a pair's texts are: a JSONL file and the record's byte offset, or kept."""

    paths: list[str] = field(default_factory=list)
    file: array[int] = field(default_factory=lambda: array("i"))  # -1: kept in ``kept``
    offset: array[int] = field(default_factory=lambda: array("q"))  # or the index in kept
    kept: list[Texts] = field(default_factory=list)


class StoreBuilder:
    """Pairs appended as they are read (see load._read_pairs); ``build`` keeps the ones
    ``keep`` marked, in the report's order."""

    def __init__(self, snippet_chars: int, hash_of: Callable[[str], int] = hash) -> None:
        self.limit = snippet_chars
        self._hash_of = hash_of
        self.names = Names()
        self._id_blob = bytearray()
        self._id_ends = array("q")
        self.ts = array("d")
        self.request = array("i")
        # Request ids by code (in one buffer); the dict lives only while reading.
        self._request_blob = bytearray()
        self._request_ends = array("q")
        self._request_codes: dict[str, int] = {}
        self._last_request: tuple[str, int] = ("", -1)
        self.source, self.route, self.task, self.cluster = (array("i") for _ in range(4))
        self.clusters = Names()
        self.cand = _SideColumns()
        self.prim = _SideColumns()
        self.prim_of = array("i")
        self.probes: dict[int, dict[str, Any]] = {}
        self.headers: dict[int, dict[str, str]] = {}
        self.src = _Source()
        self.alive = bytearray()
        self.duplicates = 0  # pairs replaced by a later record of the same pair_id
        self._hashes = array("q")
        self._last_primary: tuple[bytes, int] | None = None

    def file(self, path: str) -> int:
        self.src.paths.append(path)
        return len(self.src.paths) - 1

    def primary(self, key: bytes | None, make: Callable[[], SideValues]) -> int:
        """The primary side's row: reused when its JSON is the pair before's (a request's
        pairs are usually adjacent; equal JSON makes an equal row)."""
        if key is not None and self._last_primary is not None and self._last_primary[0] == key:
            return self._last_primary[1]
        at = self.prim.add(make(), self.names)
        if key is not None:
            self._last_primary = (key, at)
        return at

    def add(
        self,
        *,
        pair_id: str,
        request_id: str,
        ts: float,
        source: str,
        route: str,
        task: str | None,
        primary: int,
        candidate: SideValues,
        cluster: str | None,
        probe: dict[str, Any] | None,
        headers: dict[str, str] | None,
        where: tuple[int, int] | Texts,
    ) -> int:
        i = len(self._id_ends)
        self._id_blob += pair_id.encode()
        self._id_ends.append(len(self._id_blob))
        self._hashes.append(self._hash_of(pair_id))
        self.ts.append(ts)
        # A request's pairs are usually adjacent: the last one's code, without a lookup.
        code = self._last_request[1] if self._last_request[0] == request_id else None
        if code is None:
            code = self._request_codes.get(request_id)
        if code is None:
            code = self._request_codes[request_id] = len(self._request_ends)
            self._request_blob += request_id.encode()
            self._request_ends.append(len(self._request_blob))
        self._last_request = (request_id, code)
        self.request.append(code)
        self.source.append(self.names.code(source))
        self.route.append(self.names.code(route))
        self.task.append(self.names.code(task))
        self.cluster.append(self.clusters.code(cluster))
        self.prim_of.append(primary)
        self.cand.add(candidate, self.names)
        if probe is not None:
            self.probes[i] = probe
        if headers is not None:
            self.headers[i] = headers
        if len(where) == 2:
            self.src.file.append(where[0])
            self.src.offset.append(where[1])
        else:
            self.src.file.append(-1)
            self.src.offset.append(len(self.src.kept))
            self.src.kept.append(where)
        self.alive.append(1)
        return i

    def _ids(self) -> Strings:
        ends = np.frombuffer(self._id_ends, np.int64) if self._id_ends else np.zeros(0, np.int64)
        return Strings(bytes(self._id_blob), ends)

    def _dedupe(self, ids: Strings) -> None:
        """Of the pairs with one pair_id the last added stays (a re-delivery replaces):
        found among equal hashes (a dict of millions of ids cost more than the ids), and
        the ids themselves compared there."""
        if not self._hashes:
            return
        hashes = np.frombuffer(self._hashes, np.int64)
        order = np.argsort(hashes, kind="stable")  # equal hashes: in the order added
        same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
        if not len(same):
            return
        starts = same[np.concatenate(([True], np.diff(same) > 1))]
        ends = same[np.concatenate((np.diff(same) > 1, [True]))] + 2
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            last: dict[str, int] = {}
            for i in order[a:b].tolist():
                pair_id = ids[i]
                old = last.get(pair_id)
                if old is not None:
                    self.alive[old] = 0
                    self.duplicates += 1
                last[pair_id] = i

    def build(self, ordered: bool = True) -> PairStore:
        """``ordered``: in (ts, pair_id) order; else in the order they were added."""
        ids = self._ids()
        self._id_blob = bytearray()
        self._request_codes = {}
        request_ids = Strings(
            bytes(self._request_blob),
            np.frombuffer(self._request_ends, np.int64).copy()
            if self._request_ends
            else np.zeros(0, np.int64),
        )
        self._dedupe(ids)
        alive = np.frombuffer(bytes(self.alive), np.bool_) if self.alive else np.zeros(0, bool)
        ts = np.frombuffer(self.ts, np.float64) if len(self.ts) else np.zeros(0)
        keep = np.flatnonzero(alive)
        order = keep
        if ordered:
            order = keep[_order(ts[keep], lambda j: ids[int(keep[j])])]
        at = order.astype(np.intp)

        def col(name: str) -> Codes:
            """A column in the report's order; the one read is let go (held once)."""
            a = getattr(self, name)
            setattr(self, name, array("i"))
            full = np.frombuffer(a, np.int32) if len(a) else np.zeros(0, np.int32)
            return full[at]

        file = (
            np.frombuffer(self.src.file, np.int32) if len(self.src.file) else np.zeros(0, np.int32)
        )
        offset = (
            np.frombuffer(self.src.offset, np.int64)
            if len(self.src.offset)
            else np.zeros(0, np.int64)
        )
        # Where each added pair went (-1: dropped), for the few fields held by position.
        moved = np.full(len(self.alive), -1, np.int64)
        moved[at] = np.arange(len(at))

        def moved_keys(by: dict[int, Any]) -> dict[int, Any]:
            return {int(moved[i]): v for i, v in by.items() if moved[i] >= 0}

        return PairStore(
            names=self.names,
            pair_ids=ids.ordered(at),
            ts=ts[at].copy(),
            request=col("request"),
            request_ids=request_ids,
            source=self.names.narrow(col("source")),
            route=self.names.narrow(col("route")),
            task=self.names.narrow(col("task")),
            cluster=col("cluster"),
            clusters=self.clusters.names,
            cand=self.cand.table(self.names, at),
            prim=self.prim.table(self.names),
            prim_of=col("prim_of"),
            probes=moved_keys(self.probes),
            headers=moved_keys(self.headers),
            texts=_TextSource(
                self.src.paths, file[at].copy(), offset[at].copy(), self.src.kept, self.limit
            ),
        )


def _order(ts: Floats, id_of: Callable[[int], str]) -> NDArray[np.intp]:
    """The positions in (ts, pair_id) order: numpy by time, Python only within equal times."""
    order = np.argsort(ts, kind="stable")
    if len(order) < 2:
        return order
    sorted_ts = ts[order]
    tie = np.flatnonzero(sorted_ts[1:] == sorted_ts[:-1])
    if not len(tie):
        return order
    # Runs of equal times: [start, end) in the sorted order.
    starts = tie[np.concatenate(([True], np.diff(tie) > 1))]
    ends = tie[np.concatenate((np.diff(tie) > 1, [True]))] + 2
    out = order.copy()
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        run = out[a:b].tolist()
        run.sort(key=id_of)
        out[a:b] = run
    return out


class _TextSource:
    """Each pair's texts, read again from its file by offset (or kept in memory)."""

    def __init__(
        self,
        paths: list[str],
        file: Codes,
        offset: NDArray[np.int64],
        kept: list[Texts],
        limit: int,
    ) -> None:
        self.paths, self.file, self.offset, self.kept, self.limit = paths, file, offset, kept, limit

    def texts(self, positions: Sequence[int]) -> list[Texts]:
        out: dict[int, Texts] = {}
        by_file: dict[int, list[int]] = {}
        for i in positions:
            f = int(self.file[i])
            if f < 0:
                out[i] = self.kept[int(self.offset[i])]
            else:
                by_file.setdefault(f, []).append(i)
        for f, wanted in by_file.items():
            with open(self.paths[f], "rb") as fh:
                for i in sorted(wanted, key=lambda j: int(self.offset[j])):
                    fh.seek(int(self.offset[i]))
                    out[i] = record_texts(orjson.loads(fh.readline()), self.limit)
        return [out[i] for i in positions]


def record_texts(rec: dict[str, Any], limit: int) -> Texts:
    """A pair record's prompt and answers as the report shows them."""
    return (
        snippet(prompt_text(rec.get("request")), limit),
        side_text(rec["primary"], limit),
        side_text(rec["candidate"], limit),
    )


class PairStore(Sequence[PairRow]):
    """Every pair of a report, as columns (see the module's docstring)."""

    def __init__(
        self,
        *,
        names: Names,
        pair_ids: Strings,
        ts: Floats,
        request: Codes,
        request_ids: Strings,
        source: Codes,
        route: Codes,
        task: Codes,
        cluster: Codes,
        clusters: list[str],
        cand: Sides,
        prim: Sides,
        prim_of: Codes,
        probes: dict[int, dict[str, Any]],
        headers: dict[int, dict[str, str]],
        texts: _TextSource,
    ) -> None:
        self.names = names
        self.pair_ids = pair_ids
        self.ts = ts
        self.request = request
        self.request_ids = request_ids
        self.source, self.route, self.task = source, route, task
        self.cluster, self.clusters = cluster, clusters
        self.cand, self.prim, self.prim_of = cand, prim, prim_of
        self.probes, self.headers = probes, headers
        self._texts = texts
        self._prompts: dict[int, str] | None = None

    @classmethod
    def from_rows(cls, rows: Sequence[PairRow]) -> PairStore:
        """A store of rows built in memory (simulations, tests), texts kept."""
        b = StoreBuilder(snippet_chars=1 << 30)
        for row in rows:
            at = b.primary(None, functools.partial(values_of, row.primary))
            b.add(
                pair_id=row.pair_id,
                request_id=row.request_id,
                ts=row.ts,
                source=row.source,
                route=row.route,
                task=row.task,
                primary=at,
                candidate=values_of(row.candidate),
                cluster=row.cluster,
                probe=row.probe,
                headers=row.headers,
                where=(row.prompt, row.primary.text, row.candidate.text),
            )
        return b.build(ordered=False)

    def __len__(self) -> int:
        return len(self.pair_ids)

    @overload
    def __getitem__(self, i: int) -> PairRow: ...
    @overload
    def __getitem__(self, i: slice) -> list[PairRow]: ...
    def __getitem__(self, i: int | slice) -> PairRow | list[PairRow]:
        if isinstance(i, slice):
            return self.rows(range(len(self))[i])
        return self.rows([i])[0]

    def __iter__(self) -> Iterator[PairRow]:
        step = 4096
        for lo in range(0, len(self), step):
            yield from self.rows(range(lo, min(lo + step, len(self))))

    def name(self, code: int) -> str | None:
        return self.names.name(code)

    def texts(self, positions: Sequence[int]) -> list[Texts]:
        return self._texts.texts(positions)

    def prompt_of_requests(self, positions: NDArray[np.intp]) -> dict[int, str]:
        """Request code -> its prompt (the first pair's), for these pairs' requests."""
        if self._prompts is None:
            self._prompts = {}
        want: dict[int, int] = {}
        for pos, code in zip(positions.tolist(), self.request[positions].tolist(), strict=True):
            if code not in self._prompts and code not in want:
                want[code] = pos
        if want:
            for code, texts in zip(want, self.texts(list(want.values())), strict=True):
                self._prompts[code] = texts[0]
        return self._prompts

    def _side(self, sides: Sides, i: int, text: str) -> SideRow:
        def num(v: float) -> float | None:
            return None if v != v else float(v)

        def whole(v: float) -> int | None:
            return None if v != v else int(v)

        return SideRow(
            upstream=self.name(int(sides.upstream[i])) or "",
            role=self.name(int(sides.role[i])) or "",
            model=self.name(int(sides.model[i])),
            error_type=self.name(int(sides.error[i])),
            latency_s=float(sides.latency[i]),
            ttft_s=num(sides.ttft[i]),
            attempts=int(sides.attempts[i]),
            input_tokens=whole(sides.input_tokens[i]),
            output_tokens=whole(sides.output_tokens[i]),
            cached_input_tokens=whole(sides.cached_tokens[i]),
            estimated=bool(sides.estimated[i]),
            cost_usd=num(sides.cost[i]),
            text=text,
        )

    def rows(self, positions: Sequence[int]) -> list[PairRow]:
        """These pairs as rows, texts included (the examples a report shows, probes)."""
        positions = list(positions)
        out = []
        for i, (prompt, ptext, ctext) in zip(positions, self.texts(positions), strict=True):
            cluster = int(self.cluster[i])
            out.append(
                PairRow(
                    pair_id=self.pair_ids[i],
                    request_id=self.request_ids[int(self.request[i])],
                    ts=float(self.ts[i]),
                    source=self.name(int(self.source[i])) or "",
                    route=self.name(int(self.route[i])) or "",
                    task=self.name(int(self.task[i])),
                    prompt=prompt,
                    primary=self._side(self.prim, int(self.prim_of[i]), ptext),
                    candidate=self._side(self.cand, i, ctext),
                    cluster=None if cluster < 0 else self.clusters[cluster],
                    probe=self.probes.get(i),
                    headers=self.headers.get(i),
                )
            )
        return out

    def view(self, at: NDArray[np.intp]) -> PairView:
        return PairView(self, at)


def values_of(side: SideRow) -> SideValues:
    return (
        side.upstream,
        side.role,
        side.model,
        side.error_type,
        side.latency_s,
        side.ttft_s,
        side.attempts,
        side.input_tokens,
        side.output_tokens,
        side.cached_input_tokens,
        side.estimated,
        side.cost_usd,
    )


def as_store(pairs: Sequence[PairRow]) -> PairStore:
    return pairs if isinstance(pairs, PairStore) else PairStore.from_rows(pairs)


class PairView:
    """Some of a store's pairs (an upstream's, a segment's), in the store's order."""

    def __init__(self, store: PairStore, at: NDArray[np.intp]) -> None:
        self.store, self.at = store, at
        self._cand: SidesAt | None = None
        self._prim: SidesAt | None = None

    def __len__(self) -> int:
        return len(self.at)

    def __bool__(self) -> bool:
        return len(self.at) > 0

    def sub(self, keep: NDArray[np.intp]) -> PairView:
        return PairView(self.store, self.at[keep])

    @property
    def cand(self) -> SidesAt:
        if self._cand is None:
            self._cand = SidesAt(self.store.cand, self.at)
        return self._cand

    @property
    def prim(self) -> SidesAt:
        if self._prim is None:
            self._prim = SidesAt(self.store.prim, self.store.prim_of[self.at])
        return self._prim

    def pair_id(self, j: int) -> str:
        return self.store.pair_ids[int(self.at[j])]

    def pair_ids(self) -> list[str]:
        ids = self.store.pair_ids
        return [ids[i] for i in self.at.tolist()]

    def request_ids(self) -> list[str]:
        ids = self.store.request_ids
        return [ids[c] for c in self.store.request[self.at].tolist()]

    def row(self, j: int) -> PairRow:
        return self.store.rows([int(self.at[j])])[0]
