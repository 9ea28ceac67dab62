"""Graceful shutdown: SIGTERM drains in-flight requests, flushes the sink, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from shadoweval.testing import FakeUpstream, Latency, running_stack
from tests.waiting import wait_for


async def test_stop_flushes_the_file_sink(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    sink = {"kind": "file", "path": str(path), "flush_interval_s": 60}  # only close() flushes
    cands = {"a": FakeUpstream(), "b": FakeUpstream()}
    async with (
        running_stack(candidates=cands, overrides={"sink": sink}) as stack,
        aiohttp.ClientSession() as s,
    ):
        for i in range(25):
            body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
            async with s.post(stack.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
        await asyncio.sleep(0.3)
        assert not path.exists() or path.stat().st_size == 0
    lines = path.read_bytes().splitlines()
    assert len(lines) == 50
    assert {orjson.loads(x)["candidate"]["upstream"] for x in lines} == {"a", "b"}


async def start_serve(config: Path) -> asyncio.subprocess.Process:
    """``shadoweval serve`` as a real process, its log on a pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadoweval", "serve", "--config", str(config),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("worker", [False, True], ids=["one-process", "shadow-worker"])
async def test_sigterm_drains_in_flight_and_exits_zero(tmp_path: Path, worker: bool) -> None:
    primary = FakeUpstream(model="prod", latency=Latency.fixed(1.0))
    cand = FakeUpstream(model="cand", latency=Latency.fixed(0.2))
    await primary.start()
    await cand.start()
    pairs = tmp_path / "pairs.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"listen: {{port: 0}}\nadmin: {{port: 0}}\nprimary: {{url: '{primary.url}'}}\n"
        f"candidates: [{{name: c, url: '{cand.url}'}}]\nsink: {{kind: file, path: '{pairs}'}}\n"
        # scheduling: normal: a SCHED_IDLE worker may not start on a busy machine (by design).
        f"shadow_worker: {{enabled: {str(worker).lower()}, scheduling: normal}}\n"
    )
    proc = await start_serve(cfg)
    try:
        assert proc.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "proxy exited early"
            if "proxy on " in line:
                url = line.split("proxy on ")[1].split(" ")[0]
        async with aiohttp.ClientSession() as s:

            async def call(i: int) -> int:
                body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    text = await r.text()
                    assert r.status == 200, text
                    return r.status

            tasks = [asyncio.create_task(call(i)) for i in range(10)]
            # SIGTERM once all ten are waiting on the 1 s primary.
            await wait_for(lambda: len(primary.received) == 10, what="ten requests at the primary")
            proc.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*tasks)
        assert statuses == [200] * 10
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await primary.stop()
        await cand.stop()
    records = [orjson.loads(x) for x in pairs.read_bytes().splitlines()]
    assert len(records) == 10
    assert all(r["primary"]["status"] == 200 and r["candidate"]["status"] == 200 for r in records)
