"""`shadoweval archive`: JSONL into date-partitioned Parquet, idempotent, read back exactly."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.archive.layout import iter_parquet, read_records
from shadoweval.cli import main
from shadoweval.testing.synthetic import Upstream, generate

pytest.importorskip("duckdb")


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # 2000 requests 90 s apart from 09:00: parts of three days, two candidates.
    return generate(
        Upstream("prod", role="primary"),
        [Upstream("cand", accuracy=0.7), Upstream("ctl", role="control")],
        2000,
        spacing_s=90,
        per_side=("exact",),
        pair_scorers=("similarity",),
    )


def _write(path: Path, records: list[dict[str, Any]], extra: bytes = b"") -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + extra)
    return str(path)


def _rows(arch: Path, kind: str) -> list[dict[str, Any]]:
    return list(iter_parquet(arch, kind))  # type: ignore[arg-type]


def _report(tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    code = main(["report", *args, "--json", str(out), "--quiet"])
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    assert code == (1 if report["gate"] == "fail" else 0)
    report["exit"] = code
    del report["generated_at"], report["inputs"]  # file names and the clock
    return report


def test_round_trip_gives_the_same_report(tmp_path: Path) -> None:
    pairs, scores = _records()
    pf = _write(tmp_path / "pairs.jsonl", pairs)
    sf = _write(tmp_path / "scores.jsonl", scores)
    arch = tmp_path / "arch"
    assert main(["archive", "-q", "-o", str(arch), "--pairs", pf, "--scores", sf]) == 0

    dates = sorted(p.name for p in (arch / "pairs").iterdir())
    assert dates == ["date=2026-01-05", "date=2026-01-06", "date=2026-01-07"]
    assert sorted(p.name for p in (arch / "scores").iterdir()) == dates
    # The records come back as the JSONL lines held them, in (ts, pair_id) order.
    assert _rows(arch, "pairs") == sorted(pairs, key=lambda p: (p["ts"], p["pair_id"]))
    key = lambda s: (s["pair_id"], s["scorer"], s["side"])  # noqa: E731
    assert sorted(_rows(arch, "scores"), key=key) == sorted(scores, key=key)

    from_jsonl = _report(tmp_path, "jsonl", pf, "--scores", sf)
    assert _report(tmp_path, "dir", str(arch)) == from_jsonl  # scores found beside the pairs
    assert _report(tmp_path, "explicit", str(arch), "--scores", str(arch / "scores")) == from_jsonl
    # A URL goes to DuckDB as it is (s3:// with httpfs; file:// runs offline).
    assert _report(tmp_path, "url", f"file://{arch}") == from_jsonl
    one_day = _report(tmp_path, "glob", str(arch / "pairs" / "date=2026-01-06" / "*.parquet"))
    assert one_day["candidates"][0]["pairs"] == 960  # 24 h of 90 s spacing, no scores given


def test_rearchiving_is_idempotent_and_later_records_win(tmp_path: Path) -> None:
    pairs, scores = _records()
    arch = tmp_path / "arch"
    first = _write(tmp_path / "a.jsonl", pairs[:2400])
    second = _write(tmp_path / "b.jsonl", pairs[2000:])  # overlaps the first
    for path in (first, first, second, second):
        assert main(["archive", "-q", "-o", str(arch), "--pairs", path]) == 0
    got = _rows(arch, "pairs")
    assert len(got) == len(pairs)
    assert {p["pair_id"] for p in got} == {p["pair_id"] for p in pairs}
    assert len(glob.glob(str(arch / "pairs" / "*" / "*.parquet"))) == 3  # one file a day
    assert [p.name for p in arch.glob(".*")] == [".lock"]  # no staging, spool or spill left

    # A re-score replaces: the later record of a (pair, scorer, side) is the one kept.
    rescored = {**scores[0], "value": 1.0 - scores[0]["value"], "explanation": "rescored"}
    sf = _write(tmp_path / "s.jsonl", scores)
    again = _write(tmp_path / "s2.jsonl", [rescored])
    assert main(["archive", "-q", "-o", str(arch), "--scores", sf, again]) == 0
    assert main(["archive", "-q", "-o", str(arch), "--scores", again]) == 0
    kept = [s for s in _rows(arch, "scores") if s["score_id"] == scores[0]["score_id"]]
    assert kept == [rescored]
    assert len(_rows(arch, "scores")) == len(scores)


def test_bad_lines_are_counted_and_the_readers_take_archives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs, _ = _records()
    pf = _write(tmp_path / "pairs.jsonl", pairs[:50], b'not json\n[1]\n{"schema": "x"}\n')
    arch = tmp_path / "arch"
    assert main(["archive", "-o", str(arch), "--pairs", pf]) == 0
    err = capsys.readouterr().err
    assert "pairs: skipped 2: invalid JSON line or not an object" in err
    assert "pairs: skipped 1: not a shadoweval.pair.v1 record" in err
    assert "pairs: 50 records read" in err
    from collections import Counter

    skipped: Counter[str] = Counter()
    assert list(read_records([arch, pf], "pairs", skipped))[:50] == pairs[:50]
    assert skipped["invalid JSON line"] == 1

    out = tmp_path / "eval.jsonl"
    assert main(["dataset", "build", str(arch), "--size", "5", "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 5

    from shadoweval.config.review import ReviewConfig
    from shadoweval.review.command import import_inputs
    from shadoweval.review.store import Store

    store = Store(str(tmp_path / "review.sqlite"))
    try:
        from_archive = import_inputs(store, ReviewConfig(), [arch], [])
    finally:
        store.close()
    store = Store(str(tmp_path / "review2.sqlite"))
    try:
        from_jsonl = import_inputs(
            store, ReviewConfig(), [_write(tmp_path / "r.jsonl", pairs[:50])], []
        )
    finally:
        store.close()
    assert from_archive == from_jsonl and from_archive[0] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "missing.jsonl"], "archive: no such file: missing.jsonl"),
        ([], "archive: give --pairs/--scores files"),
        (["--bootstrap", "localhost:9092"], "archive: --from is required with Kafka"),
        (["--pairs", "PAIRS", "--from", "1h"], "archive: --from/--to select a Kafka window"),
        (["--bootstrap", "nohost", "--from", "1h"], "archive: kafka.bootstrap_servers"),
        (["--bootstrap", "localhost:9092", "--from", "soon"], "archive: --from/--to: 'soon'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    pf = _write(tmp_path / "p.jsonl", [])
    args = [pf if a == "PAIRS" else a for a in args]
    assert main(["archive", "-o", str(tmp_path / "arch"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shadoweval: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_one_writer_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl

    arch = tmp_path / "arch"
    arch.mkdir()
    pf = _write(tmp_path / "p.jsonl", _records()[0][:10])
    with open(arch / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["archive", "-q", "-o", str(arch), "--pairs", pf]) == 2
    assert capsys.readouterr().err.strip() == (
        f"shadoweval: archive: another archive command is writing {arch}"
    )
    assert main(["archive", "-q", "-o", str(arch), "--pairs", pf]) == 0


def test_report_names_a_glob_that_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nothing" / "*.parquet"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
