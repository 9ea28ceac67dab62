"""Several relay processes on one port (listen.processes): the kernel spreads connections
over them, the leader reports for all, a dead relay is replaced, SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import pytest

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import parse
from shadoweval.records import iter_jsonl
from shadoweval.testing import FakeUpstream, Latency
from tests.waiting import wait_for

from .test_lifecycle import start_serve
from .test_shadow_worker import sample, scrape

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MESSAGES = [{"role": "user", "content": "hello relays"}]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def relays_of(leader: int) -> list[int]:
    """The leader's children but the shadow worker (the one with a child of its own: its
    pairing process)."""
    return sorted(p for p in children_of(leader) if not children_of(p))


def accepted(pid: int, port: int, state: str = "01") -> int:
    """Connections to ``port`` whose socket this process holds, established (01) or
    listening (0A)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    # By inode: /proc/net/tcp is read in pieces, not as a snapshot, and can list a socket
    # twice while connections come and go.
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, inode = fields[1], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and fields[3] == state and inode in inodes:
                found.add(inode)
    return len(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_relay_processes_share_the_port_report_as_one_and_drain(tmp_path: Path) -> None:
    primary = FakeUpstream(model="prod", latency=Latency.fixed(1.5))
    cand = FakeUpstream(model="cand", latency=Latency.fixed(0.05))
    await primary.start()
    await cand.start()
    pairs = tmp_path / "pairs.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"listen: {{port: 0, processes: 3}}\nadmin: {{port: 0}}\n"
        f"primary: {{url: '{primary.url}'}}\n"
        f"candidates: [{{name: c, url: '{cand.url}'}}]\nsink: {{kind: file, path: '{pairs}'}}\n"
        # scheduling: normal: a SCHED_IDLE worker may not start on a busy machine (by design).
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
        await wait_for(
            lambda: any("admin on http" in line for line in log), what="the proxy to start"
        )
        line = next(line for line in log if "admin on http" in line)
        url = line.split("proxy on ")[1].split(" ")[0]
        admin = line.split("admin on ")[1].strip()
        port = int(url.rsplit(":", 1)[1])
        leader = proc.pid
        relays = relays_of(leader)
        assert len(relays) == 2, relays

        def client() -> openai.AsyncOpenAI:
            # A client per phase, closed after it, so no idle keep-alive connection of an
            # earlier phase is counted (or lands on a killed relay).
            return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)

        async def in_flight(
            c: openai.AsyncOpenAI, n: int, pids: list[int]
        ) -> tuple[list[Any], dict[int, int]]:
            """n concurrent requests, one connection each, once all are accepted (they
            wait on the 1.5 s primary); and which process accepted how many."""
            calls = [
                asyncio.create_task(c.chat.completions.create(model="m", messages=MESSAGES))
                for _ in range(n)
            ]
            where: dict[int, int] = {}
            for _ in range(100):
                await asyncio.sleep(0.01)
                where = {pid: accepted(pid, port) for pid in pids}
                if sum(where.values()) >= n:
                    break
            return calls, where

        async def batch(n: int, pids: list[int]) -> dict[int, int]:
            async with client() as c:
                calls, where = await in_flight(c, n, pids)
                answers = await asyncio.gather(*calls)
            assert all(a.choices[0].message.content == "Echo: hello relays" for a in answers)
            return where

        # 40 connections all landing in two of three processes: p = 3 * (2/3)^40 ~ 3e-7.
        where = await batch(40, [leader, *relays])
        assert sum(where.values()) == 40, where
        assert all(n > 0 for n in where.values()), where

        # One exposition for all four processes: every request, every pair, one readiness.
        text = ""

        async def paired() -> bool:
            nonlocal text
            text = await scrape(admin)
            return sample(text, "shadoweval_pairs_total", upstream="c") == 40

        await wait_for(paired, what="40 pairs in the merged /metrics")
        assert sample(text, "shadoweval_requests_total", role="primary", outcome="ok") == 40
        assert sample(text, "shadoweval_pairs_total", upstream="c") == 40
        assert sample(text, "shadoweval_shadow_sampling_decisions_total", decision="in") == 40
        assert sample(text, "shadoweval_ready") == 1
        assert sample(text, "process_start_time_seconds") < 2 * 10**10  # the leader's alone

        # A relay that dies costs the requests it held; the others take new connections
        # at once, and a replacement joins.
        os.kill(relays[0], signal.SIGKILL)
        # Dead (a zombie until the leader reaps it): its listening socket is closed.
        await wait_for(lambda: not alive(relays[0]), what="the killed relay to exit")
        async with client() as c:
            for _ in range(10):
                answer = await c.chat.completions.create(model="m", messages=MESSAGES)
                assert answer.choices[0].message.content == "Echo: hello relays"

        def replaced() -> bool:
            fresh = set(relays_of(leader)) - set(relays)
            return len(fresh) == 1 and accepted(fresh.pop(), port, "0A") == 1

        await wait_for(replaced, what="a replacement relay on the port")
        [fresh] = set(relays_of(leader)) - set(relays)
        assert b"relay" in Path(f"/proc/{fresh}/cmdline").read_bytes().split(b"\0")
        where = await batch(40, [leader, relays[1], fresh])
        assert where[fresh] > 0, where
        text = await scrape(admin)
        assert sample(text, "shadoweval_process_restarts_total", process="relay") == 1
        assert sample(text, "shadoweval_process_restarts_total", process="shadow_worker") == 0

        # SIGTERM reaches the leader alone; every process answers what it holds.
        async with client() as c:
            calls, where = await in_flight(c, 20, [leader, relays[1], fresh])
            assert sum(where.values()) == 20, where
            proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*calls)
        assert len(answers) == 20
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await wait_for(lambda: not children_of(leader), what="the children to exit")
    finally:
        if proc.returncode is None:
            proc.kill()
        await reader
        await primary.stop()
        await cand.stop()
    # Every shadow of every process reached the one sink, flushed at the end.
    records = list(iter_jsonl([pairs], Counter()))
    assert len(records) == 40 + 10 + 40 + 20, "".join(log[-20:])


def test_several_processes_need_the_shadow_worker() -> None:
    with pytest.raises(ConfigError, match=r"listen\.processes.*shadow_worker\.enabled"):
        parse({"primary": {"url": "http://p"}, "listen": {"processes": 2}})
    cfg = parse(
        {
            "primary": {"url": "http://p"},
            "listen": {"processes": 2},
            "shadow_worker": {"enabled": True},
        }
    )
    assert cfg.listen.processes == 2
