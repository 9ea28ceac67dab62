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


@pytest.mark.parametrize("mode", [*MODES, "relay processes"])
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
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                {"name": "fast", "url": fast.url},
                {"name": "slow", "url": slow.url, "queue_size": 1000},
            ],
            "sink": {"kind": "file", "path": str(pairs_file), "flush_interval_s": 0.2},
            "shutdown": {"grace_s": 10, "shadow_grace_s": 0.5},
            "shadow_worker": {"enabled": MODES.get(mode, True)},
            # Two relay processes: the leader's line adds theirs and the worker's.
            "listen": {"host": "127.0.0.1", "port": 0, "processes": 1 + (mode not in MODES)},
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
    assert not [line for line in proxy.lines if "sent no final counts" in line]
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


def _gone(pid: int) -> bool:
    """Exited (or a zombie waiting to be reaped: it runs nothing any more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("mode", MODES)
async def test_sigterm_with_hostile_candidates_exits_within_the_grace_and_counts_everything(
    mode: str, tmp_path: Path
) -> None:
    """A gzip bomb and a candidate that stalls after its first bytes (its shadows would
    hold on for minutes): the process group still exits within shutdown.grace_s +
    shadow_grace_s, the worker on its own (not killed), with every shadow it had either a
    written pair or a counted drop."""
    primary = FakeUpstream(model="prod", latency=Latency.fixed(0.05), record=False)
    bomb = FakeUpstream(model="bomb", mode="gzip_bomb", bomb_bytes=60 << 20, record=False)
    stall = FakeUpstream(model="stall", mode="stall", record=False)
    good = FakeUpstream(model="good", record=False)
    fakes = (primary, bomb, stall, good)
    for fake in fakes:
        await fake.start()
    pairs_file = tmp_path / "pairs.jsonl"
    grace_s, shadow_grace_s = 3.0, 1.0
    proxy = ProxyProcess(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                {"name": "bomb", "url": bomb.url},
                {"name": "stall", "url": stall.url, "timeout_s": 300, "queue_size": 1000},
                {"name": "good", "url": good.url},
            ],
            "limits": {"capture_max_bytes": 256 * 1024},
            "sink": {"kind": "file", "path": str(pairs_file), "flush_interval_s": 0.2},
            "shutdown": {"grace_s": grace_s, "shadow_grace_s": shadow_grace_s},
            "shadow_worker": {"enabled": MODES[mode]},
        },
        tmp_path,
    )
    answered = 0
    try:
        await proxy.start()
        children = Path(f"/proc/{proxy.pid}/task/{proxy.pid}/children").read_text().split()
        assert len(children) == (1 if MODES[mode] else 0)
        stop_sending = asyncio.Event()

        async def caller(worker: int) -> None:
            nonlocal answered
            async with aiohttp.ClientSession() as s:
                while not stop_sending.is_set():
                    body = {"model": "prod", "messages": [{"role": "user", "content": "hi"}]}
                    try:
                        async with s.post(proxy.url + "/v1/chat/completions", json=body) as r:
                            await r.read()
                            assert r.status == 200
                            answered += 1
                    except aiohttp.ClientConnectionError:
                        return  # draining: not accepted

        callers = [asyncio.create_task(caller(i)) for i in range(4)]
        while answered < 40:  # shadows in flight on every candidate
            await asyncio.sleep(0.05)
        # The process must be gone within the grace periods (a margin for start-up of
        # the interpreter's teardown); terminate() fails the test otherwise.
        terminate = asyncio.create_task(proxy.terminate(timeout=grace_s + shadow_grace_s + 4))
        stop_sending.set()
        await asyncio.gather(*callers)
        assert await terminate == 0
        assert all(_gone(int(pid)) for pid in children)
    finally:
        await proxy.kill()
        for fake in fakes:
            await fake.stop()

    assert not [line for line in proxy.lines if "killing it" in line], proxy.lines[-20:]
    counts = proxy.final_counts()
    if MODES[mode]:  # the worker finished its own shutdown: its books were logged, then sent
        worker = proxy.final_counts("shadow-worker")
        assert worker["pairs"] == counts["pairs"] and worker["sink_written"] > 0
    records = pairs_file.read_bytes().splitlines()
    assert counts["sampled_in"] == 3 * answered, (counts, answered)
    assert (
        counts["sampled_in"]
        == counts["pairs"] + counts["shadows_dropped"] + counts["shadows_internal"]
    )
    assert counts["shadows_dropped"] > 0  # the stalled ones, cut off at shutdown and counted
    assert counts["sink_written"] == counts["pairs"] == len(records)
    assert counts["sink_dropped"] == counts["sink_failed"] == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_sink_that_cannot_flush_gets_what_is_left_of_the_grace_and_counts_the_rest(
    mode: str, tmp_path: Path
) -> None:
    """Callers take most of shutdown.grace_s to drain and Kafka is unreachable: the sink
    (the worker's, with the worker) flushes in what is left of grace_s + shadow_grace_s,
    not in a fresh grace_s of its own, and counts what it could not write."""
    primary = FakeUpstream(model="prod", latency=Latency.fixed(3.0))
    cand = FakeUpstream(model="cand", record=False)
    for fake in (primary, cand):
        await fake.start()
    grace_s, shadow_grace_s = 6.0, 1.0
    proxy = ProxyProcess(
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [{"name": "cand", "url": cand.url}],
            # Nothing listens there (port 9 is discard, not served on loopback).
            "sink": {"kind": "kafka", "bootstrap_servers": "127.0.0.1:9"},
            "shutdown": {"grace_s": grace_s, "shadow_grace_s": shadow_grace_s},
            "shadow_worker": {"enabled": MODES[mode]},
        },
        tmp_path,
    )
    try:
        await proxy.start()

        async def call() -> int:
            body = {"model": "prod", "messages": [{"role": "user", "content": "hi"}]}
            async with (
                aiohttp.ClientSession() as s,
                s.post(proxy.url + "/v1/chat/completions", json=body) as r,
            ):
                await r.read()
                return r.status

        calls = [asyncio.create_task(call()) for _ in range(4)]
        while len(primary.received) < 4:  # all four wait on the primary's 3 s
            await asyncio.sleep(0.02)
        # A fresh grace_s for the sink would take 3 + 6 s.
        terminate = asyncio.create_task(proxy.terminate(timeout=grace_s + shadow_grace_s + 1.5))
        assert await asyncio.gather(*calls) == [200] * 4
        assert await terminate == 0
    finally:
        await proxy.kill()
        for fake in (primary, cand):
            await fake.stop()
    assert not [line for line in proxy.lines if "killing it" in line], proxy.lines[-20:]
    counts = proxy.final_counts()
    assert counts["sampled_in"] == counts["pairs"] == 4
    unwritten = counts["sink_dropped"] + counts["sink_failed"] + counts["sink_spilled"]
    assert counts["sink_written"] == 0 and unwritten == 4  # counted, not lost
