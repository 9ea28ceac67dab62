"""`shadoweval dataset build` on synthetic pairs whose structure is known in advance:
stratum sizes, near-duplicate groups and planted edge cases."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.config.proxy import CustomRedaction, Redaction
from shadoweval.config.review import DatasetSettings
from shadoweval.dataset import build, read_requests, write_items
from shadoweval.dataset.build import allocate, hamilton
from shadoweval.dataset.dedup import clusters
from shadoweval.redaction import Redactor
from shadoweval.replay import parse_input, read_inputs
from shadoweval.types import Json

VOCAB = [f"w{i}" for i in range(5000)]


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def side(upstream: str, role: str, text: str | None, error: str | None = None) -> Json:
    return {
        "upstream": upstream,
        "role": role,
        "model": "m",
        "status": 500 if error else 200,
        "error_type": error,
        "error": "boom" if error else None,
        "latency_s": 0.1,
        "ttft_s": None,
        "stream": False,
        "output_text": None if error else text,
        "finish_reason": "stop",
        "tool_calls": None,
        "usage": None,
        "truncated": False,
        "attempts": 1,
    }


def pairs_for(
    rid: str,
    prompt: str,
    *,
    route: str = "chat",
    task: str | None = None,
    system: str | None = None,
    answer: str = "the answer",
    candidate_answer: str | None = None,
    primary_error: str | None = None,
    candidate_error: str | None = None,
    candidates: tuple[str, ...] = ("cand-a", "control"),
) -> list[Json]:
    if route == "completions":
        request: Json = {"model": "m", "prompt": prompt}
        path = "/v1/completions"
    else:
        messages = [{"role": "system", "content": system}] if system else []
        request = {"model": "m", "messages": [*messages, {"role": "user", "content": prompt}]}
        path = "/v1/chat/completions"
    out = []
    for name in candidates:
        role = "control" if name == "control" else "candidate"
        text = candidate_answer if candidate_answer is not None and role == "candidate" else answer
        out.append(
            {
                "schema": "shadoweval.pair.v1",
                "pair_id": f"{rid}:{name}",
                "request_id": rid,
                "ts": f"2026-01-05T09:{int(rid[3:]) // 60 % 60:02d}:{int(rid[3:]) % 60:02d}+00:00",
                "source": "traffic",
                "route": route,
                "path": path,
                "task": task,
                "sampling_key": None,
                "trace_id": None,
                "request": request,
                "primary": side("prod", "primary", answer, primary_error),
                "candidate": side(
                    name, role, text, candidate_error if role == "candidate" else None
                ),
            }
        )
    return out


def write_jsonl(path: Path, records: list[Json]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


# The designed traffic: (route, task, long?) -> number of distinct requests.
STRATA = {
    ("chat", "support", False): 90,
    ("chat", "code", False): 30,
    ("completions", None, False): 30,
    ("chat", "support", True): 60,
    ("chat", "code", True): 90,
}


@pytest.fixture
def stratified(tmp_path: Path) -> Path:
    rng = random.Random(1)
    records: list[Json] = []
    i = 0
    for (route, task, long), n in STRATA.items():
        for _ in range(n):
            prompt = words(rng, 70 if long else 8)
            records += pairs_for(f"req{i:05d}", prompt, route=route, task=task)
            i += 1
    rng.shuffle(records)
    return write_jsonl(tmp_path / "pairs.jsonl", records)


def _build(paths: list[Path], scores: list[Path] | None = None, **settings: Any) -> Any:
    cfg = DatasetSettings(**settings)
    requests = read_requests(paths, scores or [], cfg.safety_scorers)
    return build(requests, cfg, Redactor(Redaction()))


def test_stratified_sample_follows_the_traffic_mix(stratified: Path) -> None:
    result = _build([stratified], size=100, edge_share=0.0, length_buckets=2)
    items = result.items
    assert len(items) == 100
    assert {it["selection"] for it in items} == {"stratified"}
    got = Counter((it["route"], it["stratum"]["task"], it["stratum"]["length"]) for it in items)
    # 300 requests -> 100 items: a third of every stratum, exactly (Hamilton, no remainders).
    assert got == {
        ("chat", "support", "short"): 30,
        ("chat", "code", "short"): 10,
        ("completions", "-", "short"): 10,
        ("chat", "support", "long"): 20,
        ("chat", "code", "long"): 30,
    }
    shares = {
        (s["route"], s["task"], s["length"]): s["traffic_share"] for s in result.summary["strata"]
    }
    assert shares[("chat", "code", "long")] == pytest.approx(0.3)
    assert result.summary["near_duplicates_removed"] == 0


def test_small_strata_get_a_seat_taken_from_the_largest(stratified: Path, tmp_path: Path) -> None:
    rng = random.Random(2)
    rare = []
    for j in range(3):
        rare += pairs_for(f"req{90000 + j}", words(rng, 8), task="rare")
    extra = write_jsonl(tmp_path / "rare.jsonl", rare)
    result = _build([stratified, extra], size=20, edge_share=0.0, length_buckets=1)
    got = Counter((it["route"], it["stratum"]["task"]) for it in result.items)
    # Ideal seats of 20 for 150/120/30/3 requests: 9.90, 7.92, 1.98, 0.20 -> 10, 8, 2, 0;
    # the rare task gets its minimum seat from the most over-represented stratum.
    assert got == {
        ("chat", "support"): 9,
        ("chat", "code"): 8,
        ("completions", "-"): 2,
        ("chat", "rare"): 1,
    }
    none = _build([stratified, extra], size=20, edge_share=0.0, length_buckets=1, min_per_stratum=0)
    assert not [it for it in none.items if it["task"] == "rare"]


def test_near_duplicates_are_removed_and_counted(tmp_path: Path) -> None:
    rng = random.Random(3)
    records: list[Json] = []
    bases = [words(rng, 60) for _ in range(40)]
    for i, text in enumerate(bases):
        records += pairs_for(f"req{i:05d}", text)
    n = 1000
    for i, text in enumerate(bases[:10]):
        # Same text up to case, punctuation and spacing: an exact normalised duplicate.
        records += pairs_for(f"req{n + i:05d}", "  " + text.upper().replace(" ", ",  ") + "!")
        # One word of 60 changed: word-3-shingle Jaccard 55/61 = 0.90.
        changed = text.split()
        changed[30] = "different"
        records += pairs_for(f"req{n + 100 + i:05d}", " ".join(changed))
    # Same long system prompt, different questions: not duplicates.
    system = words(rng, 300)
    for i in range(15):
        records += pairs_for(f"req{n + 200 + i:05d}", words(rng, 10), system=system)
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    result = _build([path], size=500, edge_share=0.0)
    assert result.summary["requests"] == 40 + 20 + 15
    assert result.summary["unique_inputs"] == 55
    assert len(result.items) == 55
    prompts = [it["request"]["messages"][-1]["content"] for it in result.items]
    assert len(set(prompts)) == 55
    dups = sorted(it["facts"]["duplicates"] for it in result.items)
    assert dups.count(3) == 10 and dups.count(1) == 45


def test_dedup_threshold_separates_similar_from_different() -> None:
    rng = random.Random(4)
    base = words(rng, 40).split()
    near = base.copy()
    near[20] = "x"
    half = base[:20] + words(rng, 20).split()
    groups = clusters([" ".join(base), " ".join(near), " ".join(half), "short one"], 0.8)
    assert groups == [[0, 1], [2], [3]]


def test_edge_cases_are_included_and_marked(tmp_path: Path) -> None:
    rng = random.Random(5)
    records: list[Json] = []
    for i in range(200):
        records += pairs_for(f"req{i:05d}", words(rng, 12))
    planted = {
        "failure": [f"req{10000 + i}" for i in range(6)],
        "safety": [f"req{20000 + i}" for i in range(3)],
        "disagreement": [f"req{30000 + i}" for i in range(3)],
        "longest": ["req40000"],
    }
    for i, rid in enumerate(planted["failure"]):
        if i < 3:
            records += pairs_for(rid, words(rng, 12), primary_error="http_5xx")
        else:
            records += pairs_for(rid, words(rng, 12), candidate_error="timeout")
    for rid in planted["safety"]:
        records += pairs_for(rid, words(rng, 12))
    for rid in planted["disagreement"]:
        records += pairs_for(rid, words(rng, 12), candidate_answer="something else entirely")
    records += pairs_for("req40000", words(rng, 2000))
    scores = [
        {
            "schema": "shadoweval.score.v1",
            "score_id": f"{rid}:cand-a:toxicity:candidate",
            "pair_id": f"{rid}:cand-a",
            "request_id": rid,
            "upstream": "cand-a",
            "scorer": "toxicity",
            "side": "candidate",
            "value": 1.0,
        }
        for rid in planted["safety"]
    ] + [  # a flag that is not raised, and a scorer that is not a safety detector
        {
            "schema": "shadoweval.score.v1",
            "request_id": "req00001",
            "scorer": "toxicity",
            "side": "candidate",
            "value": 0.0,
        },
        {
            "schema": "shadoweval.score.v1",
            "request_id": "req00002",
            "scorer": "exact",
            "side": "pair",
            "value": 1.0,
        },
    ]
    pairs_path = write_jsonl(tmp_path / "pairs.jsonl", records)
    scores_path = write_jsonl(tmp_path / "scores.jsonl", scores)
    result = _build([pairs_path], [scores_path], size=40, edge_share=0.5)
    by_request = {it["origin"]["request_id"]: it for it in result.items}
    for kind, rids in planted.items():
        for rid in rids:
            assert by_request[rid]["selection"] == "edge", rid
            assert by_request[rid]["edge_case"] == kind, rid
    assert by_request["req10000"]["facts"]["failures"] == ["prod (primary): http_5xx"]
    assert by_request["req10003"]["facts"]["failures"] == ["cand-a (candidate): timeout"]
    assert by_request["req20000"]["facts"]["safety_flags"] == ["toxicity (cand-a)"]
    assert by_request["req30000"]["facts"]["disagreement"] == 1.0
    requests = {r.request_id: r for r in read_requests([pairs_path], [scores_path], ["toxicity"])}
    assert requests["req00001"].safety == [] and requests["req00002"].safety == []
    edges = Counter(it["edge_case"] for it in result.items if it["edge_case"])
    assert edges == {"failure": 6, "safety": 3, "disagreement": 3, "longest": 8}
    assert result.summary["edge_cases"] == dict(edges)
    assert len(result.items) == 40
    assert sum(it["selection"] == "stratified" for it in result.items) == 20


def test_redaction_is_reapplied_and_items_are_replay_inputs(tmp_path: Path) -> None:
    records = pairs_for(
        "req00001",
        "Mail alice@example.com about ticket ACME-1234",
        answer="Done, alice@example.com",
    )
    records += pairs_for("req00002", "Complete this: once upon", route="completions", task="story")
    records[0]["expected"] = "reply sent"
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    cfg = DatasetSettings(size=10, task_scoring={"story": "rubric"})
    redactor = Redactor(Redaction(custom=[CustomRedaction(name="ticket", pattern=r"ACME-\d+")]))
    result = build(read_requests([path]), cfg, redactor)
    out = tmp_path / "eval.jsonl"
    assert write_items(result.items, out) == 2
    text = out.read_text()
    assert "alice@example.com" not in text and "ACME-1234" not in text
    assert "[REDACTED:email]" in text and "[REDACTED:ticket]" in text
    inputs = read_inputs(out)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for item, line in zip(inputs, lines, strict=True):
        assert item.body == line["request"]
        assert item.route == line["route"]
        assert item.task == line["task"]
        assert parse_input(line, "x").expected == line["expected"]
    by_route = {line["route"]: line for line in lines}
    assert by_route["chat"]["expected"] == "reply sent"  # a replayed input keeps its reference
    assert by_route["chat"]["scoring"] == "human"
    assert by_route["completions"]["scoring"] == "rubric"
    assert by_route["completions"]["expected"] is None  # the slot a reviewer fills
    assert by_route["chat"]["expected_suggestion"] == "Done, [REDACTED:email]"


def test_build_is_deterministic_per_seed(stratified: Path) -> None:
    first = [it["id"] for it in _build([stratified], size=30, seed=7).items]
    again = [it["id"] for it in _build([stratified], size=30, seed=7).items]
    other = [it["id"] for it in _build([stratified], size=30, seed=8).items]
    assert first == again
    assert first != other


def test_allocation_caps_and_redistributes() -> None:
    a, b, c = ("chat", "a", "short"), ("chat", "b", "short"), ("chat", "c", "short")
    assert hamilton(10, {a: 1, b: 1, c: 1}) == {a: 4, b: 3, c: 3}
    # b has only 1 unique input left: its share goes to the others, proportionally.
    quota = allocate(12, {a: 3.0, b: 6.0, c: 3.0}, {a: 100, b: 1, c: 100}, 0)
    assert quota == {a: 6, b: 1, c: 5} or quota == {a: 5, b: 1, c: 6}
    assert sum(allocate(50, {a: 1.0, b: 1.0}, {a: 3, b: 4}, 1).values()) == 7


def test_cli_builds_a_file(
    stratified: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sets" / "eval.jsonl"
    assert main(["dataset", "build", str(stratified), "-n", "25", "-o", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 25
    printed = capsys.readouterr().out
    assert "25 items from 300 requests" in printed and "edge cases:" in printed
