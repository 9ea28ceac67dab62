"""JSONL file sink, the embedded default: buffered, written off the event loop, rotated by size.

Every line on disk is a whole record. A file left without a final newline (a process killed
mid-write) is terminated on open and the fragment counted; a write cut short (ENOSPC, EIO)
is truncated back to its last whole line, and only the lines that stayed are counted as
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections import deque
from pathlib import Path

import orjson

from shadoweval.config.proxy import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.types import Json

log = logging.getLogger(__name__)

# The write call the sink uses; tests replace it to simulate a full disk.
_os_write = os.write


class _WriteError(Exception):
    def __init__(self, written: int) -> None:
        super().__init__(written)
        self.written = written


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
        self._torn = metrics.sink_torn_lines.labels(self.name)
        # Set when a failed write could not be truncated back: check the tail before the next.
        self._tail_unknown = False
        self._buffered = metrics.sink_buffered.labels(self.name)
        self._write_time = metrics.sink_write_duration.labels(self.name)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._open_existing)
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
            written = await asyncio.to_thread(self._write, batch)
        except _WriteError as exc:
            written = exc.written
            log.error(
                "file sink: could not write %d of %d records to %s: %s",
                len(batch) - written,
                len(batch),
                self.path,
                exc.__cause__,
            )
        else:
            self._write_time.observe(time.perf_counter() - start)
        self._written.inc(written)
        self._failed.inc(len(batch) - written)

    def _open_existing(self) -> None:
        """Size of the file we append to; a torn last line (no final newline) is ended."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._size = 0
            return
        try:
            self._end_torn_tail(fd)
            self._size = os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _end_torn_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # The fragment stays (readers skip a line that is not JSON); the next record
            # starts on a line of its own instead of being glued to it.
            if _os_write(fd, b"\n") != 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
            self._torn.inc()
            log.warning(
                "file sink: %s ended in a torn line (an earlier process was killed "
                "mid-write); terminated it",
                self.path,
            )

    def _write(self, batch: list[bytes]) -> int:
        """Runs in a worker thread (a slow disk never stalls the event loop); returns the
        number of records written, or raises _WriteError carrying it."""
        written = 0
        chunk: list[bytes] = []
        chunk_size = 0
        for line in batch:
            if (
                self._size + chunk_size + len(line) > self._cfg.max_bytes
                and self._size + chunk_size
            ):
                written += self._append(chunk, written)
                self._rotate_or_keep()
                chunk, chunk_size = [], 0
            chunk.append(line)
            chunk_size += len(line)
        return written + self._append(chunk, written)

    def _append(self, lines: list[bytes], before: int) -> int:
        """Writes ``lines`` whole or truncates back to the last whole line; ``before`` is
        what the batch already wrote (carried by a _WriteError)."""
        if not lines:
            return 0
        data = b"".join(lines)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _WriteError(before) from exc
        try:
            if self._tail_unknown:
                try:
                    self._end_torn_tail(fd)
                except OSError as exc:
                    raise _WriteError(before) from exc
                self._tail_unknown = False
            start = os.fstat(fd).st_size
            view = memoryview(data)
            done = 0
            try:
                while done < len(data):  # os.write may write less than asked
                    n = _os_write(fd, view[done:])
                    if n == 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += n
                os.fsync(fd)
            except OSError as exc:
                kept = self._cut_back(fd, start, lines, done)
                raise _WriteError(before + kept) from exc
            self._size = start + len(data)
            return len(lines)
        finally:
            os.close(fd)

    def _cut_back(self, fd: int, start: int, lines: list[bytes], done: int) -> int:
        """After a failed write of ``done`` bytes: keep the whole lines among them, drop the
        rest. Returns the lines kept (0 when the data may not have reached the disk)."""
        kept = whole = 0
        for line in lines:
            if whole + len(line) > done:
                break
            whole += len(line)
            kept += 1
        try:
            os.ftruncate(fd, start + whole)
            os.fsync(fd)
        except OSError:
            # Not even the truncation worked: nothing is known to be durable, and the
            # next write checks the tail first.
            self._tail_unknown = True
            return 0
        self._size = start + whole
        return kept

    def _rotate_or_keep(self) -> None:
        try:
            self._rotate()
        except OSError as exc:
            # Losing records to a failed rename would be worse than a file over max_bytes.
            log.error("file sink: could not rotate %s (%s); appending to it", self.path, exc)

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
