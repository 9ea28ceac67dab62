"""In-memory sink for tests: keeps records in a bounded list."""

from __future__ import annotations

import asyncio

from shadoweval.metrics import Metrics
from shadoweval.types import Json


class MemorySink:
    def __init__(self, max_records: int, metrics: Metrics) -> None:
        self.name = "memory"
        self.records: list[Json] = []
        self._max = max_records
        self._written = metrics.sink_records.labels(self.name, "written")
        self._dropped = metrics.sink_records.labels(self.name, "dropped")
        self._changed = asyncio.Event()

    async def start(self) -> None:
        return None

    def put(self, record: Json, key: bytes | None = None) -> bool:
        if len(self.records) >= self._max:
            self._dropped.inc()
            return False
        self.records.append(record)
        self._written.inc()
        self._changed.set()
        return True

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Json]:
        """Wait until at least ``count`` records arrived (tests)."""
        async with asyncio.timeout(timeout):
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.records

    async def close(self, timeout: float) -> None:
        return None
