"""The scorer end to end on files: scorer sets, records, metrics, resume, rotation,
at-least-once on sink failures, plugins via entry points, the admin port and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
from prometheus_client import CollectorRegistry

from shadoweval.cli import main
from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import parse_scorer
from shadoweval.metrics import ScoreMetrics
from shadoweval.score import registry
from shadoweval.score.record import score_schema
from shadoweval.score.runner import ScoreRunner
from shadoweval.score.sinks import FileScoreSink
from tests.score_helpers import pair_record
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def write_pairs(path: Path, records: list[Any], mode: str = "ab") -> None:
    with open(path, mode) as fh:
        for rec in records:
            fh.write(rec if isinstance(rec, bytes) else orjson.dumps(rec) + b"\n")


def read_scores(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"path": str(tmp_path / "pairs.jsonl"), "batch_max_records": 4},
        "sink": {"path": str(tmp_path / "scores.jsonl")},
        **extra,
    }


async def score_once(
    raw: dict[str, Any], metrics: ScoreMetrics | None = None, **kw: Any
) -> ScoreRunner:
    runner = ScoreRunner(parse_scorer(raw, environ={}), once=True, metrics=metrics, **kw)
    try:
        await runner.start()
        await runner.run()
    finally:
        await runner.stop()
    return runner


def sample_pairs() -> list[Any]:
    structured = {
        "model": "m",
        "messages": [{"role": "user", "content": "Extract"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object", "required": ["a"]}},
        },
    }
    return [
        pair_record("Paris", "Paris", pair_id="r1:cand"),
        pair_record("Paris", "I'm sorry, but I can't help with that.", pair_id="r2:cand"),
        pair_record('{"a": 1}', '{"b": 1}', pair_id="r3:cand", task="extract", request=structured),
        pair_record(None, None, pair_id="r4:cand", route="embeddings"),
        b"this line is not JSON\n",
        {"schema": "something.else"},
        pair_record("Paris", None, pair_id="r5:cand", candidate_error="http_5xx"),
        pair_record("Paris", "Paris", pair_id="r6:control", role="control"),
    ]


async def test_file_run_scores_every_pair_with_its_set(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", sample_pairs())
    raw = config(
        tmp_path,
        scorers={
            "default": ["exact", "token_f1"],
            "tasks": {"extract": ["json_valid", "json_schema"]},
        },
    )
    metrics = ScoreMetrics(CollectorRegistry())
    runner = await score_once(raw, metrics)
    scores = read_scores(tmp_path / "scores.jsonl")
    validator = jsonschema.Draft202012Validator(score_schema())
    for rec in scores:
        validator.validate(rec)
    ids = [r["score_id"] for r in scores]
    assert len(ids) == len(set(ids))
    by_pair: dict[str, set[str]] = {}
    for r in scores:
        by_pair.setdefault(r["pair_id"], set()).add(f"{r['scorer']}:{r['side']}")
    safety = {
        f"{d}:{s}"
        for d in ("refusal", "pii_leak", "secret_leak", "toxicity")
        for s in ("primary", "candidate")
    } | {"over_refusal:pair"}
    assert by_pair["r1:cand"] == {"exact:pair", "token_f1:pair"} | safety
    assert (
        by_pair["r3:cand"]
        == {
            "json_valid:primary",
            "json_valid:candidate",
            "json_schema:primary",
            "json_schema:candidate",
        }
        | safety
    )
    assert "r4:cand" not in by_pair  # embeddings: no text scorers, no detectors
    assert set(by_pair) == {"r1:cand", "r2:cand", "r3:cand", "r5:cand", "r6:control"}
    get = {(r["pair_id"], r["scorer"], r["side"]): r for r in scores}
    assert get[("r2:cand", "refusal", "candidate")]["value"] == 1.0
    assert get[("r2:cand", "over_refusal", "pair")]["label"] == "over_refusal"
    assert get[("r3:cand", "json_schema", "candidate")]["value"] == 0.0
    assert get[("r5:cand", "exact", "pair")]["value"] is None  # candidate failed: unscored
    assert get[("r6:control", "exact", "pair")]["role"] == "control"
    assert runner.tally.pairs == 5 and runner.tally.skipped == 2 and runner.tally.failed == 1

    def sample(name: str, labels: dict[str, str]) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert (
        sample("shadoweval_scored_pairs_total", {"upstream": "cand", "outcome": "scored"}) == 5
    )  # control included
    assert (
        sample("shadoweval_scored_pairs_total", {"upstream": "cand", "outcome": "skipped"}) == 1
    )  # embeddings
    assert (
        sample("shadoweval_scored_pairs_total", {"upstream": "unknown", "outcome": "skipped"}) == 1
    )  # other schema
    assert (
        sample("shadoweval_scored_pairs_total", {"upstream": "unknown", "outcome": "failed"}) == 1
    )
    assert (
        sample(
            "shadoweval_safety_flags_total",
            {
                "upstream": "cand",
                "role": "candidate",
                "side": "candidate",
                "flag": "refusal",
                "source": "traffic",
            },
        )
        == 1
    )
    assert (
        sample(
            "shadoweval_score_count",
            {"upstream": "cand", "role": "candidate", "scorer": "exact", "side": "pair"},
        )
        == 2
    )
    assert (
        sample(
            "shadoweval_score_sum",
            {"upstream": "cand", "role": "candidate", "scorer": "exact", "side": "pair"},
        )
        == 1.0
    )
    assert sample("shadoweval_scorer_consumer_lag_records", {"partition": "file"}) == 0
    assert (sample("shadoweval_scorer_duration_seconds_count", {"scorer": "exact"}) or 0) >= 4


async def test_resume_from_the_offsets_file(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, [pair_record(pair_id=f"a{i}:c") for i in range(6)])
    raw = config(tmp_path, scorers={"default": ["exact"]}, safety={"enabled": False})
    await score_once(raw)
    saved = json.loads((tmp_path / "scores.jsonl.offsets").read_text())
    assert saved["offset"] == pairs.stat().st_size and saved["inode"] == pairs.stat().st_ino
    write_pairs(pairs, [pair_record(pair_id=f"b{i}:c") for i in range(3)])
    write_pairs(
        pairs, [b'{"schema": "shadoweval.pair.v1", "pair_id": "partial']
    )  # mid-write: not yet
    await score_once(raw)
    ids = [r["pair_id"] for r in read_scores(tmp_path / "scores.jsonl")]
    assert Counter(ids) == Counter([f"a{i}:c" for i in range(6)] + [f"b{i}:c" for i in range(3)])


async def test_follows_rotation_by_inode(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, [pair_record(pair_id=f"old{i}:c") for i in range(5)])
    raw = config(tmp_path, scorers={"default": ["exact"]}, safety={"enabled": False})
    await score_once(raw)
    # While the scorer is down: three more lines land in the file, it is rotated twice.
    write_pairs(pairs, [pair_record(pair_id=f"late{i}:c") for i in range(3)])
    pairs.rename(tmp_path / "pairs.jsonl.2")
    write_pairs(tmp_path / "pairs.jsonl.1", [pair_record(pair_id=f"mid{i}:c") for i in range(2)])
    write_pairs(pairs, [pair_record(pair_id=f"new{i}:c") for i in range(4)])
    await score_once(raw)
    ids = [r["pair_id"] for r in read_scores(tmp_path / "scores.jsonl")]
    expected = (
        [f"old{i}:c" for i in range(5)]
        + [f"late{i}:c" for i in range(3)]
        + [f"mid{i}:c" for i in range(2)]
        + [f"new{i}:c" for i in range(4)]
    )
    assert Counter(ids) == Counter(expected)


class FlakySink(FileScoreSink):
    """Fails the first ``failures`` writes, like a broker that is briefly unreachable."""

    def __init__(self, path: Path, failures: int) -> None:
        from shadoweval.config.scorer import FileScoreSink as Cfg

        super().__init__(Cfg(path=str(path)))
        self.failures = failures

    async def write(self, records: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        await super().write(records)


async def test_offsets_advance_only_after_scores_are_written(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", [pair_record(pair_id=f"p{i}:c") for i in range(3)])
    raw = config(tmp_path, scorers={"default": ["exact"]}, safety={"enabled": False})
    metrics = ScoreMetrics(CollectorRegistry())
    sink = FlakySink(tmp_path / "scores.jsonl", failures=2)
    await score_once(raw, metrics, sink=sink)
    assert [r["pair_id"] for r in read_scores(tmp_path / "scores.jsonl")] == [
        "p0:c",
        "p1:c",
        "p2:c",
    ]
    assert (
        metrics.registry.get_sample_value("shadoweval_scorer_io_errors_total", {"stage": "publish"})
        == 2
    )


async def test_a_crash_before_the_commit_rescores_with_the_same_ids(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", [pair_record(pair_id=f"p{i}:c") for i in range(3)])
    raw = config(tmp_path, scorers={"default": ["exact"]}, safety={"enabled": False})
    runner = ScoreRunner(parse_scorer(raw, environ={}), once=True)
    await runner.start()
    assert runner.source is not None and runner.sink is not None
    batch = await runner.source.poll()
    assert batch is not None
    await runner.sink.write(await runner.score_messages(batch.messages))
    await runner.stop()  # "crash": published but never committed
    await score_once(raw)
    scores = read_scores(tmp_path / "scores.jsonl")
    assert len(scores) == 6  # at least once: the batch was scored twice...
    assert len({r["score_id"] for r in scores}) == 3  # ...with the same ids, so it dedupes


async def test_a_failing_scorer_is_counted_and_the_others_still_run(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", [pair_record(pair_id="p:c")])

    def broken(ctx: Any) -> Any:
        def score(pair: Any) -> Any:
            raise RuntimeError("boom")

        return score

    registry._REGISTRY["broken_for_test"] = registry.Registered(broken, "test")
    try:
        metrics = ScoreMetrics(CollectorRegistry())
        await score_once(
            config(
                tmp_path,
                scorers={"default": ["broken_for_test", "exact"]},
                safety={"enabled": False},
            ),
            metrics,
        )
    finally:
        del registry._REGISTRY["broken_for_test"]
    assert [r["scorer"] for r in read_scores(tmp_path / "scores.jsonl")] == ["exact"]
    assert (
        metrics.registry.get_sample_value(
            "shadoweval_scorer_errors_total", {"scorer": "broken_for_test"}
        )
        == 1
    )


def test_sampling_is_stable_and_applies_per_scorer(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", [pair_record(pair_id=f"p{i}:c") for i in range(400)])
    raw = config(
        tmp_path,
        scorers={"default": ["exact", {"use": "token_f1", "sample_rate": 0.25}]},
        safety={"enabled": False},
    )
    raw["source"]["batch_max_records"] = 500
    import asyncio

    asyncio.run(score_once(raw))
    first = Counter(r["scorer"] for r in read_scores(tmp_path / "scores.jsonl"))
    assert first["exact"] == 400 and 60 < first["token_f1"] < 140
    (tmp_path / "scores.jsonl.offsets").unlink()
    asyncio.run(score_once(raw))  # a full re-score picks the same pairs
    again = [r for r in read_scores(tmp_path / "scores.jsonl") if r["scorer"] == "token_f1"]
    assert Counter(r["score_id"] for r in again) == Counter(
        {sid: 2 for sid in {r["score_id"] for r in again}}
    )


PLUGIN = '''
from shadoweval.score.base import Score

def length_ratio(ctx, *, cap=2.0):
    """Third-party scorer: candidate length over primary length, capped."""
    def score(pair):
        a, b = pair.text("primary") or "", pair.text("candidate") or ""
        return [Score(min(cap, len(b) / max(len(a), 1)) / cap, "length ratio")]
    return score
'''


def test_third_party_scorer_from_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "lenplugin-0.1.dist-info").mkdir(parents=True)
    (site / "lenplugin.py").write_text(PLUGIN)
    (site / "lenplugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lenplugin\nVersion: 0.1\n"
    )
    (site / "lenplugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[shadoweval.scorers]\nlength_ratio = lenplugin:length_ratio\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert registry.available()["length_ratio"] == "lenplugin:length_ratio"
    write_pairs(tmp_path / "pairs.jsonl", [pair_record("abcd", "ab", pair_id="p:c")])
    raw = config(
        tmp_path,
        scorers={"default": [{"use": "length_ratio", "options": {"cap": 1.0}}]},
        safety={"enabled": False},
    )
    try:
        import asyncio

        asyncio.run(score_once(raw))
    finally:
        registry._REGISTRY.pop("length_ratio", None)
    (rec,) = read_scores(tmp_path / "scores.jsonl")
    assert (rec["scorer"], rec["value"], rec["explanation"]) == (
        "length_ratio",
        0.5,
        "length ratio",
    )


async def test_unknown_scorers_and_bad_options_fail_at_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"scorers.tasks.x\[1\]: unknown scorer 'nope' \(available: .*exact"
    ):
        await ScoreRunner(
            parse_scorer(config(tmp_path, scorers={"tasks": {"x": ["exact", "nope"]}}), environ={})
        ).start()
    with pytest.raises(
        ConfigError, match=r"scorers.default\[0\].options: .*unexpected keyword argument 'stripp'"
    ):
        await ScoreRunner(
            parse_scorer(
                config(
                    tmp_path, scorers={"default": [{"use": "exact", "options": {"stripp": True}}]}
                ),
                environ={},
            )
        ).start()
    with pytest.raises(
        ConfigError,
        match=r"judge\.api_key_env: environment variable SCORER_TEST_UNSET_KEY is not set",
    ):
        raw = config(
            tmp_path,
            scorers={"default": ["judge_single"]},
            judge={"url": "http://127.0.0.1:9", "api_key_env": "SCORER_TEST_UNSET_KEY"},
        )
        await ScoreRunner(parse_scorer(raw, environ={})).start()


async def test_admin_port_serves_health_readiness_and_metrics(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs.jsonl", [pair_record(pair_id="p:c")])
    raw = config(tmp_path, admin={"port": 0}, scorers={"default": ["exact"]})
    raw["source"]["poll_interval_s"] = 0.05
    runner = ScoreRunner(parse_scorer(raw, environ={}), metrics=ScoreMetrics(CollectorRegistry()))
    import asyncio

    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        async with aiohttp.ClientSession() as s:
            await wait_for(lambda: (tmp_path / "scores.jsonl").exists(), what="scores written")
            async with s.get(runner.admin_url + "/healthz") as r:
                assert r.status == 200
            async with s.get(runner.admin_url + "/readyz") as r:
                assert r.status == 200
            async with s.get(runner.admin_url + "/metrics") as r:
                text = await r.text()
            assert 'shadoweval_scored_pairs_total{outcome="scored",upstream="cand"} 1.0' in text
            runner.request_stop()
            async with s.get(runner.admin_url + "/readyz") as r:
                assert r.status == 503
    finally:
        runner.request_stop()
        await task
        await runner.stop()


def test_config_env_overrides_and_errors(tmp_path: Path) -> None:
    cfg = parse_scorer(
        {},
        environ={
            "SHADOWEVAL_SCORE_SOURCE__PATH": "x.jsonl",
            "SHADOWEVAL_SCORE_JUDGE__SAMPLE_RATE": "0.05",
            "SHADOWEVAL_SINK__PATH": "proxy-only",
        },
    )
    assert cfg.source.path == "x.jsonl"  # type: ignore[union-attr]
    assert cfg.judge.sample_rate == 0.05
    assert cfg.sink.path == "scores.jsonl"  # type: ignore[union-attr]
    assert cfg.offsets_path == Path("scores.jsonl.offsets")
    kafka = parse_scorer({"source": {"kind": "kafka", "bootstrap_servers": "a:1,b:2"}}, environ={})
    assert kafka.source.bootstrap_servers == ["a:1", "b:2"]  # type: ignore[union-attr]
    assert kafka.offsets_path is None
    with pytest.raises(ConfigError) as err:
        parse_scorer(
            {
                "source": {"kind": "kafka", "bootstrap_servers": "nope"},
                "judge": {"scale_min": 5, "scale_max": 5},
                "scorers": {"default": ["exact", "exact"]},
            },
            environ={},
        )
    msg = str(err.value)
    assert "source.kafka.bootstrap_servers: 'nope' is not host:port" in msg
    assert "judge: scale_max must be above scale_min" in msg
    assert "scorers.default: scorer name 'exact' is used twice" in msg


def test_shipped_scorer_config_is_valid() -> None:
    from shadoweval.config.scorer import load_scorer

    cfg = load_scorer(REPO / "config" / "scorer.yaml", environ={})
    assert cfg.source.path == "shadoweval-demo/pairs.jsonl"  # type: ignore[union-attr]
    assert [s.label for s in cfg.safety.detectors] == [
        "refusal",
        "over_refusal",
        "pii_leak",
        "secret_leak",
        "canary_leak",
        "toxicity",
    ]


def test_once_needs_a_file_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("source: {kind: kafka, bootstrap_servers: [127.0.0.1:9092]}\n")
    assert main(["score", "--config", str(path), "--once"]) == 2
    assert "--once reads a file source" in capsys.readouterr().err


def test_list_shows_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "exact",
        "normalized",
        "token_f1",
        "rouge_l",
        "chrf",
        "json_valid",
        "json_schema",
        "tool_calls",
        "semantic",
        "judge_single",
        "judge_pairwise",
        "refusal",
        "over_refusal",
        "pii_leak",
        "secret_leak",
        "canary_leak",
        "toxicity",
    ):
        assert f"\n{name} " in "\n" + out, name


@pytest.mark.slow
def test_embedded_path_demo_then_score_once(tmp_path: Path) -> None:
    """The demo scores its pairs and reports; `score --once` on the same files resumes
    where the demo's scoring stopped, and on new pairs scores exactly those."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    demo = subprocess.run(
        [sys.executable, "-m", "shadoweval", "demo", "--requests", "40"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "noise floor" in demo.stdout and "verdict" in demo.stdout
    assert (tmp_path / "shadoweval-demo" / "report.html").stat().st_size > 0
    cmd = [
        sys.executable,
        "-m",
        "shadoweval",
        "score",
        "--config",
        str(REPO / "config" / "scorer.yaml"),
        "--once",
    ]
    scores = read_scores(tmp_path / "shadoweval-demo" / "scores.jsonl")
    control_exact = [
        r["value"] for r in scores if r["upstream"] == "control" and r["scorer"] == "exact"
    ]
    assert control_exact == [1.0] * 40
    pairs = {
        json.loads(x)["pair_id"]
        for x in (tmp_path / "shadoweval-demo" / "pairs.jsonl").read_text().splitlines()
    }
    assert {r["pair_id"] for r in scores} == pairs
    # Nothing new: `score --once` scores nothing (it resumes from the demo's saved offset).
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "scored 0 pairs" in second.stdout
    assert len(read_scores(tmp_path / "shadoweval-demo" / "scores.jsonl")) == len(scores)
    # New pairs appended (as a running proxy would): exactly those are scored.
    pairs_file = tmp_path / "shadoweval-demo" / "pairs.jsonl"
    first_lines = pairs_file.read_text().splitlines()[:3]
    more = [json.loads(x) | {"pair_id": f"new{i}:x"} for i, x in enumerate(first_lines)]
    with pairs_file.open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in more)
    third = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "scored 3 pairs" in third.stdout, third.stdout


async def test_regression_alarm_against_the_control_and_per_side(tmp_path: Path) -> None:
    records = []
    for i in range(120):
        records.append(pair_record("Paris", "Lyon", pair_id=f"q{i}:worse"))  # disagrees
        records.append(pair_record("Paris", "Paris", pair_id=f"q{i}:same"))
        records.append(pair_record("Paris", "Paris", pair_id=f"q{i}:control", role="control"))
    for rec in records:  # upstream names from the pair id
        rec["candidate"]["upstream"] = rec["pair_id"].split(":")[1]
    write_pairs(tmp_path / "pairs.jsonl", records)
    metrics = ScoreMetrics(CollectorRegistry())
    raw = config(tmp_path, scorers={"default": ["exact"]}, safety={"enabled": False})
    raw["source"]["batch_max_records"] = 50
    await score_once(raw, metrics)

    def gauge(name: str, upstream: str) -> float | None:
        return metrics.registry.get_sample_value(
            f"shadoweval_quality_regression_{name}", {"upstream": upstream, "scorer": "exact"}
        )

    assert gauge("detected", "worse") == 1.0
    assert gauge("detected", "same") == 0.0
    assert (gauge("evidence", "same") or 0) < 1.0
    # Re-scoring the same pairs (a re-delivery) does not feed the test twice.
    runner = ScoreRunner(parse_scorer(raw, environ={}), metrics=ScoreMetrics(CollectorRegistry()))
    runner._build_sets()
    batch = [orjson.dumps(r) for r in records[:30]]
    await runner.score_messages(batch)
    await runner.score_messages(batch)
    assert runner._alarm.monitor("worse", "exact").n == 10
