"""The caller is never hurt: candidate bombs, loops, connection floods, stalled drains,
double generations, HTTP/1.0 keep-alive, reason phrases and request targets."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadoweval.config.proxy import parse
from shadoweval.metrics import Metrics
from shadoweval.proxy.http import HttpProtocol, HttpServer, target_problem
from shadoweval.proxy.loops import HOP_HEADER, hop_id, self_loops
from shadoweval.proxy.upstream import UpstreamError, UpstreamPool
from shadoweval.records import iter_jsonl
from shadoweval.testing import FakeUpstream, running_stack
from shadoweval.testing.harness import Stack
from tests.faults.helpers import proc_rss_bytes, until
from tests.security.rawhttp import exchange

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
LIMIT = 64 * 1024


async def post_chat(url: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=CHAT) as resp,
    ):
        await resp.read()
        return resp.status


MODES = {"one process": False, "shadow worker": True}
# The sizes of the faults this suite reproduces: a 1 GiB answer, a gzip body inflating to 60 MiB.
BOMBS = {"length": "huge_length", "chunked": "huge_chunked", "gzip": "gzip_bomb"}
BOMB_BYTES = {"length": 1 << 30, "chunked": 1 << 30, "gzip": 60 << 20}


def stack_options(worker: bool, tmp_path: Path, **limits: int) -> dict[str, Any]:
    """Config overrides for one of the two modes: with the worker, records come from its
    file sink (the memory sink lives in the proxy's process)."""
    options: dict[str, Any] = {"limits": {"capture_max_bytes": LIMIT, **limits}}
    if worker:
        options["shadow_worker"] = {"enabled": True}
        options["sink"] = {"kind": "file", "path": str(tmp_path / "pairs.jsonl"),
                           "flush_interval_s": 0.05}  # fmt: skip
    return options


async def records_of(stack: Stack, count: int, tmp_path: Path) -> list[dict[str, Any]]:
    """The first ``count`` pair records, whichever sink holds them."""
    if stack.proxy.worker is None:
        return await stack.memory.wait_for(count)
    path = tmp_path / "pairs.jsonl"
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = list(iter_jsonl([path], Counter())) if path.exists() else []
        return len(found) >= count

    await until(enough, 30, f"{count} records in {path.name}")
    return found


async def scrape(admin_url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(admin_url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def scrape_until(admin_url: str, ready: Any, timeout: float = 60.0) -> str:
    """Scrape until ``ready(text)``; the last scrape's text either way (asserted after)."""
    text = await scrape(admin_url)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not ready(text):
                await asyncio.sleep(0.2)
                text = await scrape(admin_url)
    return text


def exposed(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def shadow_pid(stack: Stack) -> int:
    """The process the shadows run in: the worker's, or this one."""
    worker = stack.proxy.worker
    pid = worker.process.pid if worker is not None else None
    return pid if pid is not None else os.getpid()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", BOMBS)
async def test_a_candidate_bomb_is_cut_at_the_capture_limit(
    kind: str, mode: str, tmp_path: Path
) -> None:
    """A 1 GiB answer (length-framed or chunked) or a gzip bomb: read up to the capture
    limit, then the connection is closed; callers and the healthy candidate never notice,
    the shadow process's memory stays flat, its metrics stay on /metrics."""
    size = BOMB_BYTES[kind]
    bomb = FakeUpstream(model="bomb", mode=BOMBS[kind], bomb_bytes=size)  # type: ignore[arg-type]
    good = FakeUpstream(model="good")
    options = stack_options(MODES[mode], tmp_path)
    async with running_stack(candidates={"bomb": bomb, "good": good}, overrides=options) as stack:
        pid = shadow_pid(stack)
        rss_before = proc_rss_bytes(pid)
        # Callers keep being answered while the bombs are read.
        statuses = await asyncio.gather(*(post_chat(stack.url) for _ in range(4)))
        assert statuses == [200] * 4  # the caller's answer is the primary's
        records = await records_of(stack, 8, tmp_path)
        by_side = {r["candidate"]["upstream"]: r["candidate"] for r in records}
        side = by_side["bomb"]
        assert side["capture_truncated"] is True and side["truncated"] is True
        assert side["error_type"] is None  # a capture limit, not an upstream failure
        assert len(side["output_text"].encode()) <= LIMIT
        assert by_side["good"]["error_type"] is None  # no collateral
        assert by_side["good"]["output_text"] == "Echo: hi"
        if kind != "gzip":
            await until(lambda: bomb.bombs_cut >= 4, 30, "the bombs' connections closed")
            assert bomb.bomb_sent < size // 4  # the rest was never read
        # Bounded by the capture limit, not by the answer: 4 bombs of 1 GiB or 60 MiB.
        assert proc_rss_bytes(pid) - rss_before < 64 << 20
        # The shadow process's counters are on the proxy's /metrics (a scrape the idle-
        # priority worker cannot answer in time shows its last ones: scrape until current).
        truncated = "shadoweval_capture_truncated_total"
        text = await scrape_until(
            stack.proxy.admin_url,
            lambda t: (
                exposed(t, truncated, role="candidate", upstream="bomb") == 4
                and exposed(t, "shadoweval_pairs_total", upstream="good") == 4
            ),
        )
        assert exposed(text, truncated, role="candidate", upstream="bomb") == 4


async def test_an_upstream_url_that_is_the_listen_address_is_refused() -> None:
    raw = {
        "listen": {"host": "0.0.0.0", "port": 18123},
        "primary": {"url": "http://127.0.0.1:9000"},
        "candidates": [{"name": "self", "url": "http://localhost:18123/v1"}],
    }
    [problem] = self_loops(parse(raw, environ={}))
    assert problem.startswith("candidates[self].url") and "listen address" in problem
    raw["primary"] = {"url": "http://127.0.0.1:18123"}
    raw["candidates"] = []
    [problem] = self_loops(parse(raw, environ={}))
    assert problem.startswith("primary.url")
    raw["primary"] = {"url": "http://127.0.0.1:18124"}
    assert self_loops(parse(raw, environ={})) == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_carrying_this_proxys_hop_marker_is_refused_as_a_loop(
    mode: str, tmp_path: Path
) -> None:
    primary = FakeUpstream(model="prod-model")
    options = stack_options(MODES[mode], tmp_path)
    async with running_stack(primary=primary, overrides=options) as stack:
        marker = hop_id(stack.proxy.cfg.listen)
        async with aiohttp.ClientSession() as session:
            url = stack.url + "/v1/chat/completions"
            async with session.post(
                url, json=CHAT, headers={HOP_HEADER.decode(): marker.decode()}
            ) as resp:
                assert resp.status == 508
            async with session.post(
                url, json=CHAT, headers={"x-shadoweval-hop": "another"}
            ) as resp:
                assert resp.status == 200  # another proxy's marker: passed through
        assert stack.proxy.metrics.refused.labels("loop")._value.get() == 1
        # What the proxy sends carries its marker, so the request cannot come back unseen.
        [record] = await records_of(stack, 1, tmp_path)
        assert record["candidate"]["error_type"] is None
        [candidate, *_] = stack.candidates.values()
        assert candidate.received[-1].headers[HOP_HEADER.decode()] == marker.decode()


async def _spoken(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A kept-alive connection that has had an answer."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length")
    )
    await reader.readexactly(length)
    return reader, writer


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("mode", MODES)
async def test_connections_over_the_limit_are_closed_at_once_and_counted(
    mode: str, tmp_path: Path
) -> None:
    options = stack_options(MODES[mode], tmp_path, max_connections=3)
    async with running_stack(overrides=options) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        http = stack.proxy._http
        assert http is not None
        refused = stack.proxy.metrics.refused.labels("too_many_connections")._value
        # Three callers that have spoken hold every slot: a fourth is closed at once.
        held = [await _spoken(host, int(port)) for _ in range(3)]
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await _closed_by_peer(reader)  # closed without a byte
        writer.close()
        assert refused.get() == 1
        async with (
            aiohttp.ClientSession() as session,
            session.get(stack.proxy.admin_url + "/metrics") as resp,
        ):
            assert resp.status == 200  # the admin port stays reachable
        for _, w in held:
            w.close()
        await until(lambda: not http.connections, what="the held connections closed")
        # A flood of silent sockets fills every slot: a caller still gets in, the oldest
        # silent one makes room (reset, counted), the others stay.
        silent = []
        for n in range(3):
            silent.append(await asyncio.open_connection(host, int(port)))
            await until(lambda n=n: len(http.connections) == n + 1, what="the socket accepted")
        assert await post_chat(stack.url) == 200
        assert await _closed_by_peer(silent[0][0])
        assert refused.get() == 2
        assert len(http.silent) == 2
        for _, w in silent:
            w.close()


async def test_drain_returns_at_once_when_writing_resumed_before_it() -> None:
    """pause -> resume -> drain: the interleaving that stalled a stream to its deadline."""
    from shadoweval.config.proxy import Limits

    server = HttpServer(lambda _r, _o: asyncio.sleep(0), Limits(), None)
    conn = HttpProtocol(server)

    class Transport:
        def is_closing(self) -> bool:
            return False

        def get_extra_info(self, _name: str) -> None:
            return None

    conn.transport = Transport()  # type: ignore[assignment]
    conn.pause_writing()
    conn.resume_writing()
    await asyncio.wait_for(conn.drain(), timeout=60)  # returns, not waits for a resume


class _StaleServer:
    """Answers the first request kept-alive, then closes the second connection use unanswered."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests += 1
            if self.requests % 2 == 0:  # processed, then died: a second send doubles it
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()


@pytest.mark.parametrize("method,resent", [("POST", False), ("GET", True)])
async def test_a_stale_connection_is_resent_only_for_idempotent_methods(
    method: str, resent: bool
) -> None:
    upstream = _StaleServer()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: list[bool] = []
    pool = UpstreamPool(f"http://127.0.0.1:{port}", on_stale=seen.append)
    try:
        first = await pool.request(method, "/", [], b"{}")
        assert await first.read() == b"ok"
        first.release()
        if resent:
            again = await pool.request(method, "/", [], b"{}")
            assert await again.read() == b"ok"
            again.release()
            assert upstream.requests == 3
        else:
            with pytest.raises(UpstreamError):
                await pool.request(method, "/", [], b"{}")
            assert upstream.requests == 2  # one generation, not two
        assert seen == [resent]
    finally:
        await pool.close()
        server.close()


async def test_http10_keep_alive_is_answered_and_reason_phrases_are_relayed() -> None:
    async with running_stack() as stack:
        body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
        head = b"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        request = (
            head
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        host, port = stack.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        status_line = await reader.readline()
        headers = (await reader.readuntil(b"\r\n\r\n")).lower()
        assert status_line.startswith(b"HTTP/1.1 200")
        assert b"connection: keep-alive" in headers  # or it would wait for a close
        writer.close()


async def test_an_upstream_reason_phrase_is_relayed_as_sent() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 529 \r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    overrides = {"primary": {"name": "prod", "url": f"http://127.0.0.1:{port}"}}
    try:
        async with running_stack(overrides=overrides) as stack:
            reply = await exchange(
                stack.url, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert reply.data.startswith(b"HTTP/1.1 529 \r\n")
    finally:
        server.close()


@pytest.mark.parametrize(
    "line",
    [
        b"GET /../admin HTTP/1.1",
        b"GET /%2e%2e/admin HTTP/1.1",
        b"GET /v1/%2E./admin HTTP/1.1",
        b"GET /v1/..%2fadmin HTTP/1.1",
        b"GET /v1\\..\\admin HTTP/1.1",
        b"GET http://other.example/v1/models HTTP/1.1",
        b"CONNECT other.example:443 HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"GET /v1/models",
    ],
)
async def test_request_targets_outside_origin_form_are_refused(line: bytes) -> None:
    async with running_stack() as stack:
        reply = await exchange(stack.url, line + b"\r\nHost: x\r\n\r\n")
        assert reply.data.startswith(b"HTTP/1.1 400"), reply.data[:80]
        assert stack.proxy.metrics.refused.labels("bad_target")._value.get() == 1


def test_ordinary_targets_pass_the_check() -> None:
    for target in (b"/v1/chat/completions", b"/v1/models?after=a.b", b"/v1/files/file-1.jsonl"):
        assert target_problem(b"POST", target) is None


def test_check_config_refuses_a_self_loop(tmp_path: object) -> None:
    from pathlib import Path

    from shadoweval.cli import main

    path = Path(str(tmp_path)) / "loop.yaml"
    path.write_text(
        "listen: {host: 127.0.0.1, port: 18125}\nprimary: {url: 'http://127.0.0.1:18125'}\n"
    )
    assert main(["check-config", str(path)]) == 2


async def test_probe_records_are_bounded_like_traffic_pairs() -> None:
    """A probe that draws a huge answer gets a record shortened to limits.max_record_bytes."""
    from shadoweval.probes.runner import run_once
    from shadoweval.probes.suite import build
    from shadoweval.records import TRUNCATED_MARK
    from shadoweval.sinks import MemorySink

    text = "x" * 200_000
    primary, cand = (FakeUpstream(model=m, style="fixed", text=text) for m in ("prod", "cand"))
    for fake in (primary, cand):
        await fake.start()
    try:
        cfg = parse(
            {
                "primary": {"name": "prod", "url": primary.url},
                "candidates": [{"name": "cand", "url": cand.url}],
                "limits": {"max_record_bytes": 16 * 1024},
                "probes": {"suites": [str(Path(__file__).parents[2] / "config" / "probes")]},
            },
            environ={},
        )
        sink = MemorySink(100, Metrics())
        await run_once(cfg, build(cfg.probes)[:1], sink, concurrency=1)
    finally:
        for fake in (primary, cand):
            await fake.stop()
    [record] = sink.records
    assert len(orjson.dumps(record)) <= 16 * 1024
    assert record["record_truncated"]["original_bytes"] > 400_000
    assert record["candidate"]["output_text"].endswith(TRUNCATED_MARK)
    assert record["source"] == "probe" and "verdict" in record["probe"]


async def test_a_starved_workers_counters_stay_on_metrics(tmp_path: Path) -> None:
    """The shadow worker runs only when the relay leaves it CPU (SCHED_IDLE): under a flood
    it may not answer a scrape in time. Its last families are shown, not none (counters
    that vanish and come back read as resets)."""
    import signal

    async with running_stack(overrides=stack_options(True, tmp_path)) as stack:
        assert await post_chat(stack.url) == 200
        await records_of(stack, 1, tmp_path)
        text = await scrape_until(
            stack.proxy.admin_url,
            lambda t: exposed(t, "shadoweval_pairs_total", upstream="cand-a") == 1,
        )
        assert exposed(text, "shadoweval_pairs_total", upstream="cand-a") == 1
        pid = shadow_pid(stack)
        os.kill(pid, signal.SIGSTOP)  # no CPU at all: the scrape's question goes unanswered
        try:
            text = await scrape(stack.proxy.admin_url)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert exposed(text, "shadoweval_pairs_total", upstream="cand-a") == 1
        assert exposed(text, "shadoweval_requests_total", role="primary") == 1  # the proxy's
