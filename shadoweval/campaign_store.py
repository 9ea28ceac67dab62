"""The campaigns' counters kept in a file across restarts (``campaign_state.path``).

Without it a restart starts every candidate's day of spend, its ``max_requests`` and
``max_pairs`` counts and the moment a ``schedule.duration`` counts from afresh: a crash loop
could then spend a daily cap many times over. The process that owns the budgets (the proxy,
or its shadow worker) restores them on start, saves them every ``interval_s`` and once more
when it stops. A candidate is matched by name; a saved day that is over is rolled over as
it would have been in memory. Shadows in flight at a crash are not in the file (at most
``concurrency`` answers per candidate). The file is small JSON, written whole to a
temporary name and renamed, so a reader never sees it torn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from shadoweval.campaign import Campaign

log = logging.getLogger(__name__)

SCHEMA = "shadoweval.campaign_state.v1"


def _restore(campaign: Campaign, saved: Any) -> bool:
    try:
        campaign.restore(
            taken_on=float(saved["taken_on"]),
            requests=int(saved["requests"]),
            pairs=int(saved["pairs"]),
            spend_day=int(saved["spend_day"]),
            spent_usd=float(saved["spent_usd"]),
            pairs_day=int(saved["pairs_day"]),
            pairs_today=int(saved["pairs_today"]),
        )
    except (KeyError, TypeError, ValueError):
        return False
    return True


class CampaignStore:
    """Restores, and keeps saving, the counters of the campaigns ``campaigns()`` returns
    (called each time: a reload may have changed them)."""

    def __init__(
        self, path: str, campaigns: Callable[[], Iterable[Campaign]], interval_s: float
    ) -> None:
        self.path = Path(path)
        self._campaigns = campaigns
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._lock = threading.Lock()
        self._taken = 0  # snapshots taken, and the newest written
        self._written = 0

    def restore(self) -> list[str]:
        """Counters from the file for the campaigns it knows; the names restored. A missing
        file is a first start; an unreadable one is logged and ignored (the counters start
        from zero, as without the file)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("campaign_state.path %s: not read (%s); counters start from zero",
                        self.path, exc)  # fmt: skip
            return []
        saved = data.get("candidates") if isinstance(data, dict) else None
        if not isinstance(saved, dict) or data.get("schema") != SCHEMA:
            log.warning("campaign_state.path %s: not a %s file; counters start from zero",
                        self.path, SCHEMA)  # fmt: skip
            return []
        restored = [
            c.name for c in self._campaigns() if c.name in saved and _restore(c, saved[c.name])
        ]
        if restored:
            log.info("campaign counters restored from %s: %s", self.path, ", ".join(restored))
        return restored

    def save(self) -> None:
        """The counters now, written at once (the loop's thread)."""
        self._write(*self._snapshot())

    def _snapshot(self) -> tuple[int, bytes]:
        self._taken += 1
        body = {"schema": SCHEMA, "candidates": {c.name: c.counters() for c in self._campaigns()}}
        return self._taken, orjson.dumps(body)

    def _write(self, seq: int, body: bytes) -> None:
        # A periodic write still running in its thread when the final one starts: the lock
        # orders them, and an older snapshot never replaces a newer one.
        with self._lock:
            if seq <= self._written:
                return
            self._write_file(body)
            self._written = seq

    def _write_file(self, body: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # as the file sink does
            tmp.write_bytes(body)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failing:  # once per failing streak, not every interval
                log.warning("campaign_state.path %s: not saved (%s)", self.path, exc)
            self._failing = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="campaign-state")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            # Taken on the loop (consistent counters), written in a thread (a disk stall
            # never holds the loop).
            await asyncio.to_thread(self._write, *self._snapshot())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._write, *self._snapshot())
