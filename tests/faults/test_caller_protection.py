"""The caller is never hurt: candidate bombs, loops, connection floods, stalled drains,
double generations, HTTP/1.0 keep-alive, reason phrases and request targets."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import pytest
from aiohttp import web

from shadoweval.config import parse
from shadoweval.proxy.http import HttpProtocol, HttpServer, target_problem
from shadoweval.proxy.loops import HOP_HEADER, hop_id, self_loops
from shadoweval.proxy.upstream import UpstreamError, UpstreamPool
from shadoweval.testing import FakeUpstream, running_stack
from tests.security.rawhttp import exchange
from tests.waiting import wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
LIMIT = 64 * 1024


async def post_chat(url: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=CHAT) as resp,
    ):
        await resp.read()
        return resp.status


class BombUpstream:
    """A candidate whose answers are far bigger than anyone should read."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind, self.size = kind, size
        self.sent = 0
        self.finished = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None
        head = b'{"id":"b","model":"bomb","choices":[{"index":0,"message":{"role":"assistant",'
        self._plain = head + b'"content":"' + b"a" * size + b'"}}]}'
        self._gzipped = gzip.compress(self._plain, 6) if kind == "gzip" else b""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if self.kind == "gzip":
            return web.Response(
                body=self._gzipped,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.kind == "length":
            resp.content_length = len(self._plain)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for start in range(0, len(self._plain), 64 * 1024):
                await resp.write(self._plain[start : start + 64 * 1024])
                self.sent += 64 * 1024
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the proxy stopped reading: what this test wants
        finally:
            self.finished.set()
        return resp


@pytest.mark.parametrize("kind", ["length", "chunked", "gzip"])
async def test_a_candidate_bomb_is_cut_at_the_capture_limit(kind: str) -> None:
    size = 16 * 1024 * 1024 if kind == "gzip" else 256 * 1024 * 1024
    bomb = BombUpstream(kind, size)
    overrides = {"limits": {"capture_max_bytes": LIMIT}}
    async with running_stack(candidates={"bomb": bomb}, overrides=overrides) as stack:  # type: ignore[dict-item]
        assert await post_chat(stack.url) == 200  # the caller's answer is the primary's
        [record] = await stack.memory.wait_for(1)
        side = record["candidate"]
        assert side["capture_truncated"] is True and side["truncated"] is True
        assert side["error_type"] is None  # a capture limit, not an upstream failure
        assert len(side["output_text"].encode()) <= LIMIT
        if kind != "gzip":
            await bomb.finished.wait()  # the connection was closed, the rest never read
            assert bomb.sent < size // 4
        value = stack.proxy.metrics.capture_truncated.labels("candidate", "bomb")._value.get()
        assert value == 1


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


async def test_a_request_carrying_this_proxys_hop_marker_is_refused_as_a_loop() -> None:
    primary = FakeUpstream(model="prod-model")
    async with running_stack(primary=primary) as stack:
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
        [record] = await stack.memory.wait_for(1)
        assert record["candidate"]["error_type"] is None


async def test_connections_over_the_limit_are_closed_at_once_and_counted() -> None:
    async with running_stack(overrides={"limits": {"max_connections": 3}}) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await reader.read() == b""  # closed without a byte
        writer.close()
        assert stack.proxy.metrics.refused.labels("too_many_connections")._value.get() >= 1
        async with (
            aiohttp.ClientSession() as session,
            session.get(stack.proxy.admin_url + "/metrics") as resp,
        ):
            assert resp.status == 200  # the admin port stays reachable
        for _, w in held:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _, w in held), return_exceptions=True)
        server = stack.proxy._http
        assert server is not None
        await wait_for(lambda: not server.connections, what="the held connections closed")
        assert await post_chat(stack.url) == 200


async def test_drain_returns_at_once_when_writing_resumed_before_it() -> None:
    """pause -> resume -> drain: the interleaving that stalled a stream to its deadline."""
    from shadoweval.config import Limits

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
