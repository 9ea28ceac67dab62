"""``shadoweval replay``: an inputs file through the primary and candidates of a config."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.config.proxy import Config, parse
from shadoweval.replay import InputError, parse_input, read_inputs, replay
from shadoweval.testing.fake_upstream import FakeUpstream, Latency

Json = dict[str, Any]


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeUpstream]]:
    ups = {
        "prod": FakeUpstream(model="prod-model", latency=Latency.fixed(0.05)),
        "cand": FakeUpstream(model="cand-model", latency=Latency.fixed(0.05), style="upper"),
    }
    for fake in ups.values():
        await fake.start()
    yield ups
    for fake in ups.values():
        await fake.stop()


def config(fakes: dict[str, FakeUpstream]) -> Json:
    return {
        "primary": {"name": "prod", "url": fakes["prod"].url},
        "candidates": [
            {
                "name": "cand",
                "url": fakes["cand"].url,
                "model": "cand-model",
                "api_key_env": "CAND_KEY",
            },
            # The primary asked again, with the caller's (here: the replay's) credentials.
            {
                "name": "control",
                "url": fakes["prod"].url,
                "role": "control",
                "forward_caller_auth": True,
            },
        ],
        "pricing": {"models": {"prod-model": {"input_per_mtok": 1, "output_per_mtok": 2}}},
    }


INPUTS = [
    {"model": "prod-model", "messages": [{"role": "user", "content": "Hello there"}]},
    {
        "request": {
            "model": "prod-model",
            "messages": [{"role": "user", "content": "Mail me at a@b.example.com"}],
        },
        "expected": "Echo: Mail me at a@b.example.com",
        "task": "echo",
    },
    {
        "route": "completions",
        "request": {"model": "prod-model", "prompt": "Once upon"},
        "expected": "x",
    },
    {
        "model": "prod-model",
        "messages": [{"role": "user", "content": "stream me"}],
        "stream": True,
        "task": "s",
    },
    *[
        {"model": "prod-model", "messages": [{"role": "user", "content": f"q{i}"}]}
        for i in range(16)
    ],
]


def write_inputs(path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in INPUTS))
    return path


async def test_replay_writes_pairs_for_every_input_and_candidate(
    fakes: dict[str, FakeUpstream],
    tmp_path: Path,
    validate_pair: Callable[[Json], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAND_KEY", "cand-secret")
    cfg: Config = parse(config(fakes), environ={})
    inputs = read_inputs(write_inputs(tmp_path / "inputs.jsonl"))
    seen: list[tuple[int, int]] = []
    out = io.BytesIO()
    started = time.perf_counter()
    async with asyncio.timeout(60):
        summary = await replay(
            cfg,
            inputs,
            out,
            concurrency=4,
            primary_auth="Bearer replay-secret",
            progress=lambda done, total: seen.append((done, total)),
        )
    elapsed = time.perf_counter() - started
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert summary.pairs == len(records) == 2 * len(INPUTS)
    assert seen[-1] == (len(INPUTS), len(INPUTS)) and len(seen) == len(INPUTS)
    # 20 inputs, 4 at a time, 50 ms each: at least 5 rounds; never all at once.
    assert elapsed >= 0.25
    for rec in records:
        validate_pair(rec)
        assert rec["source"] == "replay"
        assert rec["primary"]["error_type"] is None and rec["candidate"]["error_type"] is None
    by_upstream = {
        u: [r for r in records if r["candidate"]["upstream"] == u] for u in ("cand", "control")
    }
    assert len(by_upstream["cand"]) == len(by_upstream["control"]) == len(INPUTS)

    mail = next(r for r in by_upstream["cand"] if r["task"] == "echo")
    assert mail["expected"] == "Echo: Mail me at [REDACTED:email]"  # redacted like the rest
    assert mail["candidate"]["output_text"] == "MAIL ME AT [REDACTED:email]"
    assert next(r for r in records if r["route"] == "completions")["path"] == "/v1/completions"
    stream = next(r for r in by_upstream["control"] if r["task"] == "s")
    assert stream["primary"]["stream"] and stream["primary"]["ttft_s"] is not None
    hello = next(
        r for r in by_upstream["cand"] if r["request"]["messages"][0]["content"] == "Hello there"
    )
    assert "expected" not in hello  # only inputs that give one carry it
    assert mail["primary"]["cost_usd"] is not None  # priced like live traffic

    # The primary got the input untouched, with the replay's credentials; the candidate its
    # own transform and key; the control the forwarded credentials.
    prod_bodies = [r for r in fakes["prod"].received if r.path == "/v1/chat/completions"]
    assert all(r.body.get("model") == "prod-model" for r in prod_bodies)
    assert all(r.headers.get("Authorization") == "Bearer replay-secret" for r in prod_bodies)
    cand = fakes["cand"].received
    assert {r.body["model"] for r in cand} == {"cand-model"}
    assert {r.headers.get("Authorization") for r in cand} == {"Bearer cand-secret"}
    streamed = next(r for r in cand if r.body.get("stream"))
    assert streamed.body["stream_options"] == {"include_usage": True}


def test_input_lines_and_routes() -> None:
    assert parse_input({"messages": []}, "x").route == "chat"
    assert parse_input({"prompt": "p"}, "x").route == "completions"
    assert parse_input({"input": "p"}, "x").route == "responses"
    emb = parse_input({"route": "/v1/embeddings", "input": "p", "task": "t"}, "x")
    assert emb.route == "embeddings" and emb.task == "t" and emb.body == {"input": "p"}
    wrapped = parse_input({"request": {"messages": []}, "expected": {"a": 1}}, "x")
    assert wrapped.expected == {"a": 1} and wrapped.body == {"messages": []}
    with pytest.raises(InputError, match="line 3: cannot tell the route"):
        parse_input({"model": "m"}, "line 3")
    with pytest.raises(InputError, match="unknown route"):
        parse_input({"route": "images", "prompt": "p"}, "x")


async def test_replay_cli_then_report(
    fakes: dict[str, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAND_KEY", "cand-secret")
    monkeypatch.setenv("PRIMARY_KEY", "primary-secret")
    cfg_file = tmp_path / "proxy.yaml"
    cfg_file.write_text(json.dumps(config(fakes)))  # JSON is YAML
    inputs = write_inputs(tmp_path / "inputs.jsonl")
    out = tmp_path / "out" / "pairs.jsonl"
    args = ["replay", str(inputs), "--config", str(cfg_file), "--out", str(out)]
    # The CLI runs its own event loop: run it off this test's loop.
    code = await asyncio.to_thread(
        main, [*args, "--primary-key-env", "PRIMARY_KEY", "--concurrency", "8"]
    )
    assert code == 0
    assert len(out.read_bytes().splitlines()) == 2 * len(INPUTS)
    # Not a terminal: plain progress lines (a CI log stays readable), ending with all done.
    err = capsys.readouterr().err
    shown = [line for line in err.splitlines() if line.startswith("replayed ")]
    assert shown and shown[-1] == f"replayed {len(INPUTS)}/{len(INPUTS)}", err
    assert "\r" not in err and "\x1b" not in err
    assert await asyncio.to_thread(main, [*args, "--append"]) == 0
    assert len(out.read_bytes().splitlines()) == 4 * len(INPUTS)
    assert await asyncio.to_thread(main, [*args, "--primary-key-env", "UNSET_VARIABLE_X"]) == 2

    report = tmp_path / "report.json"
    code = await asyncio.to_thread(
        main, ["report", str(out), "--source", "replay", "--json", str(report), "-q"]
    )
    data = json.loads(report.read_text())
    assert data["inputs"]["pair_records"] == 4 * len(INPUTS)
    assert {r["upstream"] for r in data["candidates"]} == {"cand"}
    assert data["control"] == "control"
    # No scores yet: the quality rule cannot be decided, the rest can.
    assert data["candidates"][0]["verdict"]["status"] == "insufficient"
    assert code == 0
