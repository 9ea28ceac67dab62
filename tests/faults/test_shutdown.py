"""SIGTERM under load, on a real ``shadoweval serve`` process: every request the proxy
accepted is answered in full, exactly as the primary answered it; new connections are
refused once draining starts; the process exits 0; and the final accounting closes: every
shadow is a written pair or a counted drop, and every written pair is in the file. With the
shadow worker the proxy's final line is the whole process group's, and a hostile candidate
(a gzip bomb, a stall) cannot hold the exit past the grace periods nor get the worker
killed with its records uncounted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from shadoweval.testing import FakeUpstream, Latency
from tests.faults.helpers import ProxyProcess

MODES = {"one process": False, "shadow worker": True}


def answer(data: bytes) -> Any:
    obj = orjson.loads(data)
    obj.pop("created", None)  # the fake's clock; everything else must match
    return obj


@pytest.mark.parametrize("mode", MODES)
async def test_sigterm_under_load_answers_everything_accepted_and_loses_nothing(
    mode: str, tmp_path: Path
) -> None:
    primary = FakeUpstream(model="prod", latency=Latency.fixed(0.3), record=False)
    fast = FakeUpstream(model="fast", record=False)
    # Slower than shadow_grace_s: its in-flight shadows are cut off and counted at shutdown.
    slow = FakeUpstream(model="slow", latency=Latency.fixed(3.0), record=False)
    for fake in (primary, fast, slow):
        await fake.start()
    pairs_file = tmp_path / "pairs.jsonl"
    proxy = ProxyProcess(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                {"name": "fast", "url": fast.url},
                {"name": "slow", "url": slow.url, "queue_size": 1000},
            ],
            "sink": {"kind": "file", "path": str(pairs_file), "flush_interval_s": 0.2},
            "shutdown": {"grace_s": 10, "shadow_grace_s": 0.5},
            "shadow_worker": {"enabled": MODES[mode]},
        },
        tmp_path,
    )
    answered: dict[str, Any] = {}  # request text -> the caller's answer
    refused = 0
    try:
        await proxy.start()
        stop_sending = asyncio.Event()

        async def caller(worker: int) -> None:
            nonlocal refused
            timeout = aiohttp.ClientTimeout(total=20)
            async with aiohttp.ClientSession(timeout=timeout) as s:
                for n in range(1000):
                    if stop_sending.is_set():
                        return
                    text = f"w{worker}-{n}"
                    body = {"model": "prod", "messages": [{"role": "user", "content": text}]}
                    try:
                        async with s.post(proxy.url + "/v1/chat/completions", json=body) as r:
                            data = await r.read()
                            assert r.status == 200, (r.status, data)
                            answered[text] = answer(data)
                    except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError):
                        # Not accepted: draining had begun. Never a partial answer.
                        refused += 1
                        return

        workers = [asyncio.create_task(caller(i)) for i in range(8)]
        await asyncio.sleep(1.5)
        signalled = time.monotonic()
        terminate = asyncio.create_task(proxy.terminate(timeout=30))
        await asyncio.sleep(1.0)
        stop_sending.set()
        await asyncio.gather(*workers)
        assert await terminate == 0
        assert time.monotonic() - signalled < 15
    finally:
        await proxy.kill()
        for fake in (primary, fast, slow):
            await fake.stop()

    # Every accepted request got the primary's full answer.
    assert len(answered) >= 16, len(answered)
    for text, got in answered.items():
        assert got["choices"][0]["message"]["content"] == f"Echo: {text}"
        assert got["model"] == "prod"
    # The final accounting closes, and the file holds exactly the written pairs (with the
    # worker: the proxy's line counts the worker's shadows and records too).
    counts = proxy.final_counts()
    records = [orjson.loads(line) for line in pairs_file.read_bytes().splitlines()]
    assert counts["sampled_in"] == 2 * len(answered), (counts, len(answered))
    assert (
        counts["sampled_in"]
        == counts["pairs"] + counts["shadows_dropped"] + counts["shadows_internal"]
    )
    assert counts["shadows_internal"] == 0 and counts["sink_dropped"] == counts["sink_failed"] == 0
    assert counts["sink_written"] == counts["pairs"] == len(records)
    # The fast candidate finished every shadow in the grace period: one pair per request.
    fast_texts = sorted(
        r["request"]["messages"][0]["content"]
        for r in records
        if r["candidate"]["upstream"] == "fast"
    )
    assert fast_texts == sorted(answered)
    assert counts["shadows_dropped"] > 0  # the slow one's were cut off, and counted
