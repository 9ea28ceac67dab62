"""Campaigns with real processes: ``match`` routes requests by model, a spent budget stops a
candidate within one request of its cap, and ``GET /candidates`` shows it, in one process,
with the shadow worker and with ``listen.processes: 2``."""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from shadoweval.records import iter_jsonl
from shadoweval.testing import FakeUpstream, running_stack
from tests.waiting import wait_for

from .test_lifecycle import start_serve
from .test_shadow_worker import sample

MESSAGES: Any = [{"role": "user", "content": "hello campaign"}]
TOKEN = "campaign-admin-token-0123456789"
TOKEN_ENV = "CAMPAIGN_ADMIN_TOKEN"
MODES = pytest.mark.parametrize("worker", [False, True], ids=["one-process", "shadow-worker"])


def base(tmp_path: Path, worker: bool) -> dict[str, Any]:
    return {
        # scheduling: normal: a SCHED_IDLE worker may not start on a busy machine (by design).
        "shadow_worker": {"enabled": worker, "scheduling": "normal"},
        "sink": {"kind": "file", "path": str(tmp_path / "pairs.jsonl"), "flush_interval_s": 0.05},
        "admin": {"token_env": TOKEN_ENV},
    }


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def records(path: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl([path], Counter())) if path.exists() else []


async def candidates(admin_url: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{admin_url}/candidates", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def scrape_with_token(admin_url: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{admin_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
    ):
        assert resp.status == 200
        return await resp.text()


async def settled(admin_url: str, n: int, upstream: str) -> str:
    """/metrics once all n shadows offered to ``upstream`` are paired or dropped."""
    text = ""

    async def done() -> bool:
        nonlocal text
        text = await scrape_with_token(admin_url)
        seen = sample(text, "shadoweval_shadow_sampling_decisions_total", upstream=upstream)
        ended = sample(text, "shadoweval_pairs_total", upstream=upstream) + sample(
            text, "shadoweval_shadow_dropped_total", upstream=upstream
        )
        unmatched = sample(
            text, "shadoweval_shadow_sampling_decisions_total", upstream=upstream,
            decision="unmatched",
        )  # fmt: skip
        return seen >= n and ended + unmatched >= n

    await wait_for(done, what=f"{n} shadows of {upstream} settled", state=lambda: text)
    return text


@MODES
async def test_match_routes_requests_by_model(tmp_path: Path, worker: bool) -> None:
    fakes = {"big": FakeUpstream(model="big-cand"), "small": FakeUpstream(model="small-cand")}
    options = {
        "big": {"match": {"models": ["gpt-4o", "gpt-4o-2024-*"]}},
        "small": {"match": {"models": ["gpt-4o-mini*"]}},
    }
    async with running_stack(
        candidates=fakes, overrides=base(tmp_path, worker), candidate_options=options
    ) as stack:
        c = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="sk-test", max_retries=0)
        models = ["gpt-4o"] * 3 + ["gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4o-mini-x", "other"]
        for model in models:
            answer = await c.chat.completions.create(model=model, messages=MESSAGES)
            assert answer.choices[0].message.content == "Echo: hello campaign"
        admin = stack.proxy.admin_url
        text = await settled(admin, len(models), "big")
        text = await settled(admin, len(models), "small")
        assert sample(text, "shadoweval_pairs_total", upstream="big") == 4
        assert sample(text, "shadoweval_pairs_total", upstream="small") == 2
        # Not matched is its own decision, neither sampled out nor dropped.
        decisions = "shadoweval_shadow_sampling_decisions_total"
        assert sample(text, decisions, upstream="big", decision="unmatched") == 3
        assert sample(text, decisions, upstream="small", decision="unmatched") == 5
        assert sample(text, decisions, decision="out") == 0
        assert sample(text, "shadoweval_shadow_dropped_total") == 0
        pairs = tmp_path / "pairs.jsonl"
        await wait_for(lambda: len(records(pairs)) == 6, what="6 pair records")
        got = {(r["candidate"]["upstream"], r["request"]["model"]) for r in records(pairs)}
        assert got == {
            ("big", "gpt-4o"),
            ("big", "gpt-4o-2024-08-06"),
            ("small", "gpt-4o-mini"),
            ("small", "gpt-4o-mini-x"),
        }
        assert len(fakes["big"].received) == 4 and len(fakes["small"].received) == 2


@MODES
async def test_a_spent_budget_stops_the_candidate_within_one_request(
    tmp_path: Path, worker: bool
) -> None:
    cap = 5.0
    fakes = {"priced": FakeUpstream(model="cand-model"), "counted": FakeUpstream(model="x")}
    options = {
        # One USD per input token: each answer costs a few USD, known only once it arrives.
        "priced": {"model": "cand-model", "concurrency": 1, "budget": {"usd_per_day": cap}},
        "counted": {"concurrency": 4, "budget": {"max_requests": 4}},
    }
    overrides = base(tmp_path, worker) | {
        "pricing": {"models": {"cand-model": {"input_per_mtok": 1e6, "output_per_mtok": 0}}}
    }
    n = 12
    async with running_stack(
        candidates=fakes, overrides=overrides, candidate_options=options
    ) as stack:
        c = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="sk-test", max_retries=0)
        await asyncio.gather(
            *(c.chat.completions.create(model="prod", messages=MESSAGES) for _ in range(n))
        )
        admin = stack.proxy.admin_url
        await settled(admin, n, "priced")
        text = await settled(admin, n, "counted")
        pairs = tmp_path / "pairs.jsonl"
        paired = int(sample(text, "shadoweval_pairs_total", upstream="priced"))
        await wait_for(
            lambda: sum(r["candidate"]["upstream"] == "priced" for r in records(pairs)) == paired,
            what="the priced candidate's records",
        )
        costs = [
            r["candidate"]["cost_usd"]
            for r in records(pairs)
            if r["candidate"]["upstream"] == "priced"
        ]
        each = costs[0]
        assert each > 0 and all(x == each for x in costs)
        # Stopped by the answer that crossed the cap: never more than one beyond it.
        assert sum(costs[:-1]) < cap <= sum(costs)
        assert paired == math.ceil(cap / each)
        assert sample(
            text, "shadoweval_shadow_dropped_total", upstream="priced", reason="budget"
        ) == (n - paired)
        assert len(fakes["priced"].received) == paired
        # A request cap is reserved before sending: exact even with 4 in flight.
        assert sample(text, "shadoweval_pairs_total", upstream="counted") == 4
        assert len(fakes["counted"].received) == 4
        assert sample(text, "shadoweval_candidate_budget_remaining_usd", upstream="priced") == 0.0
        assert (
            sample(text, "shadoweval_candidate_state", upstream="priced", state="paused_budget")
            == 1
        )

        status, body = await candidates(admin)
        assert status == 200
        view = {row["name"]: row for row in body["candidates"]}
        assert view["priced"]["state"] == "paused_budget"
        assert view["priced"]["budget"]["usd_left_today"] == 0.0
        assert view["priced"]["pairs_today"] == paired
        assert view["counted"]["state"] == "paused_budget"
        assert view["counted"]["budget"]["requests_left"] == 0
        assert view["counted"]["queue_depth"] == 0
        status, _ = await candidates(admin, token=None)
        assert status == 401  # behind the admin token, like /metrics


async def test_match_and_budget_with_two_relay_processes(
    tmp_path: Path,
) -> None:
    primary = FakeUpstream(model="gateway")
    big, small = FakeUpstream(model="big-cand"), FakeUpstream(model="small-cand")
    priced = FakeUpstream(model="cand-model")
    for fake in (primary, big, small, priced):
        await fake.start()
    pairs = tmp_path / "pairs.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"listen: {{port: 0, processes: 2}}\n"
        f"admin: {{port: 0, token_env: CAMPAIGN_ADMIN_TOKEN}}\n"
        f"primary: {{url: '{primary.url}'}}\n"
        "candidates:\n"
        f"  - {{name: big, url: '{big.url}', match: {{models: [gpt-4o]}}}}\n"
        f"  - {{name: small, url: '{small.url}', match: {{models: [gpt-4o-mini]}},"
        " budget: {max_pairs: 3}}\n"
        f"  - {{name: priced, url: '{priced.url}', model: cand-model, concurrency: 1,"
        " match: {models: [gpt-4o]}, budget: {usd_per_day: 5}}\n"
        "pricing: {models: {cand-model: {input_per_mtok: 1000000, output_per_mtok: 0}}}\n"
        f"sink: {{kind: file, path: '{pairs}', flush_interval_s: 0.05}}\n"
        "shadow_worker: {enabled: true, scheduling: normal}\n"
    )
    proc = await start_serve(cfg)
    log: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.append(line.decode())

    reader = asyncio.create_task(read_log())
    try:
        await wait_for(lambda: any("admin on http" in x for x in log), what="the proxy to start")
        line = next(x for x in log if "admin on http" in x)
        url = line.split("proxy on ")[1].split(" ")[0]
        admin = line.split("admin on ")[1].strip()

        async def one(model: str) -> None:
            # A client per request: new connections, spread over both relay processes.
            async with openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key="sk-test", max_retries=0
            ) as c:
                await c.chat.completions.create(model=model, messages=MESSAGES)

        await asyncio.gather(*(one(m) for m in ["gpt-4o"] * 5 + ["gpt-4o-mini"] * 6))
        text = await settled(admin, 11, "big")
        text = await settled(admin, 11, "small")
        assert sample(text, "shadoweval_pairs_total", upstream="big") == 5
        assert sample(text, "shadoweval_pairs_total", upstream="small") == 3
        assert (
            sample(text, "shadoweval_shadow_dropped_total", upstream="small", reason="budget") == 3
        )
        assert len(big.received) == 5 and len(small.received) == 3
        status, body = await candidates(admin)
        assert status == 200
        view = {row["name"]: row for row in body["candidates"]}
        assert view["small"]["state"] == "paused_budget" and view["big"]["state"] == "active"
        assert view["small"]["budget"]["pairs_left"] == 0 and view["small"]["pairs_total"] == 3
        # The USD cap across both relays: one budget, in the worker, stopped by the answer
        # that crossed it.
        text = await settled(admin, 11, "priced")
        paid = int(sample(text, "shadoweval_pairs_total", upstream="priced"))
        await wait_for(
            lambda: sum(r["candidate"]["upstream"] == "priced" for r in records(pairs)) == paid,
            what="the priced candidate's records",
        )
        costs = [r["candidate"]["cost_usd"] for r in records(pairs)
                 if r["candidate"]["upstream"] == "priced"]  # fmt: skip
        assert paid < 5 and sum(costs[:-1]) < 5 <= sum(costs)
        assert len(priced.received) == paid
        _, body = await candidates(admin)
        assert {r["name"]: r["state"] for r in body["candidates"]}["priced"] == "paused_budget"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        reader.cancel()
        for fake in (primary, big, small, priced):
            await fake.stop()
    assert os.path.exists(pairs)
