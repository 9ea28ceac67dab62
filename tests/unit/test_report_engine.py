"""The report's engine: the DuckDB score loader and the Poisson bootstrap of mean statistics
give the figures the Python loader and the index bootstrap give, within resampling noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from shadoweval import stats
from shadoweval.config.proxy import Pricing
from shadoweval.config.report import DecisionRules, Report
from shadoweval.pricing import PriceTable
from shadoweval.report import build_report, load
from shadoweval.report.load import ScoreRow, ScoreTable, score_kinds
from shadoweval.report.pairs import PairStore
from shadoweval.testing.synthetic import Upstream, generate

pytest.importorskip("duckdb")

Json = dict[str, Any]
PRIMARY = Upstream("prod", role="primary", model="prod-model", accuracy=0.8, cost_usd=0.002)
OTHERS = [
    Upstream("prod-again", role="control", model="prod-model", accuracy=0.8, cost_usd=0.002),
    Upstream("worse", accuracy=0.6, latency_s=0.4, cost_usd=0.001, flags={"toxicity": 0.05}),
    Upstream("same", accuracy=0.8, latency_s=0.9, cost_usd=0.003, error_rate=0.02),
]
RULES = DecisionRules(quality_max_drop=0.05, cost_max_ratio=2.0, latency_max_ratio=1.5)
# Fields that are read off the intervals (p-values, sentences) move with them.
FROM_INTERVALS = {
    *("p_worse", "p_better", "p_fail", "line", "lines", "detail", "secondary", "sentence"),
    "generated_at",
}


def _write(path: Path, records: list[Json]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _inputs(tmp_path: Path, n: int = 400) -> tuple[Path, Path, list[Json], list[Json]]:
    pairs, scores = generate(
        PRIMARY, OTHERS, n, seed=3, per_side=("exact",), pair_scorers=("semantic",), judge=True
    )
    rescored = {**scores[5], "value": 1.0 - scores[5]["value"]}
    extra = [
        rescored,  # a re-score replaces
        {**scores[6], "value": 3.0},  # outside [0, 1]: skipped, the first one stays
        {**scores[7], "pair_id": "nowhere"},
        {**scores[8], "scorer": 7},
        {"schema": "other"},
        {**scores[9], "scorer_info": {"kind": "quality", "pair": "agreement"}},
    ]
    p = _write(tmp_path / "pairs.jsonl", [*pairs, pairs[0]])
    s = _write(tmp_path / "scores.jsonl", [*scores, *extra])
    return p, s, pairs, scores


def test_duckdb_loader_reads_what_the_python_loader_reads(tmp_path: Path) -> None:
    p, s, _, _ = _inputs(tmp_path)
    py = load([p], [s])
    duck = load([p], [s], engine="duckdb")
    assert list(duck.pairs) == list(py.pairs)
    assert duck.scores == py.scores
    assert duck.scorer_info == py.scorer_info
    assert duck.skipped == py.skipped
    assert py.skipped["score value outside [0, 1]"] == 1
    assert py.skipped["score of a pair not in the report"] == 1
    assert py.skipped["malformed score record"] == 1


def test_a_file_with_bad_lines_is_read_by_the_python_reader(tmp_path: Path) -> None:
    p, s, _, _ = _inputs(tmp_path, n=20)
    with open(s, "ab") as fh:
        fh.write(b"not json\n[1]\n\n")
    duck = load([p], [s], engine="duckdb")
    assert duck.skipped == load([p], [s]).skipped
    assert duck.skipped["invalid JSON line"] == 1
    assert duck.skipped["line is not a JSON object"] == 1


def test_a_primary_side_equal_as_json_is_reused_and_one_typed_otherwise_is_not(
    tmp_path: Path,
) -> None:
    pairs, _ = generate(PRIMARY, OTHERS, 2, seed=1)
    first = [p for p in pairs if p["request_id"] == pairs[0]["request_id"]]
    assert len(first) >= 2
    # Equal under == (True == 1) but read differently: not the same primary row.
    usage = {**first[1]["primary"]["usage"], "input_tokens": True}
    first[1] = {**first[1], "primary": {**first[1]["primary"], "usage": usage}}
    first[0]["primary"]["usage"]["input_tokens"] = 1
    ds = load([_write(tmp_path / "pairs.jsonl", [first[0], first[0] | {"pair_id": "x"}, first[1]])])
    by_id = {p.pair_id: p for p in ds.pairs}
    store = ds.pairs
    assert isinstance(store, PairStore)
    row = {pid: int(store.prim_of[i]) for i, pid in enumerate(store.pair_ids)}
    assert row["x"] == row[first[0]["pair_id"]] != row[first[1]["pair_id"]]  # kept once
    assert by_id[first[0]["pair_id"]].primary.input_tokens == 1
    assert by_id[first[1]["pair_id"]].primary.input_tokens is None


@pytest.mark.parametrize("line", [b"null", b"{}", b'{"other": 1}', b'"text"'])
def test_a_line_without_a_scores_fields_counts_as_the_python_reader_counts_it(
    tmp_path: Path, line: bytes
) -> None:
    p, s, _, _ = _inputs(tmp_path, n=20)
    with open(s, "ab") as fh:
        fh.write(line + b"\n")
    duck = load([p], [s], engine="duckdb")
    py = load([p], [s])
    assert duck.skipped == py.skipped
    assert duck.scores == py.scores


@pytest.mark.parametrize(
    "change",
    [
        {"value": "0.5"},  # a number as a string: no value
        {"value": True},
        {"value": -0.0},
        {"value": 1},
        {"value": 1e-300},
        {"explanation": 'q "uoted" \\ back\nline \u00e9 \u2028'},
        {"explanation": ""},
        {"explanation": 3.5},
        {"explanation": None},
        {"label": 1},
        {"label": "w\u00efn"},
        {"scorer": 'exa"ct'},
        {"side": None},
        {"schema": "shadoweval.score.v1 "},
        {"scorer_info": None},
    ],
    ids=repr,
)
def test_every_field_type_reads_as_the_python_reader_reads_it(tmp_path: Path, change: Json) -> None:
    """The DuckDB reader types fields from their JSON text: each odd type and escape here
    gives what the Python reader gives."""
    p, s, _, scores = _inputs(tmp_path, n=20)
    with open(s, "ab") as fh:
        for rec in scores[:3]:
            fh.write(orjson.dumps({**rec, **change}) + b"\n")
    duck = load([p], [s], engine="duckdb")
    py = load([p], [s])
    assert duck.skipped == py.skipped
    assert duck.scores == py.scores
    assert duck.scorer_info == py.scorer_info


def test_an_explanation_that_is_not_a_string_is_kept_as_its_json_text(tmp_path: Path) -> None:
    """The one documented difference: the Python reader would show str() of the object."""
    p, s, _, scores = _inputs(tmp_path, n=20)
    with open(s, "ab") as fh:
        fh.write(orjson.dumps({**scores[0], "explanation": {"why": ["a", 1]}}) + b"\n")
    duck = load([p], [s], engine="duckdb")
    key = (scores[0]["pair_id"], scores[0]["scorer"], scores[0]["side"])
    assert duck.scores[key].explanation == '{"why":["a",1]}'


def _index_bootstrap(combine: stats.Statistic, *samples: Any, **kw: Any) -> list[stats.Estimate]:
    """The engine before bootstrap_means: resampled indices, then the means."""
    return stats.bootstrap(lambda *a: combine(*(x.mean(axis=1) for x in a)), *samples, **kw)


def _estimates(node: Any, path: str = "") -> dict[str, Json]:
    out: dict[str, Json] = {}
    if isinstance(node, dict):
        if {"value", "lo", "hi", "n"} <= node.keys():
            out[path] = node
        for k, v in node.items():
            if k not in FROM_INTERVALS:
                out.update(_estimates(v, f"{path}/{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.update(_estimates(v, f"{path}/{i}"))
    return out


def _leaves(node: Any, path: str = "") -> dict[str, Any]:
    """Everything but the intervals and what is read off them."""
    if isinstance(node, dict):
        if {"value", "lo", "hi", "n"} <= node.keys():
            return {f"{path}/value": node["value"], f"{path}/n": node["n"]}
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k not in FROM_INTERVALS:
                out.update(_leaves(v, f"{path}/{k}"))
        return out
    if isinstance(node, list):
        out = {}
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{path}/{i}"))
        return out
    return {path: node}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return bool(a == b)


def test_report_figures_match_the_previous_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, s, _, _ = _inputs(tmp_path, n=600)
    cfg = Report(rules=RULES, bootstrap_resamples=2000)
    prices = PriceTable(Pricing())
    new = build_report(load([p], [s], engine="duckdb"), cfg, prices)
    monkeypatch.setattr(stats, "bootstrap_means", _index_bootstrap)
    old = build_report(load([p], [s]), cfg, prices)

    old_leaves, new_leaves = _leaves(old), _leaves(new)
    assert old_leaves.keys() == new_leaves.keys()
    differ = {k for k in old_leaves if not _same(old_leaves[k], new_leaves[k])}
    # The gate and every verdict's status, point estimates and counts are the same.
    assert differ == set(), sorted(differ)

    old_est, new_est = _estimates(old), _estimates(new)
    compared = 0
    for path, o in old_est.items():
        nw = new_est[path]
        if o["lo"] is None or o["hi"] is None:
            assert nw["lo"] is None or nw["hi"] is None or o["lo"] == o["hi"], path
            continue
        width = o["hi"] - o["lo"]
        # Two bootstraps of 2000 draws: each bound moves by a few % of the width.
        for bound in ("lo", "hi"):
            assert abs(nw[bound] - o[bound]) <= 0.2 * width + 1e-12, (path, o, nw)
        compared += 1
    assert compared > 50


@pytest.mark.parametrize("clustered", [False, True])
def test_poisson_bootstrap_agrees_with_the_index_bootstrap(clustered: bool) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.lognormal(0, 0.5, n)  # continuous: every unit its own kind
    y = x * rng.lognormal(0.05, 0.2, n)
    clusters = [str(i // 6) for i in range(n)] if clustered else None

    def combine(mx: Any, my: Any) -> Any:
        return np.stack([mx - my, stats.ratio(mx, my)], axis=1)

    new = stats.bootstrap_means(combine, x, y, clusters=clusters, resamples=2000)
    old = _index_bootstrap(combine, x, y, clusters=clusters, resamples=2000)
    for a, b in zip(old, new, strict=True):
        assert a.value == pytest.approx(b.value)
        width = a.hi - a.lo
        assert abs(a.lo - b.lo) <= 0.15 * width and abs(a.hi - b.hi) <= 0.15 * width


def test_poisson_bootstrap_edge_cases() -> None:
    one = stats.bootstrap_means(lambda m: m, [0.5])[0]
    assert one.value == 0.5 and np.isnan(one.lo)
    same = stats.bootstrap_means(lambda m: m, [1.0] * 50)[0]
    assert same.value == same.lo == same.hi == 1.0
    pooled = stats.bootstrap_means(lambda m: m, [0.0, 1.0] * 500, seed=1)[0]
    assert pooled.lo < 0.5 < pooled.hi and pooled.hi - pooled.lo == pytest.approx(0.062, abs=0.01)


def test_score_table_is_a_mapping_of_the_scores() -> None:
    table = ScoreTable(["p1", "p2"])
    row = ScoreRow(1.0, None, "ok")
    table[("p1", "exact", "candidate")] = row
    table[("p2", "exact", "candidate")] = ScoreRow(1.0, None, "ok")  # shared with row
    table[("p2", "judge", "pair")] = ScoreRow(0.5, "tie", "")
    assert len(table) == 3 and table[("p2", "exact", "candidate")] is row
    assert table.get(("p1", "judge", "pair")) is None and table.get(("nope", "exact", "x")) is None
    assert set(table) == {("p1", "exact", "candidate"), ("p2", "exact", "candidate"),
                          ("p2", "judge", "pair")}  # fmt: skip
    assert score_kinds(table) == {("exact", "candidate"), ("judge", "pair")}
    del table[("p1", "exact", "candidate")]
    assert len(table) == 2 and ("p1", "exact", "candidate") not in table
    with pytest.raises(KeyError):
        table[("p3", "exact", "candidate")] = row


def test_score_table_codes_widen_past_two_bytes() -> None:
    """Codes start in two bytes; the 32,768th distinct score widens them, losing none."""
    n = 40_000
    table = ScoreTable([f"p{i}" for i in range(n)])
    rows = [ScoreRow(i / n, None, f"e{i}") for i in range(n)]
    table.assign("a", "pair", np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32), rows)
    for i in range(n):  # one at a time, as the Python reader stores them
        table[(f"p{i}", "b", "pair")] = ScoreRow(i / n, None, f"other{i}")
    for scorer in ("a", "b"):
        values = table.values_at(scorer, "pair", np.arange(n))
        assert np.array_equal(values, np.arange(n) / n)
    assert table[("p39999", "b", "pair")].explanation == "other39999" and len(table) == 2 * n


@pytest.mark.parametrize("n", [40, 5000])
def test_windowed_quantile_bootstrap_agrees_with_the_index_bootstrap(n: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.lognormal(0, 0.5, n)
    y = x * rng.lognormal(0.05, 0.2, n)
    qs = np.asarray([0.5, 0.95, 0.99])

    def stat(a: Any, b: Any) -> Any:
        qa, qb = np.quantile(a, qs, axis=1).T, np.quantile(b, qs, axis=1).T
        return np.concatenate([qa, qb, stats.ratio(qa, qb)], axis=1)

    old = stats.bootstrap(stat, x, y, resamples=2000)
    new = stats.bootstrap_quantiles(x, y, qs, resamples=2000)
    for a, b in zip(old, new, strict=True):
        assert a.value == b.value
        width = a.hi - a.lo
        assert abs(a.lo - b.lo) <= 0.2 * width and abs(a.hi - b.hi) <= 0.2 * width, (a, b)
