"""The loop on a real model: llama-server serving Gemma 3 270M (scripts/llama-server.sh).

A recording TCP tap sits between the proxy and the primary, so the test sees the very bytes the
server sent and can check that the caller got them unchanged. Skipped, with the reason, when
llama-server is not built (``scripts/llama-server.sh build``; .ci/run builds it when
SHADOWEVAL_REAL_MODEL=1).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval import demo_real
from shadoweval.demo_real import PROMPTS, LlamaServer, Prompt

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        demo_real.built() is None,
        reason="llama-server or the model is not built: run scripts/llama-server.sh build "
        "&& scripts/llama-server.sh model (or SHADOWEVAL_REAL_MODEL=1 .ci/run)",
    ),
]


def _first(kind: str, stream: bool = False) -> Prompt:
    return next(p for p in PROMPTS if p.kind == kind and p.stream == stream)


# One of each shape: known answer (plain and streamed), refusal, tool call, open stream.
CHOSEN: tuple[Prompt, ...] = (
    _first("expected"),
    _first("expected", stream=True),
    _first("refuse"),
    _first("tool"),
    _first("open", stream=True),
)


class Tap:
    """A TCP relay that keeps every byte the upstream sent, per connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[bytearray] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        seen = bytearray()
        self.received.append(seen)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            while data := await src.read(65536):
                if keep:
                    seen.extend(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, False), pipe(up_reader, writer, True), return_exceptions=True
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def bodies(self) -> list[bytes]:
        """Every response body the upstream sent (Content-Length or chunked, decoded)."""
        out = []
        for stream in self.received:
            data = bytes(stream)
            while data:
                head, _, rest = data.partition(b"\r\n\r\n")
                headers = head.lower()
                if b"transfer-encoding: chunked" in headers:
                    body = bytearray()
                    while True:
                        size_line, _, rest = rest.partition(b"\r\n")
                        size = int(size_line.split(b";")[0], 16)
                        body += rest[:size]
                        rest = rest[size + 2 :]
                        if size == 0:
                            break
                    out.append(bytes(body))
                else:
                    length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
                    out.append(rest[:length])
                    rest = rest[length:]
                data = rest
        return out


def answer_facts(body: bytes, stream: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The server's own usage and timings from an answer body (a stream's last chunks)."""
    if not stream:
        doc = orjson.loads(body)
        return doc["usage"], doc["timings"]
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            chunk = orjson.loads(line[6:])
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
    return usage, timings


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    srv = demo_real.start_server(parallel=4, ctx=8192)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def tapped(llama: LlamaServer) -> AsyncIterator[tuple[Tap, str]]:
    assert llama.port is not None
    tap = Tap(llama.port)
    url = await tap.start()
    try:
        yield tap, url
    finally:
        await tap.stop()


async def test_real_model_loop(
    llama: LlamaServer, tapped: tuple[Tap, str], tmp_path: Path, validate_pair: Any
) -> None:
    tap, tap_url = tapped
    pairs = tmp_path / "pairs.jsonl"
    async with demo_real.running_proxy(llama.url, pairs, primary_url=tap_url) as proxy:
        sent = await demo_real.send_all(proxy.proxy_url, CHOSEN, concurrency=1)

    # Relayed byte-exact: each caller's body is one the server sent.
    upstream_bodies = tap.bodies()
    for s in sent:
        assert s.status == 200, s.body[:200]
        assert s.body in upstream_bodies, s.prompt.text

    records = [orjson.loads(line) for line in pairs.read_bytes().splitlines()]
    assert len(records) == 3 * len(CHOSEN)  # two candidates and the control per request
    for rec in records:
        validate_pair(rec)
    by_text = {r["request"]["messages"][-1]["content"]: r for r in records}
    for s in sent:
        rec = by_text[s.prompt.text]
        usage, timings = answer_facts(s.body, s.prompt.stream)
        primary = rec["primary"]
        # The record's token counts are the server's, not estimates.
        assert primary["usage"]["input_tokens"] == usage["prompt_tokens"]
        assert primary["usage"]["output_tokens"] == usage["completion_tokens"]
        assert timings["predicted_n"] == usage["completion_tokens"]
        # The proxy's latency covers the server's own prompt and generation time.
        server_s = (timings["prompt_ms"] + timings["predicted_ms"]) / 1000
        assert primary["latency_s"] >= server_s
        if s.prompt.stream:
            assert primary["ttft_s"] is not None and primary["ttft_s"] <= primary["latency_s"]
        if s.prompt.kind != "tool":
            assert primary["output_text"], s.prompt.text

    # Detectors and the judge score the real answers.
    scores_file = await demo_real.score(pairs, llama.url, judge_rate=1.0)
    scores = [orjson.loads(line) for line in scores_file.read_bytes().splitlines()]
    by_scorer: dict[str, list[dict[str, Any]]] = {}
    for sc in scores:
        by_scorer.setdefault(sc["scorer"], []).append(sc)
    assert {"refusal", "pii_leak", "toxicity", "judge_single"} <= set(by_scorer)
    judged = [
        sc
        for sc in by_scorer["judge_single"]
        if sc["value"] is not None and not math.isnan(sc["value"])
    ]
    assert judged, [sc["explanation"] for sc in by_scorer["judge_single"]]
    assert all(0.0 <= sc["value"] <= 1.0 for sc in judged)

    # The report reaches a verdict for every candidate.
    gate, html = await asyncio.to_thread(demo_real.report, pairs, scores_file)
    assert gate is not None
    assert html.is_file()
    doc = orjson.loads(pairs.with_name("report.json").read_bytes())
    assert {c["upstream"] for c in doc["candidates"]} == {"cand-terse", "cand-hot"}
