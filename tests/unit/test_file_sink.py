import errno
import os
from pathlib import Path

import orjson
import pytest

from shadoweval.config.proxy import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks import FileSink
from shadoweval.sinks import file as file_module


def value(m: Metrics, outcome: str) -> float:
    v = m.registry.get_sample_value(
        "shadoweval_sink_records_total", {"sink": "file", "outcome": outcome}
    )
    return v or 0.0


async def test_writes_and_flushes_on_close(tmp_path: Path) -> None:
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(tmp_path / "p.jsonl"), flush_interval_s=60), m)
    await sink.start()
    for i in range(10):
        assert sink.put({"i": i})
    await sink.close(5)
    lines = (tmp_path / "p.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["i"] for x in lines] == list(range(10))
    assert value(m, "written") == 10
    assert not sink.put({"late": True})  # closed: counted as a drop
    assert value(m, "dropped") == 1


async def test_rotation_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    sink = FileSink(
        FileSinkConfig(path=str(path), max_bytes=1024, backups=2, flush_interval_s=60), Metrics()
    )
    await sink.start()
    for i in range(100):
        sink.put({"i": i, "pad": "x" * 80})
    await sink.close(5)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    newest = [orjson.loads(x)["i"] for x in path.read_bytes().splitlines()]
    assert newest[-1] == 99


async def test_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    m = Metrics()
    sink = FileSink(
        FileSinkConfig(path=str(tmp_path / "p.jsonl"), buffer_records=3, flush_interval_s=60), m
    )
    await sink.start()
    results = [sink.put({"i": i}) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert value(m, "dropped") == 2
    await sink.close(5)
    assert len((tmp_path / "p.jsonl").read_bytes().splitlines()) == 3


def readable(path: Path) -> list[int]:
    """Record numbers of the lines that parse; the test fails on any other line."""
    return [orjson.loads(line)["i"] for line in path.read_bytes().splitlines()]


def torn(m: Metrics) -> float:
    return m.registry.get_sample_value("shadoweval_sink_torn_lines_total", {"sink": "file"}) or 0


class DiskFullAfter:
    """os.write that accepts ``budget`` bytes in total, then fails as a full disk does: a
    short write first, ENOSPC on the next call."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[: self.budget]))
        self.budget -= n
        return n


async def test_a_torn_tail_from_a_killed_run_is_ended_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"i": 0}\n{"i": 1, "cut off he')
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    sink.put({"i": 2})
    await sink.close(5)
    lines = path.read_bytes().splitlines()
    assert lines[1] == b'{"i": 1, "cut off he'  # the fragment, alone on its line
    assert [orjson.loads(x)["i"] for x in (lines[0], lines[2])] == [0, 2]
    assert torn(m) == 1
    assert value(m, "written") == 1


async def test_a_whole_file_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"i": 0}\n')
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    await sink.close(5)
    assert path.read_bytes() == b'{"i": 0}\n'
    assert torn(m) == 0


@pytest.mark.parametrize("budget", [0, 1, 25, 61, 200])
async def test_enospc_leaves_whole_lines_and_counts_what_is_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    path = tmp_path / "p.jsonl"
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    monkeypatch.setattr(file_module, "_os_write", DiskFullAfter(budget))
    records = [{"i": i, "pad": "x" * 10} for i in range(20)]
    for record in records:
        sink.put(record)
    await sink.close(5)
    sizes = [len(orjson.dumps(r)) + 1 for r in records]
    fitting = sum(1 for n in range(1, 21) if sum(sizes[:n]) <= budget)
    on_disk = readable(path) if path.exists() else []
    assert on_disk == list(range(len(on_disk)))
    assert value(m, "written") == len(on_disk) == fitting
    assert value(m, "failed") == 20 - len(on_disk)


async def test_after_enospc_the_next_flush_appends_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.jsonl"
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    monkeypatch.setattr(file_module, "_os_write", DiskFullAfter(45))
    for i in range(3):
        sink.put({"i": i, "pad": "x" * 10})
    await sink._flush()
    monkeypatch.setattr(file_module, "_os_write", os.write)  # space freed
    for i in range(3, 5):
        sink.put({"i": i, "pad": "x" * 10})
    await sink.close(5)
    assert readable(path) == [0, 3, 4]
    assert (value(m, "written"), value(m, "failed")) == (3, 2)


async def test_a_failed_truncation_is_repaired_before_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.jsonl"
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), flush_interval_s=60), m)
    await sink.start()
    monkeypatch.setattr(file_module, "_os_write", DiskFullAfter(45))

    def no_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "ftruncate", no_truncate)
    for i in range(2):
        sink.put({"i": i, "pad": "x" * 10})
    await sink._flush()
    assert (value(m, "written"), value(m, "failed")) == (0, 2)  # nothing known durable
    monkeypatch.undo()
    sink.put({"i": 2, "pad": "x" * 10})
    await sink.close(5)
    lines = path.read_bytes().splitlines()
    assert orjson.loads(lines[-1])["i"] == 2  # on a line of its own
    assert torn(m) == 1


async def test_a_failed_rotation_keeps_appending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.jsonl"
    m = Metrics()
    sink = FileSink(FileSinkConfig(path=str(path), max_bytes=1024, flush_interval_s=60), m)
    await sink.start()

    def no_rotate() -> None:
        raise OSError(errno.EACCES, "permission denied")

    monkeypatch.setattr(sink, "_rotate", no_rotate)
    for i in range(100):
        sink.put({"i": i, "pad": "x" * 80})
    await sink.close(5)
    assert readable(path) == list(range(100))
    assert value(m, "written") == 100
