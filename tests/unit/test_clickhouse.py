"""deploy/clickhouse: the DDL and the report's core queries in ClickHouse's own dialect, run
on its embedded engine (chdb) against synthetic records and compared with the report.

The Kafka engine needs a broker and a server: its statements are parsed (EXPLAIN AST), then
run with the queue tables as Null tables, so the materialized views are exercised by
inserting the records into the queues as the Kafka engine would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.testing.synthetic import Upstream, generate

chdb = pytest.importorskip("chdb", reason="chdb (ClickHouse embedded) is not installed")
from chdb import session as chs  # noqa: E402

DDL = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"
TASKS = ("simple", "reasoning", "code")


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def queries() -> dict[str, str]:
    text = (DDL / "03_queries.sql").read_text()
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.M)[1:]
    return {name: _statements(sql)[0] for name, sql in zip(parts[::2], parts[1::2], strict=True)}


def _rows(sess: Any, sql: str) -> list[dict[str, Any]]:
    out = sess.query(sql, "JSONEachRow").bytes()
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("clickhouse")
    pairs, scores = generate(
        Upstream("prod", role="primary", cost_usd=0.002),
        [
            Upstream("cand", accuracy=0.75, error_rate=0.05, latency_s=0.8, cost_usd=0.0005),
            Upstream("ctl", role="control", cost_usd=0.002),
        ],
        1500,
        spacing_s=120,
        per_side=("exact",),
        pair_scorers=("similarity",),
    )
    for rec in (*pairs, *scores):
        rec["task"] = TASKS[int(str(rec["request_id"])[3:]) % 3]
    pf, sf = tmp / "pairs.jsonl", tmp / "scores.jsonl"
    pf.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    # A re-delivered pair and a re-sent score: ReplacingMergeTree and FINAL keep one.
    sf.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scores))
    (tmp / "again.jsonl").write_bytes(orjson.dumps(pairs[0]) + b"\n")
    return {"tmp": tmp, "pairs": pf, "scores": sf, "again": tmp / "again.jsonl"}


@pytest.fixture(scope="module")
def sess(data: dict[str, Any]) -> Any:
    s = chs.Session(str(data["tmp"] / "chdb"))
    for stmt in _statements((DDL / "01_tables.sql").read_text()):
        s.query(stmt)
    for stmt in _statements((DDL / "02_kafka.sql").read_text()):
        ast = s.query(f"EXPLAIN AST {stmt}", "TSV").bytes().decode()
        assert ast.startswith("CreateQuery"), ast  # parses in ClickHouse's own grammar
        s.query(re.sub(r"ENGINE = Kafka\s+SETTINGS.*", "ENGINE = Null", stmt, flags=re.S))
    for table, path in (("pairs", "pairs"), ("scores", "scores"), ("pairs", "again")):
        s.query(
            f"INSERT INTO shadoweval_{table}_queue SELECT * FROM file('{data[path]}', JSONAsString)"
        )
    yield s
    s.close()


def _report(data: dict[str, Any], *extra: str) -> dict[str, Any]:
    out = data["tmp"] / "report.json"
    main(
        ["report", str(data["pairs"]), "-s", str(data["scores"]), "--json", str(out), "-q", *extra]
    )
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    return {c["upstream"]: c for c in report["candidates"]}


def test_the_views_type_every_record(sess: Any) -> None:
    (counts,) = _rows(
        sess,
        "SELECT (SELECT count() FROM shadoweval_pairs FINAL) AS pairs, "
        "(SELECT count() FROM shadoweval_scores FINAL) AS scores, "
        "(SELECT count() FROM shadoweval_pairs WHERE isNull(latency_s)) AS untyped",
    )
    assert counts == {"pairs": 3000, "scores": 9000, "untyped": 0}


def test_per_candidate_matches_the_report(sess: Any, data: dict[str, Any]) -> None:
    report = _report(data)
    rows = {r["upstream"]: r for r in _rows(sess, queries()["per_candidate"])}
    assert set(rows) == {"cand", "ctl"}
    assert set(report) == {"cand"}  # the control's own figures are the report's noise floor
    for name, cand in report.items():
        ops, row = cand["operations"], rows[name]
        assert row["pairs"] == ops["pairs"] == 1500
        assert row["failure_rate"] == pytest.approx(ops["failure"]["value"])
        assert row["primary_failure_rate"] == pytest.approx(ops["primary_failure"]["value"])
        pct = ops["latency_percentiles"]["candidate"]
        assert row["latency_p50_p95_p99"] == pytest.approx([pct[50], pct[95], pct[99]])
        cost = ops["cost"]["candidate_per_request"]["value"]
        assert row["cost_per_request"] == pytest.approx(cost)


def test_quality_matches_the_report(sess: Any, data: dict[str, Any]) -> None:
    report = _report(data)
    rows = {(r["upstream"], r["scorer"]): r for r in _rows(sess, queries()["quality_per_scorer"])}
    pair_rows = {
        (r["upstream"], r["scorer"]): r for r in _rows(sess, queries()["pair_quality_per_scorer"])
    }
    for name, cand in report.items():
        quality = {q["scorer"]: q for q in cand["quality"]}
        exact = quality["exact"]
        row = rows[(name, "exact")]
        assert row["n_paired"] == exact["n_paired"]
        assert row["candidate_mean"] == pytest.approx(exact["candidate_mean"]["value"])
        assert row["baseline_mean"] == pytest.approx(exact["baseline_mean"]["value"])
        assert row["difference"] == pytest.approx(exact["difference"]["value"])
        sim = quality["similarity"]
        assert pair_rows[(name, "similarity")]["n"] == sim["n"]


def test_by_task_and_by_day_match_the_report(sess: Any, data: dict[str, Any]) -> None:
    by_task = {
        (r["task"], r["upstream"]): r for r in _rows(sess, queries()["per_candidate_by_task"])
    }
    for task in TASKS:
        report = _report(data, "--task", task)
        for name, cand in report.items():
            row, ops = by_task[(task, name)], cand["operations"]
            assert row["pairs"] == ops["pairs"]
            assert row["failure_rate"] == pytest.approx(ops["failure"]["value"])
            pct = ops["latency_percentiles"]["candidate"]
            assert row["latency_p50_p95_p99"] == pytest.approx([pct[50], pct[95], pct[99]])
    days = _rows(sess, queries()["per_candidate_by_day"])
    assert sorted({d["date"] for d in days}) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert sum(d["pairs"] for d in days if d["upstream"] == "cand") == 1500
    for day in _rows(sess, queries()["quality_by_day"]):
        assert 0.0 <= day["candidate_mean"] <= 1.0


def test_the_same_query_reads_the_parquet_archive(sess: Any, data: dict[str, Any]) -> None:
    arch = data["tmp"] / "arch"
    pf, sf = str(data["pairs"]), str(data["scores"])
    assert main(["archive", "-q", "-o", str(arch), "--pairs", pf, "--scores", sf]) == 0
    sql = queries()["per_candidate"].replace(
        "shadoweval_pairs FINAL", f"file('{arch}/pairs/*/*.parquet', Parquet)"
    )
    assert _rounded(_rows(sess, sql)) == _rounded(_rows(sess, queries()["per_candidate"]))


def _rounded(value: Any) -> Any:
    """Sums in another order differ in the last bits."""
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
