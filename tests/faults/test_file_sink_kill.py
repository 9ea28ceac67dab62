"""A process SIGKILLed while its file sink writes large records: after a restart every
record stands on a line of its own (a torn fragment is ended and counted, never glued to
the next record)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson

from shadoweval.config.proxy import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks import FileSink

WRITER = """
import asyncio, sys
from shadoweval.config.proxy import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks import FileSink

async def main() -> None:
    sink = FileSink(FileSinkConfig(path=sys.argv[1], flush_interval_s=0.01), Metrics())
    await sink.start()
    i = 0
    while True:  # until killed: 2 MB records, so the kill often lands inside a write
        if sink.put({"i": i, "pad": "x" * 2_000_000}):
            i += 1
        await asyncio.sleep(0)

asyncio.run(main())
"""


async def test_a_kill_mid_write_never_glues_two_records(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path))
    try:
        while not path.exists() or path.stat().st_size < 6_000_000:  # a few records in
            assert proc.returncode is None, "the writer died on its own"
            await asyncio.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    torn_before = not path.read_bytes().endswith(b"\n")

    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    sink.put({"i": "after restart"})
    await sink.close(5)

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a newline
    records = []
    for n, line in enumerate(lines[:-1]):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            assert torn_before and n == len(lines) - 3  # only the fragment, just before ours
    assert records[-1] == {"i": "after restart"}
    assert [r["i"] for r in records[:-1]] == list(range(len(records) - 1))
    torn = m.registry.get_sample_value("shadoweval_sink_torn_lines_total", {"sink": "file"})
    assert torn == (1 if torn_before else 0)
