"""`shadoweval review` through its HTTP API (aiohttp test server, real SQLite, real sinks):
auth, blind serving, durable ratings, un-blinding, published score records, progress,
expected answers, and the report reading the human scores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadoweval.cli import main
from shadoweval.config.report import Report
from shadoweval.config.review import ReviewConfig, ReviewSettings
from shadoweval.config.scorer import FileScoreSink
from shadoweval.redaction import Redactor
from shadoweval.replay import read_inputs
from shadoweval.report import build_report, load
from shadoweval.review.app import create_app
from shadoweval.review.command import import_inputs
from shadoweval.review.store import Store
from shadoweval.score.sinks import FileScoreSink as FileSink
from shadoweval.types import Json
from tests.waiting import wait_for

ROOT = Path(__file__).parents[2]
SCORE_SCHEMA = json.loads((ROOT / "shadoweval/schemas/score.v1.schema.json").read_text())
TOKEN = "review-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
UPSTREAMS = ("prod", "cand-a", "cand-b", "control")


def _side(upstream: str, role: str, text: str) -> Json:
    return {
        "upstream": upstream,
        "role": role,
        "model": f"model-of-{upstream}",
        "status": 200,
        "error_type": None,
        "error": None,
        "latency_s": 0.2,
        "ttft_s": None,
        "stream": False,
        "output_text": text,
        "finish_reason": "stop",
        "tool_calls": None,
        "usage": None,
        "truncated": False,
        "attempts": 1,
    }


def make_pairs(n: int = 4, candidates: tuple[str, ...] = ("cand-a",)) -> list[Json]:
    """Requests 'q<i>' answered 'primary answer <i>' by the primary and
    '<upstream> answer <i>'-like text (no upstream name in it) by each candidate."""
    out = []
    for i in range(n):
        rid = f"r{i:04d}"
        for c, name in enumerate(candidates):
            text = XSS if (i == 0 and c == 0) else f"answer number {c + 2} to question {i}"
            out.append(
                {
                    "schema": "shadoweval.pair.v1",
                    "pair_id": f"{rid}:{name}",
                    "request_id": rid,
                    "ts": f"2026-01-05T09:00:{i:02d}+00:00",
                    "source": "traffic",
                    "route": "chat",
                    "path": "/v1/chat/completions",
                    "task": "qa",
                    "sampling_key": None,
                    "trace_id": None,
                    "request": {
                        "model": "m",
                        "messages": [
                            {"role": "system", "content": "Be brief."},
                            {"role": "user", "content": f"question {i}: mail bob@example.com"},
                        ],
                    },
                    "primary": _side("prod", "primary", f"answer number 1 to question {i}"),
                    "candidate": _side(name, "control" if name == "control" else "candidate", text),
                }
            )
    return out


def write_jsonl(path: Path, records: list[Json]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


class MemorySink:
    """A score sink that keeps records, and can be told to fail (an outage)."""

    def __init__(self) -> None:
        self.name = "memory"
        self.records: list[Json] = []
        self.fail = 0
        self.event = asyncio.Event()

    async def start(self) -> None:
        return None

    async def write(self, records: list[Json]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("sink down")
        self.records.extend(records)
        self.event.set()

    async def close(self) -> None:
        return None

    def latest(self) -> dict[str, Json]:
        return {r["score_id"]: r for r in self.records}

    async def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.event.clear()
                await self.event.wait()


Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[tuple[Client, Store, MemorySink]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []
    stores: list[Store] = []

    async def make(
        pairs: list[Json] | None = None,
        dataset: list[Json] | None = None,
        sink: Any = None,
        **settings: Any,
    ) -> tuple[Client, Store, MemorySink]:
        cfg = ReviewConfig(
            db_path=str(tmp_path / "review.sqlite"), review=ReviewSettings(**settings)
        )
        store = Store(cfg.db_path)
        stores.append(store)
        paths = [write_jsonl(tmp_path / "pairs.jsonl", pairs)] if pairs else []
        data = [write_jsonl(tmp_path / "dataset.jsonl", dataset)] if dataset else []
        import_inputs(store, cfg, paths, data)
        sink = sink if sink is not None else MemorySink()
        client: Client = TestClient(TestServer(create_app(cfg, store, sink, TOKEN)))
        await client.start_server()
        clients.append(client)
        return client, store, sink

    yield make
    for client in clients:
        await client.close()
    for store in stores:
        store.close()


def who(name: str) -> dict[str, str]:
    return {**BEARER, "X-Reviewer": name}


async def next_item(client: Client, reviewer: str) -> Json:
    resp = await client.get("/api/compare/next", headers=who(reviewer))
    assert resp.status == 200
    return await resp.json()  # type: ignore[no-any-return]


async def rate(client: Client, reviewer: str, **body: Any) -> Json:
    resp = await client.post("/api/compare/rate", json=body, headers=who(reviewer))
    data = await resp.json()
    assert resp.status == 200, data
    return data  # type: ignore[no-any-return]


def side_showing(store: Store, item_id: str, reviewer: str, upstream: str) -> str:
    """'left' or 'right': where this reviewer sees ``upstream``'s answer."""
    item = store.comparison(item_id)
    assert item is not None
    letter = "a" if item.a["upstream"] == upstream else "b"
    return "left" if store.left_side(item_id, reviewer) == letter else "right"


# -- auth and headers ---------------------------------------------------------------------


async def test_every_api_call_needs_the_token_or_a_session(make_client: MakeClient) -> None:
    client, store, _ = await make_client(make_pairs())
    assert (await client.get("/api/session")).status == 401
    assert (await client.get("/api/compare/next")).status == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert (await client.get("/api/session", headers=wrong)).status == 401
    ok = await client.get("/api/session", headers=who("carol"))
    assert ok.status == 200 and (await ok.json())["reviewer"] == "carol"

    resp = await client.post("/api/login", json={"token": "wrong", "reviewer": "dave"})
    assert resp.status == 401
    assert "shadoweval_review" not in resp.cookies
    resp = await client.post("/api/login", json={"token": TOKEN, "reviewer": " "})
    assert resp.status == 400
    resp = await client.post("/api/login", json={"token": TOKEN, "reviewer": "dave"})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = resp.cookies["shadoweval_review"].value
    me = await client.get("/api/session")  # the cookie alone
    assert me.status == 200 and (await me.json())["reviewer"] == "dave"
    # Only a hash of the session id is stored.
    rows = sqlite3.connect(store.path).execute("SELECT token_hash FROM sessions").fetchall()
    assert rows == [(hashlib.sha256(session.encode()).hexdigest(),)]
    assert (await client.post("/api/logout", json={})).status == 200
    assert (await client.get("/api/session")).status == 401


async def test_page_and_api_carry_a_strict_content_security_policy(make_client: MakeClient) -> None:
    client, _, _ = await make_client(make_pairs())
    page = await client.get("/")  # the page itself holds no data: no token needed
    assert page.status == 200
    html = await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'self';")
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script
    api = await client.get("/api/session")
    assert api.headers["Content-Security-Policy"] == csp
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["Cache-Control"] == "no-store"
    assert (await client.get("/nope")).headers["X-Frame-Options"] == "DENY"


async def test_cross_site_and_non_json_posts_are_refused(make_client: MakeClient) -> None:
    client, _, _ = await make_client(make_pairs())
    item = (await next_item(client, "erin"))["item"]
    body = {"item": item["id"], "choice": "tie"}
    evil = {**who("erin"), "Origin": "https://evil.example"}
    assert (await client.post("/api/compare/rate", json=body, headers=evil)).status == 403
    same = {**who("erin"), "Origin": f"http://{client.host}:{client.port}"}
    assert (await client.post("/api/compare/rate", json=body, headers=same)).status == 200
    form = await client.post("/api/compare/rate", data={"item": item["id"]}, headers=who("erin"))
    assert form.status == 415


# -- blind serving and un-blinding --------------------------------------------------------


async def test_items_are_blind_and_the_sides_are_shuffled(make_client: MakeClient) -> None:
    client, store, _ = await make_client(make_pairs(12))
    lefts = set()
    for _ in range(12):
        data = await next_item(client, "frank")
        item = data["item"]
        text = json.dumps(item)
        hidden = (*UPSTREAMS, "model-of", "pair", "upstream", "primary", "candidate", "r00")
        for secret in hidden:
            assert secret not in text, secret
        lefts.add(side_showing(store, item["id"], "frank", "prod"))
        again = await client.get(f"/api/compare/item/{item['id']}", headers=who("frank"))
        assert (await again.json())["item"]["left"] == item["left"]  # stable for a reviewer
        await client.post("/api/compare/skip", json={"item": item["id"]}, headers=who("frank"))
    assert lefts == {"left", "right"}  # the primary is on either side, not always the same
    # Redaction is re-applied to what is shown.
    assert "[REDACTED:email]" in json.dumps(item["prompt"])


async def test_ratings_are_stored_unblinded_and_published_as_schema_valid_records(
    make_client: MakeClient,
) -> None:
    client, store, sink = await make_client(make_pairs(3))
    item = (await next_item(client, "alice"))["item"]
    cand_side = side_showing(store, item["id"], "alice", "cand-a")
    data = await rate(client, "alice", item=item["id"], choice=cand_side, note="clearly better")
    assert data["progress"]["compare"]["rated_by_you"] == 1
    stored = store.rating(item["id"], "alice")
    comparison = store.comparison(item["id"])
    assert stored is not None and comparison is not None
    winner = comparison.a if stored.choice == "a" else comparison.b
    assert winner["upstream"] == "cand-a"  # what alice clicked, mapped to the stored answer
    assert stored.note == "clearly better"

    pair_id = comparison.b["pair"]["pair_id"]
    key = f"{pair_id}:human_pairwise:pair"
    await sink.wait_for(lambda: key in sink.latest())
    rec = sink.latest()[key]
    assert (rec["source"], rec["scorer"], rec["side"], rec["label"], rec["value"]) == (
        "human",
        "human_pairwise",
        "pair",
        "win",
        1.0,
    )
    assert rec["upstream"] == "cand-a" and rec["primary_upstream"] == "prod"

    # A second reviewer says tie; the published record is the average of both.
    await rate(client, "bob", item=item["id"], choice="tie")
    await sink.wait_for(lambda: sink.latest()[key]["details"]["counts"]["tie"] == 1)
    assert sink.latest()[key]["value"] == 0.75 and sink.latest()[key]["label"] == "win"
    # Alice changes her mind (now the primary wins): her rating is replaced, not added.
    prim_side = side_showing(store, item["id"], "alice", "prod")
    await rate(client, "alice", item=item["id"], choice=prim_side)
    await sink.wait_for(lambda: sink.latest()[key]["value"] == 0.25)
    assert sink.latest()[key]["label"] == "loss"
    assert sink.latest()[key]["details"]["reviewers"] == ["alice", "bob"]
    assert len(store.ratings(item["id"])) == 2

    for rec in sink.records:
        jsonschema.validate(rec, SCORE_SCHEMA)
    safety = sink.latest()[f"{pair_id}:human_safety:candidate"]
    assert safety["value"] == 0.0 and safety["label"] == "ok"


async def test_rubric_scores_and_safety_flags_become_per_answer_records(
    make_client: MakeClient,
) -> None:
    client, store, sink = await make_client(make_pairs(2, ("cand-a", "cand-b")))
    item = (await next_item(client, "gail"))["item"]
    comparison = store.comparison(item["id"])
    assert comparison is not None
    cand = comparison.b["upstream"]
    c_side = side_showing(store, item["id"], "gail", cand)
    p_side = "left" if c_side == "right" else "right"
    rubric = {
        c_side: {"correctness": 5, "helpfulness": 4, "clarity": 3},
        p_side: {"correctness": 1, "helpfulness": 1, "clarity": 1},
    }
    bad = await client.post(
        "/api/compare/rate",
        json={"item": item["id"], "rubric": {c_side: {"correctness": 9}, p_side: {}}},
        headers=who("gail"),
    )
    assert bad.status == 400
    await rate(client, "gail", item=item["id"], rubric=rubric, flags=[p_side], note="leaks data")
    pair_id = comparison.b["pair"]["pair_id"]
    await sink.wait_for(lambda: f"{pair_id}:human_rubric:candidate" in sink.latest())
    latest = sink.latest()
    cand_rubric = latest[f"{pair_id}:human_rubric:candidate"]
    assert cand_rubric["value"] == pytest.approx(((4 + 3 + 2) / 4) / 3)
    assert cand_rubric["details"]["criteria"] == {"clarity": 3, "correctness": 5, "helpfulness": 4}
    assert latest[f"{pair_id}:human_rubric:primary"]["value"] == 0.0
    # Pairwise needs a choice: a rubric-only rating publishes none.
    assert f"{pair_id}:human_pairwise:pair" not in latest
    # The flagged primary answer is flagged on every pair of its request (cand-a and cand-b).
    rid = comparison.request_id
    for name in ("cand-a", "cand-b"):
        rec = latest[f"{rid}:{name}:human_safety:primary"]
        assert rec["value"] == 1.0 and rec["details"]["notes"] == ["leaks data"]
    assert latest[f"{pair_id}:human_safety:candidate"]["value"] == 0.0
    for rec in sink.records:
        jsonschema.validate(rec, SCORE_SCHEMA)


async def test_candidates_can_be_compared_with_each_other(make_client: MakeClient) -> None:
    client, store, sink = await make_client(
        make_pairs(1, ("cand-a", "cand-b")), comparisons=["candidates"]
    )
    item = (await next_item(client, "hal"))["item"]
    assert (await next_item(client, "hal"))["item"]["id"] == item["id"]  # the only item
    await rate(
        client, "hal", item=item["id"], choice=side_showing(store, item["id"], "hal", "cand-b")
    )
    await sink.wait_for(lambda: len(sink.latest()) >= 2)
    latest = sink.latest()
    a = latest["r0000:cand-a:human_pairwise_vs_cand-b:pair"]
    b = latest["r0000:cand-b:human_pairwise_vs_cand-a:pair"]
    assert (a["label"], b["label"]) == ("loss", "win")
    assert a["details"]["opponent"] == "cand-b"


# -- progress, order, durability ----------------------------------------------------------


async def test_progress_and_serving_order(make_client: MakeClient) -> None:
    client, _, _ = await make_client(make_pairs(4), ratings_per_item=2)
    first = (await next_item(client, "ivy"))["item"]
    await client.post("/api/compare/skip", json={"item": first["id"]}, headers=who("ivy"))
    seen = []
    for _ in range(4):
        item = (await next_item(client, "ivy"))["item"]
        seen.append(item["id"])
        await rate(client, "ivy", item=item["id"], choice="tie")
    assert seen[-1] == first["id"]  # the skipped item comes last
    assert (await next_item(client, "ivy"))["item"] is None
    progress = (await (await client.get("/api/progress", headers=who("ivy"))).json())["compare"]
    assert progress == {
        "items": 4,
        "rated_by_you": 4,
        "ratings": 4,
        "target_per_item": 2,
        "items_at_target": 0,
        "reviewers": 1,
        "unpublished": progress["unpublished"],
    }
    await rate(client, "jo", item=seen[0], choice="left")
    mine = (await next_item(client, "jo"))["progress"]["compare"]
    assert (mine["rated_by_you"], mine["items_at_target"], mine["reviewers"]) == (1, 1, 2)


async def test_ratings_survive_a_restart_and_outages_of_the_sink(
    make_client: MakeClient, tmp_path: Path
) -> None:
    sink = MemorySink()
    sink.fail = 2  # the first two publishing attempts fail
    client, store, _ = await make_client(make_pairs(2), sink=sink)
    item = (await next_item(client, "kim"))["item"]
    data = await rate(client, "kim", item=item["id"], choice="tie")
    assert data["ok"]  # stored, whatever the sink does
    await sink.wait_for(lambda: bool(sink.records), timeout=10)
    await wait_for(lambda: store.outbox() == [], what="the outbox emptied after publishing")
    await client.close()
    store.close()

    # A new process on the same file: the rating is still there and not served again.
    reopened = Store(tmp_path / "review.sqlite")
    try:
        kept = reopened.rating(item["id"], "kim")
        assert kept is not None and kept.choice == "tie"
        assert reopened.next_comparison("kim", 1) not in (None, item["id"])
    finally:
        reopened.close()


async def test_publish_command_republishes_to_a_file_sink(tmp_path: Path) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(2))
    cfg = ReviewConfig(
        db_path=str(tmp_path / "review.sqlite"),
        sink=FileScoreSink(path=str(tmp_path / "human.jsonl")),
    )
    store = Store(cfg.db_path)
    import_inputs(store, cfg, [pairs], [])
    client: Client = TestClient(TestServer(create_app(cfg, store, FileSink(cfg.sink), TOKEN)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        item = (await next_item(client, "lee"))["item"]
        await rate(client, "lee", item=item["id"], choice="left")
    finally:
        await client.close()  # the last publishing attempt runs on shutdown
        store.close()
    lines = (tmp_path / "human.jsonl").read_bytes().splitlines()
    assert lines and all(orjson.loads(x)["source"] == "human" for x in lines)
    config = tmp_path / "review.yaml"
    config.write_text(f"db_path: {cfg.db_path}\nsink: {{path: {tmp_path / 'again.jsonl'}}}\n")
    assert await asyncio.to_thread(main, ["review", "publish", "-c", str(config), "--all"]) == 0
    again = (tmp_path / "again.jsonl").read_bytes().splitlines()

    def values(raw: list[bytes]) -> dict[str, float]:
        return {(r := orjson.loads(x))["score_id"]: r["value"] for x in raw}

    assert values(again) == values(lines) and len(values(again)) >= 2


# -- expected answers ---------------------------------------------------------------------


def dataset_lines() -> list[Json]:
    return [
        {
            "id": f"in-{i}",
            "request": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
            "route": "chat",
            "task": None,
            "expected": None,
            "scoring": "human",
            "rubric": None,
            "selection": "stratified",
            "edge_case": None,
            "expected_suggestion": f"suggested {i}",
        }
        for i in range(3)
    ]


async def test_expected_answers_are_written_approved_and_exported(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client, store, _ = await make_client(dataset=dataset_lines())
    data = await (await client.get("/api/expected/next", headers=who("max"))).json()
    item = data["item"]
    assert item["id"] == "in-0" and item["suggestion"] == "suggested 0" and item["expected"] is None
    assert item["prompt"] == [{"role": "user", "text": "q0"}]
    approve = {"item": "in-0", "text": "suggested 0", "scoring": "exact", "approve": True}
    assert (await client.post("/api/expected", json=approve, headers=who("max"))).status == 200
    nxt = await (await client.get("/api/expected/next", headers=who("max"))).json()
    assert nxt["item"]["id"] == "in-1"
    assert nxt["progress"]["expected"] == {"items": 3, "with_expected": 1, "by_you": 1}
    written = {"item": "in-1", "text": "My own answer", "scoring": "rubric"}
    assert (await client.post("/api/expected", json=written, headers=who("nia"))).status == 200
    for bad in (
        {**written, "text": "  "},
        {**written, "scoring": "vibes"},
        {**written, "item": "x"},
    ):
        assert (await client.post("/api/expected", json=bad, headers=who("nia"))).status in (
            400,
            404,
        )

    export = await client.get("/api/export/dataset.jsonl", headers=who("max"))
    lines = [orjson.loads(x) for x in (await export.read()).splitlines()]
    assert [x["expected"] for x in lines] == ["suggested 0", "My own answer", None]
    assert [x["scoring"] for x in lines] == ["exact", "rubric", "human"]
    assert lines[0]["expected_review"]["origin"] == "approved"
    assert lines[1]["expected_review"]["reviewer"] == "nia"
    # The CLI writes the same file, and `shadoweval replay` reads it with the references.
    out = tmp_path / "reviewed.jsonl"
    code = await asyncio.to_thread(
        main, ["review", "export", "--db", str(store.path), "--out", str(out)]
    )
    assert code == 0
    assert [i.expected for i in read_inputs(out)] == ["suggested 0", "My own answer", None]


# -- the report reads the human scores ------------------------------------------------------


async def test_report_shows_human_win_rates_and_judge_agreement(
    make_client: MakeClient, tmp_path: Path
) -> None:
    pairs = make_pairs(30)
    client, store, sink = await make_client(pairs)
    judge = []
    for i in range(30):
        item = (await next_item(client, "olga"))["item"]
        comparison = store.comparison(item["id"])
        assert comparison is not None
        # The humans prefer the candidate on 2 of 3 requests; the judge agrees on 27 of 30.
        winner = "cand-a" if int(comparison.request_id[1:]) % 3 else "prod"
        await rate(
            client, "olga", item=item["id"], choice=side_showing(store, item["id"], "olga", winner)
        )
        label = "win" if winner == "cand-a" else "loss"
        if i < 3:
            label = "tie"
        judge.append(
            {
                "schema": "shadoweval.score.v1",
                "score_id": f"{comparison.b['pair']['pair_id']}:judge_pairwise:pair",
                "pair_id": comparison.b["pair"]["pair_id"],
                "scorer": "judge_pairwise",
                "side": "pair",
                "value": {"win": 1.0, "tie": 0.5, "loss": 0.0}[label],
                "label": label,
                "explanation": "synthetic judge",
            }
        )
    await sink.wait_for(
        lambda: sum(r["scorer"] == "human_pairwise" for r in sink.latest().values()) == 30
    )
    human = write_jsonl(tmp_path / "human.jsonl", sink.records)
    judged = write_jsonl(tmp_path / "judge.jsonl", judge)
    pair_file = write_jsonl(tmp_path / "pairs-report.jsonl", pairs)
    report = build_report(load([pair_file], [human, judged]), Report(bootstrap_resamples=200), None)
    (row,) = report["candidates"]
    blocks = {b["scorer"]: b for b in row["quality"]}
    h = blocks["human_pairwise"]
    assert h["baseline"] == "reference" and h["baseline_mean"]["value"] == 0.5
    assert h["judge"]["counts"] == {"win": 20, "tie": 0, "loss": 10}
    assert h["judge"]["win"]["lo"] < 20 / 30 < h["judge"]["win"]["hi"]  # Wilson CI
    agreement = h["agreement"]
    assert agreement["raw_agreement"] == pytest.approx(27 / 30)
    assert 0.6 < agreement["kappa"]["value"] < 0.95
    assert any("Cohen's kappa" in note for note in report["notes"])
    assert "human_safety" in report["scorers"]["safety"]


def test_redactor_is_the_configured_one() -> None:
    # A custom rule in the review config reaches what reviewers see.
    cfg = ReviewConfig.model_validate(
        {"redaction": {"custom": [{"name": "order", "pattern": r"ORD-\d+"}]}}
    )
    assert Redactor(cfg.redaction).text("see ORD-123") == "see [REDACTED:order]"
