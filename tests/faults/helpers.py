"""Fault-injection plumbing: a scripted upstream with byte-exact answers (and breakages),
a caller that records exactly what it got, and the accounting every fault test checks."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import yaml
from aiohttp import web

from shadoweval.metrics import DROP_REASONS, Metrics
from shadoweval.testing import FakeUpstream
from tests.waiting import wait_for as until  # noqa: F401 - the name earlier fault tests import

Behaviour = Literal["ok", "ok_stream", "sse_reset", "sse_close", "http_503", "garbage"]

ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"prod",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2}}'
)
EVENTS = [
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"prod",'
    b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n' % word
    for word in (b"The", b" capital", b" is", b" Paris", b".")
]
DONE = b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
ERROR_503 = b'{"error":{"message":"overloaded","type":"server_error"}}'


class ScriptedUpstream:
    """An OpenAI-shaped upstream whose every answer is fixed bytes, so a direct call and a
    call through the proxy can be compared byte for byte; ``behaviour`` picks the breakage."""

    def __init__(self, behaviour: Behaviour = "ok") -> None:
        self.behaviour = behaviour
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        b = self.behaviour
        if b == "ok":
            return web.Response(
                body=ANSWER, content_type="application/json", headers={"x-upstream": "scripted"}
            )
        if b == "garbage":
            return web.Response(body=b"\x00not json{{", content_type="application/json")
        if b == "http_503":
            return web.Response(
                status=503, body=ERROR_503, content_type="application/json",
                headers={"Retry-After": "7", "x-upstream": "scripted"},
            )  # fmt: skip
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "x-upstream": "scripted"}
        )
        await resp.prepare(request)
        events = EVENTS if b == "ok_stream" else EVENTS[:3]
        for event in events:
            await resp.write(event)
        if b == "ok_stream":
            await resp.write(DONE)
            await resp.write_eof()
            return resp
        await asyncio.sleep(0.2)  # the first events are read before the connection breaks
        assert request.transport is not None
        if b == "sse_reset":
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()  # SO_LINGER 0: the kernel sends RST, not FIN
        else:
            request.transport.close()
        return resp


@dataclass
class Outcome:
    """What a caller observed: status, end-to-end headers of interest, the body bytes it
    received, and whether the body ended cleanly."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False
    error: str | None = None


async def call(url: str, body: bytes, path: str = "/v1/chat/completions") -> Outcome:
    """One POST as a plain HTTP client sees it (no retries, no decompression)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as s:
        try:
            async with s.post(
                url + path, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                out = Outcome(
                    r.status,
                    {
                        k: r.headers[k]
                        for k in ("Content-Type", "Retry-After", "x-upstream")
                        if k in r.headers
                    },
                )
                try:
                    async for chunk in r.content.iter_any():
                        out.body += chunk
                    out.complete = True
                except aiohttp.ClientPayloadError as exc:
                    out.error = type(exc).__name__
                return out
        except aiohttp.ClientError as exc:
            return Outcome(None, error=type(exc).__name__)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def shadow_accounting(metrics: Metrics, candidate: str) -> dict[str, float]:
    """Every shadow a candidate was offered ends as a pair, a counted drop or an internal
    error; ``balance`` is what is unaccounted for (0 when nothing was lost)."""
    sampled = sample(
        metrics, "shadoweval_shadow_sampling_decisions_total", upstream=candidate, decision="in"
    )
    pairs = sample(metrics, "shadoweval_pairs_total", upstream=candidate)
    dropped = sum(
        sample(metrics, "shadoweval_shadow_dropped_total", upstream=candidate, reason=reason)
        for reason in DROP_REASONS
    )
    role = "control" if candidate.startswith("control") else "candidate"
    internal = sample(
        metrics,
        "shadoweval_upstream_errors_total",
        role=role,
        upstream=candidate,
        error_type="internal",
    )
    return {"sampled": sampled, "pairs": pairs, "dropped": dropped, "internal": internal,
            "balance": sampled - pairs - dropped - internal}  # fmt: skip


class ProxyProcess:
    """``shadoweval serve`` as a real process (its own event loop, signals, exit code);
    stderr is collected line by line."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.config_path = directory / "shadoweval.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.url = ""
        self.admin_url = ""
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadoweval", "serve", "--config", str(self.config_path),
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            while not self.url:
                assert self.proc.returncode is None, "\n".join(self.lines)
                await asyncio.sleep(0.05)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if m := re.search(r"proxy on (\S+) -> \S+; admin on (\S+)", text):
                self.url, self.admin_url = m.group(1), m.group(2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (SIGKILL and a failure if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(
                "the proxy did not exit after SIGTERM:\n" + "\n".join(self.lines[-20:])
            ) from None
        if self._reader is not None:
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()

    def final_counts(self, process: str = "proxy") -> dict[str, float]:
        """The accounting line ProxyServer.stop logs last (``process="shadow-worker"``: the
        worker's own line; the proxy's counts the whole process group)."""
        for line in reversed(self.lines):
            child = "[shadow-worker]" in line or "[relay " in line
            mine = not child if process == "proxy" else f"[{process}]" in line
            if not mine:
                continue
            if "final counts:" in line:
                pairs = line.split("final counts:", 1)[1].split()
                return {k: float(v) for k, v in (p.split("=") for p in pairs)}
        raise AssertionError("no final counts line:\n" + "\n".join(self.lines[-20:]))


@dataclass
class FlakyUpstream(FakeUpstream):
    """A fake that fails ``fault_rate`` of its requests, each in one of ``faults`` ways."""

    fault_rate: float = 0.05
    faults: tuple[str, ...] = ("hang", "reset", "garbage", "truncate", "rate_limit", "error")
    hang_s: float = 2.0
    served: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.served += 1
        if self._rng.random() >= self.fault_rate:
            return await super()._handle(request)
        await request.read()
        fault = self._rng.choice(self.faults)
        self.injected[fault] += 1
        assert request.transport is not None
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
        elif fault == "reset":
            request.transport.abort()
        elif fault == "garbage":
            return web.Response(body=b"\x00garbage{", content_type="application/json")
        elif fault == "rate_limit":
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"}
            )
        elif fault == "error":
            return web.json_response({"error": {"message": "boom"}}, status=503)
        else:  # truncate: one event, then the connection closes
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(EVENTS[0])
            request.transport.close()
            return resp
        return web.Response(status=500)


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and its standard error."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys, strict=True)]
    stderr = (sum(r * r for r in resid) / max(n - 2, 1) / sxx) ** 0.5
    return slope, stderr
