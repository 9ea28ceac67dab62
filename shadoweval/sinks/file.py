"""JSONL file sink, the embedded default: buffered, written off the event loop, rotated by size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from pathlib import Path

import orjson

from shadoweval.config import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.types import Json

log = logging.getLogger(__name__)


class FileSink:
    def __init__(self, cfg: FileSinkConfig, metrics: Metrics) -> None:
        self.name = "file"
        self.path = Path(cfg.path)
        self._cfg = cfg
        self._buffer: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._size = 0
        self._written = metrics.sink_records.labels(self.name, "written")
        self._dropped = metrics.sink_records.labels(self.name, "dropped")
        self._failed = metrics.sink_records.labels(self.name, "failed")
        self._buffered = metrics.sink_buffered.labels(self.name)
        self._write_time = metrics.sink_write_duration.labels(self.name)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = self.path.stat().st_size if self.path.exists() else 0
        self._task = asyncio.create_task(self._run(), name="shadoweval-file-sink")

    def put(self, record: Json, key: bytes | None = None) -> bool:
        if self._closing or len(self._buffer) >= self._cfg.buffer_records:
            self._dropped.inc()
            return False
        self._buffer.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self._buffered.inc()
        if len(self._buffer) >= 512:
            self._wake.set()
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cfg.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if self._closing and not self._buffer:
                return

    async def _flush(self) -> None:
        if not self._buffer:
            return
        batch = list(self._buffer)
        self._buffer.clear()
        self._buffered.dec(len(batch))
        start = time.perf_counter()
        try:
            await asyncio.to_thread(self._write, batch)
        except OSError as exc:
            self._failed.inc(len(batch))
            log.error("file sink: could not write %d records to %s: %s", len(batch), self.path, exc)
            return
        self._write_time.observe(time.perf_counter() - start)
        self._written.inc(len(batch))

    def _write(self, batch: list[bytes]) -> None:
        # Runs in a worker thread: a slow disk never stalls the event loop.
        chunk: list[bytes] = []
        chunk_size = 0
        for line in batch:
            if (
                self._size + chunk_size + len(line) > self._cfg.max_bytes
                and self._size + chunk_size
            ):
                self._append(chunk)
                self._rotate()
                chunk, chunk_size = [], 0
            chunk.append(line)
            chunk_size += len(line)
        self._append(chunk)

    def _append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        with open(self.path, "ab") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        self._size += sum(map(len, lines))

    def _rotate(self) -> None:
        """pairs.jsonl -> pairs.jsonl.1 -> ... -> pairs.jsonl.N (the oldest is deleted)."""
        backups = self._cfg.backups
        if backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._size = 0

    async def close(self, timeout: float) -> None:
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(max(timeout, 0.1)):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            lost = len(self._buffer)
            self._dropped.inc(lost)
            log.error("file sink: %d records not written within %.1fs of shutdown", lost, timeout)
