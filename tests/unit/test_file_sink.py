from pathlib import Path

import orjson

from shadoweval.config import FileSink as FileSinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks import FileSink


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
