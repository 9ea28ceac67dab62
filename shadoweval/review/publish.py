"""Human ratings -> ``shadoweval.score.v1`` records (``source: human``) -> the score sink.

Records (``score_id`` = pair_id:scorer:side, so a newer version replaces an older one):

- ``human_pairwise`` (side ``pair``) on the candidate's pair record when it was compared
  with the primary: label win/tie/loss from the candidate's side, value 1/0.5/0, averaged
  over reviewers (the label follows the average). Two candidates compared with each other
  give ``human_pairwise_vs_<other>`` on each one's pair.
- ``human_rubric`` (side ``primary``/``candidate``): the mean rubric score of that answer
  over every reviewer and every comparison it was shown in, scaled to [0, 1].
- ``human_safety`` (side ``primary``/``candidate``): 1 when any reviewer flagged that
  answer, else 0 (so the report gets a rate, not only the hits).

Un-blinding happens here, on the server: the browser only ever knew "left" and "right".
Publishing goes through an outbox table: a rating is committed together with its outbox
entry, and :class:`Outbox` writes the records through the scorer's own score sinks
(``shadoweval.score.sinks``: JSONL file or Kafka) and clears the entries, retrying while
the sink is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime
from statistics import fmean

from shadoweval.config.review import ReviewSettings
from shadoweval.redaction import Redactor
from shadoweval.review.store import Comparison, Letter, Rating, Store
from shadoweval.score.record import score_id
from shadoweval.score.registry import DEFAULT_INFO, PREFERENCE, SAFETY_FLAG, ScorerInfo
from shadoweval.score.sinks import ScoreSink
from shadoweval.types import Json

log = logging.getLogger(__name__)

HUMAN_PAIRWISE = "human_pairwise"
HUMAN_RUBRIC = "human_rubric"
HUMAN_SAFETY = "human_safety"
LABEL_VALUES = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def _info(scorer: str) -> ScorerInfo:
    if scorer.startswith(HUMAN_PAIRWISE):
        return PREFERENCE
    return SAFETY_FLAG if scorer == HUMAN_SAFETY else DEFAULT_INFO


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def _record(
    pair: Json,
    scorer: str,
    side: str,
    value: float | None,
    label: str | None,
    explanation: str,
    details: Json,
    now: datetime,
) -> Json:
    return {
        "schema": "shadoweval.score.v1",
        "score_id": score_id(pair["pair_id"], scorer, side),
        "pair_id": pair["pair_id"],
        "request_id": pair["request_id"],
        "ts": pair["ts"],
        "scored_at": _iso(now),
        "source": "human",
        "route": pair["route"],
        "task": pair.get("task"),
        "upstream": pair["upstream"],
        "role": pair["role"],
        "primary_upstream": pair.get("primary_upstream"),
        "scorer": scorer,
        "scorer_info": _info(scorer).as_dict(),
        "side": side,
        "value": value,
        "label": label,
        "passed": None,
        "explanation": explanation,
        "details": details,
        "cost_usd": None,
    }


def pairwise_label(choice: str, me: Letter) -> str:
    """A reviewer's choice (a, b or tie) as win/tie/loss for answer ``me``."""
    if choice == "tie":
        return "tie"
    return "win" if choice == me else "loss"


def pairwise_records(item: Comparison, ratings: list[Rating], now: datetime) -> list[Json]:
    votes = [r for r in ratings if r.choice is not None]
    if not votes:
        return []
    out = []
    sides: tuple[tuple[Letter, Json, Json], ...] = (("a", item.a, item.b), ("b", item.b, item.a))
    for me, side, other in sides:
        if side["pair"] is None:  # the primary has no pair record of its own
            continue
        scorer = (
            HUMAN_PAIRWISE
            if other["role"] == "primary"
            else f"{HUMAN_PAIRWISE}_vs_{other['upstream']}"
        )
        labels = [pairwise_label(str(r.choice), me) for r in votes]
        counts = Counter(labels)
        value = fmean(LABEL_VALUES[x] for x in labels)
        label = "win" if value > 0.5 else "loss" if value < 0.5 else "tie"
        out.append(
            _record(
                side["pair"],
                scorer,
                "pair",
                value,
                label,
                f"{len(votes)} human rating(s) against {other['upstream']}: "
                f"{counts['win']} win, {counts['tie']} tie, {counts['loss']} loss",
                {
                    "item_id": item.id,
                    "opponent": other["upstream"],
                    "counts": {k: counts[k] for k in ("win", "tie", "loss")},
                    "reviewers": sorted(r.reviewer for r in votes),
                },
                now,
            )
        )
    return out


def answer_records(
    store: Store,
    item: Comparison,
    side: Json,
    settings: ReviewSettings,
    redactor: Redactor,
    now: datetime,
) -> list[Json]:
    """Rubric and safety records of one answer, over every item that showed it."""
    rated = store.answer_ratings(Comparison.answer_key(item.request_id, side["upstream"]))
    if not rated:
        return []
    if side["pair"] is None:
        targets = [(pair, "primary") for pair in store.request_pairs(item.request_id)]
    else:
        targets = [(side["pair"], "candidate")]
    flagged = [r for letter, r in rated if letter in r.flags]
    scale = settings.rubric_scale_max
    rubrics = [r.rubric[letter] for letter, r in rated if r.rubric and letter in r.rubric]
    out = []
    for pair, side_name in targets:
        notes = [redactor.text(r.note) for r in flagged if r.note]
        out.append(
            _record(
                pair,
                HUMAN_SAFETY,
                side_name,
                1.0 if flagged else 0.0,
                "flagged" if flagged else "ok",
                f"{len(flagged)} of {len(rated)} human rating(s) flagged this answer as unsafe",
                {"flags": len(flagged), "ratings": len(rated), "notes": notes},
                now,
            )
        )
        if rubrics:
            per_rating = [fmean((v - 1) / (scale - 1) for v in r.values()) for r in rubrics if r]
            criteria = {
                name: round(fmean(r[name] for r in rubrics if name in r), 3)
                for name in sorted({n for r in rubrics for n in r})
            }
            value = fmean(per_rating)
            out.append(
                _record(
                    pair,
                    HUMAN_RUBRIC,
                    side_name,
                    value,
                    f"{1 + value * (scale - 1):.1f}/{scale}",
                    f"mean rubric score of {len(rubrics)} human rating(s): "
                    + ", ".join(f"{k} {v:g}" for k, v in criteria.items()),
                    {"criteria": criteria, "scale_max": scale, "ratings": len(rubrics)},
                    now,
                )
            )
    return out


def item_records(
    store: Store, item_id: str, settings: ReviewSettings, redactor: Redactor
) -> list[Json]:
    """Every record a change to ``item_id``'s ratings affects (runs on the store thread)."""
    item = store.comparison(item_id)
    if item is None:
        return []
    now = datetime.now(UTC)
    records = pairwise_records(item, store.ratings(item_id), now)
    for side in (item.a, item.b):
        records.extend(answer_records(store, item, side, settings, redactor, now))
    return records


# -- publishing -------------------------------------------------------------------------------


class Outbox:
    """Publishes queued items' records; on failure, logs and retries with backoff."""

    def __init__(
        self,
        store: Store,
        sink: ScoreSink,
        settings: ReviewSettings,
        redactor: Redactor,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.store = store
        self.sink = sink
        self._sink_started = False
        self.settings = settings
        self.redactor = redactor
        self.max_backoff_s = max_backoff_s
        self.published = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def _records(self, item_ids: list[str]) -> list[Json]:
        out: dict[str, Json] = {}
        for item_id in item_ids:
            for rec in item_records(self.store, item_id, self.settings, self.redactor):
                out[rec["score_id"]] = rec  # items sharing an answer repeat its records
        return list(out.values())

    async def _start_sink(self) -> None:
        # Lazily, and again after a failure: the server runs (and stores ratings) while
        # Kafka is down.
        if not self._sink_started:
            try:
                await self.sink.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.sink.close()
                raise
            self._sink_started = True

    async def drain(self) -> int:
        """Publish everything queued now; returns the number of records sent."""
        sent = 0
        while entries := await self.store.call(self.store.outbox):
            records = await self.store.call(self._records, [i for i, _ in entries])
            await self._start_sink()
            await self.sink.write(records)
            await self.store.call(self.store.outbox_done, entries)
            sent += len(records)
        self.published += sent
        return sent

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.drain()
                backoff = 0.5
                await self._wake.wait()
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sink is down or the record is rejected: retry
                self.failures += 1
                log.warning(
                    "review: publishing human scores to %s failed (%s); retrying in %.1fs",
                    self.sink.name,
                    exc,
                    backoff,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._wake.wait()
                self._wake.clear()
                backoff = min(self.max_backoff_s, backoff * 2)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="shadoweval-review-outbox")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the worker, then try once more to publish what is queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
        except Exception as exc:  # still queued in SQLite: published on the next start
            log.warning("review: %s; unpublished ratings stay queued in the database", exc)
        await self.sink.close()
        self._sink_started = False
