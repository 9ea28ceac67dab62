"""Live reload with real traffic: candidates added and removed under steady load (streamed
and not) with zero caller errors, a broken file refused while the old configuration keeps
running, a restart-only key refused by name, a kept candidate's budget carried over. In one
process (in-process, and ``shadoweval serve`` on SIGHUP), with the shadow worker and with
``listen.processes: 2`` (the file watched, swapped like a ConfigMap)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shadoweval.config import Config
from shadoweval.proxy.reload import Reloader
from shadoweval.testing import FakeUpstream, running_stack
from shadoweval.testing.fake_upstream import Latency
from tests.unit.test_reload import ConfigMap
from tests.waiting import wait_for

from .test_relays import children_of
from .test_shadow_worker import sample, scrape

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="symlink swaps")


class Load:
    """Callers sending without pause, every other request streamed; every failure counted."""

    def __init__(self, url: str, callers: int = 4) -> None:
        self._url = f"{url}/v1/chat/completions"
        self._callers = callers
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ok = 0
        self.errors: list[str] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller(i)) for i in range(self._callers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _caller(self, i: int) -> None:
        n = 0
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                n += 1
                stream = n % 2 == 0
                body = {
                    "model": "prod-model",
                    "messages": [{"role": "user", "content": f"caller {i} request {n}"}],
                    "stream": stream,
                }
                try:
                    async with session.post(self._url, json=body) as resp:
                        text = await resp.text()
                        if resp.status != 200 or ("[DONE]" not in text if stream else not text):
                            self.errors.append(f"{resp.status}: {text[:100]}")
                        else:
                            self.ok += 1
                except aiohttp.ClientError as exc:
                    self.errors.append(repr(exc))

    async def more(self, n: int) -> None:
        """Return once ``n`` more requests have been answered."""
        target = self.ok + n
        await wait_for(lambda: self.ok >= target, what=f"{n} more answers")


def records_of(records: list[dict[str, Any]], name: str) -> int:
    return sum(1 for r in records if r["candidate"]["upstream"] == name)


async def test_reload_in_one_process_adds_removes_and_keeps_state(tmp_path: Path) -> None:
    b = FakeUpstream(model="b-model")
    await b.start()
    options = {"cand-a": {"budget": {"max_requests": 1_000_000}}}
    try:
        async with running_stack(candidate_options=options) as stack:
            proxy = stack.proxy
            dispatcher = proxy.dispatcher
            assert dispatcher is not None
            cm = ConfigMap(tmp_path)
            raw = proxy.cfg.for_children()
            cm.write(raw)
            reloader = Reloader(cm.path, proxy.cfg, proxy.reload, proxy.metrics, environ={})
            load = Load(stack.url)
            load.start()
            await load.more(20)
            campaign = dispatcher.campaigns["cand-a"]
            lane_client = dispatcher.clients[0]

            # Added by a ConfigMap swap: its records appear; cand-a is untouched.
            cand_b = {"name": "cand-b", "url": b.url}
            raw["candidates"] = [*raw["candidates"], cand_b]
            cm.write(raw)
            assert await reloader.poll() == "applied"
            await wait_for(
                lambda: records_of(stack.memory.records, "cand-b") >= 5, what="cand-b records"
            )
            assert dispatcher.campaigns["cand-a"] is campaign  # budget state carried over
            assert dispatcher.clients[0] is lane_client  # its queue, breaker and pool too
            requests_before = campaign.requests
            await load.more(10)
            assert campaign.requests > requests_before  # counting on, not from zero

            # Changed (its rate): a new lane, the spend and counts carried over.
            raw["candidates"][0] = {**raw["candidates"][0], "sample_rate": 0.5}
            cm.write(raw)
            assert await reloader.poll() == "applied"
            changed = dispatcher.campaigns["cand-a"]
            assert changed is not campaign and changed.requests >= campaign.requests > 0

            # Removed: it stops being offered shadows; what it held finishes.
            raw["candidates"] = [cand_b]
            cm.write(raw)
            assert await reloader.poll() == "applied"
            assert list(dispatcher.campaigns) == ["cand-b"]
            await wait_for(lambda: not dispatcher._retiring, what="the removed lanes to drain")
            kept_a = records_of(stack.memory.records, "cand-a")
            b_before = records_of(stack.memory.records, "cand-b")
            await wait_for(
                lambda: records_of(stack.memory.records, "cand-b") >= b_before + 5,
                what="more cand-b records",
            )
            assert records_of(stack.memory.records, "cand-a") == kept_a

            # Broken: refused, the old configuration keeps mirroring.
            cm.write("candidates: [{name: x}]\n")
            assert await reloader.poll() == "invalid"
            b_before = records_of(stack.memory.records, "cand-b")
            await wait_for(
                lambda: records_of(stack.memory.records, "cand-b") >= b_before + 5,
                what="cand-b records after the broken file",
            )
            await load.stop()
            assert load.errors == [] and load.ok > 0
    finally:
        await b.stop()


# -- shadoweval serve, as it runs in a pod -------------------------------------------------


async def start_serve(config: Path, poll_s: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadoweval", "serve", "--config", str(config),
        "--reload-poll-s", str(poll_s),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


MODES = {
    # One process, reloaded on SIGHUP only (the file is not watched).
    "one-process-sighup": ({"enabled": False}, 1, 0.0),
    "shadow-worker": ({"enabled": True, "scheduling": "normal"}, 1, 0.1),
    "two-processes": ({"enabled": True, "scheduling": "normal"}, 2, 0.1),
}


@pytest.mark.parametrize("mode", list(MODES))
async def test_serve_reloads_under_load(tmp_path: Path, mode: str) -> None:
    worker, processes, poll_s = MODES[mode]
    primary = FakeUpstream(model="prod-model")
    fake_a, fake_b = FakeUpstream(model="a-model"), FakeUpstream(model="b-model")
    for fake in (primary, fake_a, fake_b):
        await fake.start()
    pairs = tmp_path / "pairs.jsonl"
    # scheduling: normal: a SCHED_IDLE worker may not start on a busy machine (by design).
    raw: dict[str, Any] = {
        "listen": {"port": 0, "processes": processes},
        "admin": {"port": 0},
        "primary": {"url": primary.url},
        "candidates": [{"name": "a", "url": fake_a.url}],
        "sink": {"kind": "file", "path": str(pairs)},
        "shadow_worker": worker,
        "shutdown": {"grace_s": 5, "shadow_grace_s": 2},
        # A share of the callers' unpaced load: enough shadows to see, few enough that the
        # niced pairing process keeps up on a busy 2-core machine (its counts are the test's).
        "sampling": {"rate": 0.2},
    }
    cm = ConfigMap(tmp_path / "etc")
    cm.root.mkdir()
    cm.write(raw)
    proc = await start_serve(cm.path, poll_s)
    log: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.append(line.decode())

    reader = asyncio.create_task(read_log())
    load: Load | None = None
    try:
        await wait_for(lambda: any("admin on http" in line for line in log), what="the start")
        line = next(line for line in log if "admin on http" in line)
        url = line.split("proxy on ")[1].split(" ")[0]
        admin = line.split("admin on ")[1].strip()
        text = ""

        async def metric(name: str, **labels: str) -> float:
            nonlocal text
            text = await scrape(admin)
            return sample(text, name, **labels)

        async def until(name: str, at_least: float, **labels: str) -> None:
            async def reached() -> bool:
                return await metric(name, **labels) >= at_least

            await wait_for(reached, what=f"{name}{labels} >= {at_least}", state=lambda: text)

        def change(update: dict[str, Any]) -> None:
            raw.update(update)
            cm.write(raw)
            if poll_s == 0:
                proc.send_signal(signal.SIGHUP)

        reloads = "shadoweval_config_reloads_total"
        pairs_total = "shadoweval_pairs_total"
        load = Load(url, callers=2)
        load.start()
        await until(pairs_total, 5, upstream="a")
        first_hash = [s for s in text.splitlines() if s.startswith("shadoweval_config_info{")]
        assert len(first_hash) == 1

        # Added.
        change({"candidates": [*raw["candidates"], {"name": "b", "url": fake_b.url}]})
        await until(reloads, 1, outcome="applied")
        await until(pairs_total, 5, upstream="b")
        hashes = [s for s in text.splitlines() if s.startswith("shadoweval_config_info{")]
        assert len(hashes) == 1 and hashes != first_hash

        # Removed: no process offers it anything once applied; what it held finishes.
        change({"candidates": [{"name": "b", "url": fake_b.url}]})
        await until(reloads, 2, outcome="applied")
        decisions = "shadoweval_shadow_sampling_decisions_total"
        offered_a = await metric(decisions, upstream="a")
        b_now = sample(text, pairs_total, upstream="b")
        await until(pairs_total, b_now + 5, upstream="b")
        assert sample(text, decisions, upstream="a") == offered_a

        async def a_drained() -> bool:
            return (
                await metric("shadoweval_shadow_in_flight", upstream="a")
                + sample(text, "shadoweval_shadow_queue_depth", upstream="a")
            ) == 0

        await wait_for(a_drained, what="a's last shadows")

        # Broken: refused; the old configuration keeps mirroring.
        cm.write("primary: {url: 'not a url'}\n")
        if poll_s == 0:
            proc.send_signal(signal.SIGHUP)
        await until(reloads, 1, outcome="invalid")
        b_now = sample(text, pairs_total, upstream="b")
        await until(pairs_total, b_now + 5, upstream="b")
        # The start-up error, under a line that says the old configuration stays.
        said = "".join(log)
        assert "configuration in force stays: invalid configuration in" in said
        assert "  primary.url: " in said

        # Restart-only: refused by name.
        change({"listen": {**raw["listen"], "port": 1}})
        await until(reloads, 1, outcome="refused")
        assert any("listen.port only change with a restart" in line for line in log)
        raw["listen"]["port"] = 0

        if processes > 1:
            # Every relay applies it too: with the rate at 0 no process mirrors anything.
            change({"sampling": {"rate": 0.0}})
            await until(reloads, 3, outcome="applied")
            seen = await metric(decisions, upstream="b")
            before_in = sample(text, decisions, decision="in")
            await load.stop()
            # Fresh connections: the kernel spreads them over both processes.
            for _ in range(40):
                async with aiohttp.ClientSession() as s:
                    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
                    async with s.post(f"{url}/v1/chat/completions", json=body) as resp:
                        assert resp.status == 200
            await until(decisions, seen + 40, upstream="b")
            assert sample(text, decisions, decision="in") == before_in
        elif worker["enabled"]:
            # A worker that dies is replaced with the configuration in force now, not the
            # one from start-up: b, added by a reload, still gets shadows.
            (worker_pid,) = [p for p in children_of(proc.pid) if children_of(p)]
            os.kill(worker_pid, signal.SIGKILL)
            await until("shadoweval_process_restarts_total", 1, process="shadow_worker")
            b_now = await metric(pairs_total, upstream="b")
            await until(pairs_total, b_now + 5, upstream="b")
            await load.stop()
        else:
            await load.stop()
        assert load.errors == [] and load.ok > 0
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if load is not None and not load._stop.is_set():
            await load.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        for fake in (primary, fake_a, fake_b):
            await fake.stop()
    # Every record is whole and names a configured candidate.
    names = {json.loads(line)["candidate"]["upstream"] for line in pairs.read_text().splitlines()}
    assert names == {"a", "b"}


async def test_a_new_sink_takes_over_and_nothing_is_lost(tmp_path: Path) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    overrides = {"sink": {"kind": "file", "path": str(first)}}
    async with running_stack(overrides=overrides) as stack:
        proxy = stack.proxy
        cm = ConfigMap(tmp_path)
        raw = proxy.cfg.for_children()
        cm.write(raw)
        reloader = Reloader(cm.path, proxy.cfg, proxy.reload, proxy.metrics, environ={})
        load = Load(stack.url)
        load.start()
        await load.more(20)
        raw["sink"] = {**raw["sink"], "path": str(second)}
        cm.write(raw)
        assert await reloader.poll() == "applied"
        await wait_for(
            lambda: second.exists() and second.stat().st_size > 0, what="records in the new file"
        )
        await load.stop()
        assert load.errors == []
    pairs = proxy.metrics.registry.get_sample_value(
        "shadoweval_pairs_total", {"upstream": "cand-a"}
    )
    lines = [line for f in (first, second) for line in f.read_text().splitlines()]
    assert len(lines) == pairs and pairs
    assert first.stat().st_size and second.stat().st_size  # both written, none lost between


@pytest.mark.parametrize("worker", [False, True], ids=["one-process", "shadow-worker"])
async def test_a_queued_shadow_keeps_the_redaction_it_was_offered_under(
    tmp_path: Path, worker: bool
) -> None:
    """With the worker, the answer is recorded in its pairing process: the shadow carries
    the digest of the configuration it was offered under, and the pairing process keeps
    that configuration's pairing."""
    slow = FakeUpstream(model="slow", latency=Latency.fixed(1.0))
    options = {"cand-a": {"concurrency": 1, "queue_size": 16}}
    pairs = tmp_path / "pairs.jsonl"
    overrides: dict[str, Any] = {}
    if worker:
        overrides = {
            "shadow_worker": {"enabled": True, "scheduling": "normal"},
            "sink": {"kind": "file", "path": str(pairs), "flush_interval_s": 0.05},
        }

    def written() -> list[dict[str, Any]]:
        if not pairs.exists():
            return []
        return [json.loads(line) for line in pairs.read_text().splitlines()]

    async with running_stack(
        candidates={"cand-a": slow}, candidate_options=options, overrides=overrides
    ) as stack:
        proxy = stack.proxy
        url = f"{stack.url}/v1/chat/completions"

        async def send(n: int) -> None:
            async with aiohttp.ClientSession() as s:
                for i in range(n):
                    content = f"ticket TK-{i:04d}"
                    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
                    async with s.post(url, json=body) as resp:
                        assert resp.status == 200

        await send(3)  # queued behind the slow candidate when the reload comes
        raw = proxy.cfg.for_children()
        raw["redaction"]["custom"] = [{"name": "ticket", "pattern": r"TK-\d{4}"}]
        await proxy.reload(Config.model_validate(raw))
        assert len(written() if worker else stack.memory.records) < 3  # some still queued
        await send(3)
        if worker:
            await wait_for(lambda: len(written()) >= 6, what="6 records", timeout=60)
            records = written()
        else:
            records = await stack.memory.wait_for(6, timeout=30)
    texts = [json.dumps(r["request"]) for r in records]
    assert sum("TK-0" in t for t in texts) == 3  # offered before: the old rules
    assert sum("TK-0" not in t for t in texts) == 3  # after: redacted


async def test_a_probe_change_restarts_the_scheduler() -> None:
    from shadoweval.testing import RedTeamFake

    from .test_probes import CANARY, SUITES

    probes: dict[str, Any] = {
        "enabled": True,
        "suites": [str(SUITES / "jailbreak.yaml")],
        "rate_per_minute": 1200,
        "concurrency": 2,
        "canary": CANARY,
    }
    primary = RedTeamFake(model="prod-model", behaviour="robust")
    candidate = RedTeamFake(model="cand-model", behaviour="vulnerable")
    async with running_stack(primary, {"cand": candidate}, overrides={"probes": probes}) as stack:
        proxy = stack.proxy
        old = proxy.probes
        assert old is not None
        await wait_for(lambda: old.sent >= 2, what="probes from the first scheduler")
        raw = proxy.cfg.for_children()
        raw["probes"]["suites"] = [str(SUITES / "prompt_extraction.yaml")]
        await proxy.reload(Config.model_validate(raw))
        new = proxy.probes
        assert new is not None and new is not old
        assert {p.category for p in new.probes} != {p.category for p in old.probes}
        await wait_for(lambda: new.sent >= 2, what="probes from the new scheduler")
        stopped_at = old.sent
        await wait_for(lambda: new.sent >= 6, what="more probes from the new scheduler")
        assert old.sent == stopped_at  # the old one stopped
