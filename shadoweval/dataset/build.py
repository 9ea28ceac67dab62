"""Pick N representative inputs from captured pair records (see the package docstring).

Steps, each deterministic given ``settings.seed``:

1. Group pair records by request (one request, several candidates) and derive its facts:
   stratum (route, task, input-length bucket), failures, the largest primary/candidate
   disagreement (token F1), safety flags from score records.
2. Cluster near-duplicate inputs (``dedup.clusters``); one representative per cluster,
   preferring one with edge-case facts. The cluster size is kept as its traffic weight.
3. Edge cases: ``edge_share`` of the budget, taken round-robin from failures, safety flags,
   disagreements and the longest inputs; each item says which one it is.
4. The rest: proportional (largest-remainder) allocation over strata, weighted by their
   share of the traffic *before* dedup, at least ``min_per_stratum`` per stratum while the
   budget allows; a seeded random sample within each stratum.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shadoweval.archive.layout import read_records
from shadoweval.config.review import DatasetSettings
from shadoweval.console import Column, Progress, print_table
from shadoweval.dataset import dedup
from shadoweval.dataset.inputs import Turn, dedup_text, input_chars, similarity, turns
from shadoweval.redaction import Redactor
from shadoweval.types import Json

PAIR_SCHEMA = "shadoweval.pair.v1"
SCORE_SCHEMA = "shadoweval.score.v1"
EDGE_KINDS = ("failure", "safety", "disagreement", "longest")
_LENGTH_NAMES = {1: ["any"], 2: ["short", "long"], 3: ["short", "medium", "long"]}

Stratum = tuple[str, str, str]  # route, task ("-" when untagged), length bucket


@dataclass
class Answer:
    upstream: str
    role: str
    text: str | None
    error: str | None


@dataclass
class Request:
    """One captured request with what its pair records say about it."""

    request_id: str
    ts: str
    source: str
    route: str
    task: str | None
    body: Json
    expected: Any = None
    pair_ids: list[str] = field(default_factory=list)
    primary: Answer | None = None
    others: list[Answer] = field(default_factory=list)
    safety: list[str] = field(default_factory=list)

    @property
    def conversation(self) -> list[Turn]:
        return turns(self.body)

    @property
    def chars(self) -> int:
        return input_chars(self.conversation)

    @property
    def failures(self) -> list[str]:
        sides = [self.primary, *self.others] if self.primary else self.others
        return [f"{a.upstream} ({a.role}): {a.error}" for a in sides if a.error]

    @property
    def disagreement(self) -> float | None:
        """1 - token F1 between the primary and its most different candidate (controls only
        when there is no candidate: they measure noise, not a model difference)."""
        if self.primary is None or self.primary.error or self.primary.text is None:
            return None
        ok = [a for a in self.others if not a.error and a.text is not None]
        pool = [a for a in ok if a.role == "candidate"] or ok
        if not pool:
            return None
        return max(1.0 - similarity(self.primary.text, a.text or "") for a in pool)


def _answer(side: Any) -> Answer:
    if not isinstance(side, dict):
        raise ValueError("side is not an object")
    status = side.get("status")
    error = side.get("error_type") or (
        None if isinstance(status, int) and 200 <= status < 300 else f"status {status}"
    )
    text = side.get("output_text")
    return Answer(
        upstream=str(side["upstream"]),
        role=str(side.get("role") or "candidate"),
        text=text if isinstance(text, str) else None,
        error=str(error) if error else None,
    )


def add_pair(requests: dict[str, Request], rec: Json, skipped: Counter[str]) -> None:
    """Fold one pair record into ``requests`` (keyed by request id)."""
    if rec.get("schema") != PAIR_SCHEMA:
        skipped["not a shadoweval.pair.v1 record"] += 1
        return
    try:
        rid = str(rec["request_id"])
        body = rec["request"]
        if not isinstance(body, dict):
            raise ValueError("request is not an object")
        primary, cand = _answer(rec["primary"]), _answer(rec["candidate"])
        pair_id = str(rec["pair_id"])
    except (KeyError, TypeError, ValueError):
        skipped["malformed pair record"] += 1
        return
    req = requests.get(rid)
    if req is None:
        task = rec.get("task")
        req = requests[rid] = Request(
            request_id=rid,
            ts=str(rec.get("ts") or ""),
            source=str(rec.get("source") or "traffic"),
            route=str(rec.get("route") or "chat"),
            task=task if isinstance(task, str) and task else None,
            body=body,
            expected=rec.get("expected"),
            primary=primary,
        )
    if pair_id in req.pair_ids:
        skipped["duplicate pair (re-delivery)"] += 1
        return
    req.pair_ids.append(pair_id)
    req.others.append(cand)


def add_score(requests: dict[str, Request], rec: Json, safety_scorers: set[str]) -> bool:
    """Record a raised safety flag of a score record; True when it applied."""
    if rec.get("schema") != SCORE_SCHEMA or rec.get("scorer") not in safety_scorers:
        return False
    value = rec.get("value")
    if not isinstance(value, int | float) or value < 0.5:
        return False
    req = requests.get(str(rec.get("request_id")))
    if req is None:
        return False
    side = str(rec.get("side"))
    who = rec.get("primary_upstream") if side == "primary" else rec.get("upstream")
    flag = f"{rec['scorer']} ({who or side})"
    if flag not in req.safety:
        req.safety.append(flag)
    return True


def read_requests(
    pair_paths: Iterable[str | Path],
    score_paths: Iterable[str | Path] = (),
    safety_scorers: Iterable[str] = (),
    skipped: Counter[str] | None = None,
    records: Iterable[Json] = (),
    progress: Progress | None = None,
) -> list[Request]:
    """Requests from pair record files (and ``records`` already read, e.g. from Kafka),
    with safety flags from score record files; ``progress`` is told the bytes read."""
    skipped = skipped if skipped is not None else Counter()
    requests: dict[str, Request] = {}
    pair_paths, score_paths = list(pair_paths), list(score_paths)
    total = sum(Path(p).stat().st_size for p in (*pair_paths, *score_paths) if Path(p).is_file())
    done = 0

    def read(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for rec in records:
        add_pair(requests, rec, skipped)
    for rec in read_records(pair_paths, "pairs", skipped, read):
        add_pair(requests, rec, skipped)
    wanted = set(safety_scorers)
    for rec in read_records(score_paths, "scores", skipped, read):
        add_score(requests, rec, wanted)
    return list(requests.values())


# -- selection --------------------------------------------------------------------------


def length_cuts(lengths: list[int], buckets: int) -> list[int]:
    """Quantile boundaries: bucket i holds lengths in [cuts[i-1], cuts[i])."""
    if buckets <= 1 or not lengths:
        return []
    ordered = sorted(lengths)
    cuts = [ordered[min(len(ordered) - 1, len(ordered) * i // buckets)] for i in range(1, buckets)]
    return sorted(set(cuts))


def length_name(chars: int, cuts: list[int], buckets: int) -> str:
    index = bisect.bisect_right(cuts, chars)
    names = _LENGTH_NAMES.get(buckets)
    return names[min(index, len(names) - 1)] if names else f"L{index + 1}"


def hamilton(total: int, weights: dict[Stratum, float]) -> dict[Stratum, int]:
    """Largest-remainder apportionment of ``total`` seats by ``weights``."""
    wsum = sum(weights.values())
    if total <= 0 or wsum <= 0:
        return dict.fromkeys(weights, 0)
    ideal = {s: total * w / wsum for s, w in weights.items()}
    seats = {s: int(v) for s, v in ideal.items()}
    left = total - sum(seats.values())
    for s in sorted(ideal, key=lambda s: (-(ideal[s] - seats[s]), -weights[s], s))[:left]:
        seats[s] += 1
    return seats


def allocate(
    total: int, weights: dict[Stratum, float], available: dict[Stratum, int], minimum: int
) -> dict[Stratum, int]:
    """Seats per stratum: proportional to ``weights``, capped by ``available`` (the excess
    goes to strata with room, again proportionally), and at least ``minimum`` where the
    stratum has items, taken from the most over-represented strata."""
    quota = dict.fromkeys(weights, 0)
    total = min(total, sum(available.values()))
    open_ = {s for s in weights if available.get(s, 0) > 0}
    while total - sum(quota.values()) > 0 and open_:
        extra = hamilton(total - sum(quota.values()), {s: weights[s] for s in open_})
        for s, n in extra.items():
            quota[s] = min(available[s], quota[s] + n)
        open_ = {s for s in open_ if quota[s] < available[s]}
    wsum = sum(weights.values()) or 1.0

    def surplus(s: Stratum) -> float:
        return quota[s] - total * weights[s] / wsum

    for s in sorted(weights, key=lambda s: (weights[s], s)):
        floor = min(minimum, available.get(s, 0))
        while quota[s] < floor:
            donors = [d for d in quota if quota[d] > min(minimum, available.get(d, 0))]
            if not donors:
                break
            donor = max(donors, key=lambda d: (surplus(d), d))
            quota[donor] -= 1
            quota[s] += 1
    return quota


@dataclass
class BuildResult:
    items: list[Json]
    summary: Json


def _item_id(route: str, body: Json) -> str:
    digest = hashlib.blake2b(
        route.encode() + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=8
    )
    return "in-" + digest.hexdigest()


def build(
    requests: list[Request],
    settings: DatasetSettings,
    redactor: Redactor,
    size: int | None = None,
) -> BuildResult:
    size = settings.size if size is None else size
    rng = random.Random(settings.seed)
    # Redact first: dedup, ids and lengths then see exactly what is written.
    for req in requests:
        req.body = redactor.json(req.body)
    requests = sorted(requests, key=lambda r: (r.ts, r.request_id))
    lengths = [r.chars for r in requests]
    cuts = length_cuts(lengths, settings.length_buckets)

    def stratum(r: Request) -> Stratum:
        return (r.route, r.task or "-", length_name(r.chars, cuts, settings.length_buckets))

    traffic = Counter(stratum(r) for r in requests)
    groups = dedup.clusters(
        [dedup_text(r.conversation) + "\0" + r.route for r in requests],
        settings.near_duplicate_jaccard,
        settings.shingle_words,
    )

    def interest(r: Request) -> int:
        return bool(r.failures) + bool(r.safety) + ((r.disagreement or 0.0) > 0)

    reps: list[tuple[Request, int]] = []
    for members in groups:
        best = max(members, key=lambda i: (interest(requests[i]), -i))
        reps.append((requests[best], len(members)))

    chosen: dict[str, tuple[Request, int, str | None]] = {}  # request_id -> (req, dups, edge)
    edge_budget = round(size * settings.edge_share)
    ranked = _edge_rankings([r for r, _ in reps], rng)
    weight = {r.request_id: n for r, n in reps}
    positions = dict.fromkeys(EDGE_KINDS, 0)
    while sum(1 for v in chosen.values() if v[2]) < edge_budget:
        progressed = False
        for kind in EDGE_KINDS:
            if sum(1 for v in chosen.values() if v[2]) >= edge_budget:
                break
            queue = ranked[kind]
            while positions[kind] < len(queue) and queue[positions[kind]].request_id in chosen:
                positions[kind] += 1
            if positions[kind] < len(queue):
                req = queue[positions[kind]]
                chosen[req.request_id] = (req, weight[req.request_id], kind)
                progressed = True
        if not progressed:
            break

    pool: dict[Stratum, list[tuple[Request, int]]] = defaultdict(list)
    for req, dups in reps:
        if req.request_id not in chosen:
            pool[stratum(req)].append((req, dups))
    representative = size - len(chosen)
    quota = allocate(
        representative,
        {s: float(n) for s, n in traffic.items()},
        {s: len(v) for s, v in pool.items()},
        settings.min_per_stratum,
    )
    for s in sorted(pool):
        for req, dups in rng.sample(pool[s], quota.get(s, 0)):
            chosen[req.request_id] = (req, dups, None)

    items = [
        _item(req, dups, edge, stratum(req), settings, redactor)
        for req, dups, edge in chosen.values()
    ]
    items.sort(key=lambda it: (it["selection"], it["edge_case"] or "", it["id"]))
    picked = Counter(
        tuple(it["stratum"].values()) for it in items if it["selection"] == "stratified"
    )
    summary: Json = {
        "requests": len(requests),
        "unique_inputs": len(groups),
        "near_duplicates_removed": len(requests) - len(groups),
        "size": len(items),
        "wanted": size,
        "edge_cases": dict(Counter(it["edge_case"] for it in items if it["edge_case"])),
        "length_cuts": cuts,
        "strata": [
            {
                "route": s[0],
                "task": s[1],
                "length": s[2],
                "traffic": traffic[s],
                "traffic_share": traffic[s] / len(requests),
                "items": picked.get(s, 0),
            }
            for s in sorted(traffic, key=lambda s: (-traffic[s], s))
        ],
    }
    return BuildResult(items, summary)


def _edge_rankings(reps: list[Request], rng: random.Random) -> dict[str, list[Request]]:
    failing = [r for r in reps if r.failures]
    rng.shuffle(failing)
    # Primary failures first: they are what users saw.
    failing.sort(key=lambda r: r.primary is None or r.primary.error is None)
    flagged = sorted((r for r in reps if r.safety), key=lambda r: -len(r.safety))
    disagree = sorted(
        (r for r in reps if (r.disagreement or 0.0) > 0.0),
        key=lambda r: -(r.disagreement or 0.0),
    )
    longest = sorted(reps, key=lambda r: -r.chars)
    return {"failure": failing, "safety": flagged, "disagreement": disagree, "longest": longest}


def _item(
    req: Request,
    dups: int,
    edge: str | None,
    stratum: Stratum,
    settings: DatasetSettings,
    redactor: Redactor,
) -> Json:
    primary_text = req.primary.text if req.primary and not req.primary.error else None
    disagreement = req.disagreement
    return {
        "id": _item_id(req.route, req.body),
        "request": req.body,
        "route": req.route,
        "task": req.task,
        # Slots: the expected answer (filled in by a reviewer, `shadoweval review`) and how
        # an answer is scored against it.
        "expected": redactor.json(req.expected),
        "scoring": settings.task_scoring.get(req.task or "", settings.scoring),
        "rubric": None,
        "selection": "edge" if edge else "stratified",
        "edge_case": edge,
        "stratum": {"route": stratum[0], "task": stratum[1], "length": stratum[2]},
        "facts": {
            "input_chars": req.chars,
            "failures": [redactor.text(f) for f in req.failures],
            "disagreement": None if disagreement is None else round(disagreement, 4),
            "safety_flags": req.safety,
            "duplicates": dups,
        },
        "origin": {
            "request_id": req.request_id,
            "pair_ids": req.pair_ids,
            "ts": req.ts,
            "source": req.source,
        },
        # The primary's answer, as a draft a reviewer can approve as the expected answer.
        "expected_suggestion": None if primary_text is None else redactor.text(primary_text),
    }


def write_items(items: Iterable[Json], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as fh:
        for item in items:
            fh.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


def print_summary(summary: Json, out: Any) -> None:
    print(
        f"{summary['size']} items from {summary['requests']} requests "
        f"({summary['unique_inputs']} unique inputs, {summary['near_duplicates_removed']} "
        f"near-duplicates removed)",
        file=out,
    )
    if summary["size"] < summary["wanted"]:
        print(f"  fewer than the {summary['wanted']} wanted: not enough unique inputs", file=out)
    edges = ", ".join(f"{k} {v}" for k, v in sorted(summary["edge_cases"].items())) or "none"
    print(f"  edge cases: {edges}", file=out)
    columns: list[Column | str] = [
        "route",
        "task",
        "length",
        Column("traffic", right=True),
        Column("items", right=True),
    ]
    rows = [
        (s["route"], s["task"][:16], s["length"], f"{s['traffic_share']:.1%}", s["items"])
        for s in summary["strata"]
    ]
    print_table(columns, rows, out, indent=2)
