"""A fake OpenAI-compatible server for tests, the demo and benchmarks.

Serves chat completions, completions, embeddings and responses, streaming or not, on OpenAI's
paths and Azure OpenAI's (``/openai/deployments/{name}/...`` and ``/openai/responses``, which
want an ``api-version`` query, and ``/openai/v1/...``), with a
configurable latency distribution, error rate, answer style and misbehaviour (hang, garbage,
cut streams, resets, 429 with Retry-After) and hostility towards whoever reads it (answers of
``bomb_bytes``: length-framed, chunked or a gzip bomb; a stall after the first bytes). It
records what it received so tests can check what a candidate was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from shadoweval.routes import route_of
from shadoweval.testing import fake_anthropic

Mode = Literal[
    "normal",
    "hang",
    "garbage",
    "truncate",
    "reset",
    "rate_limit",
    "error",
    # Hostile answers (``bomb_bytes`` long), for the caller-protection tests and benchmark.
    "huge_length",
    "huge_chunked",
    "gzip_bomb",
    "stall",
]
BOMB_MODES = ("huge_length", "huge_chunked", "gzip_bomb", "stall")
_FILL = b"a" * 65536


@dataclass(frozen=True)
class Latency:
    """Server-side delay before the answer (or first token): fixed, uniform or lognormal."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    a: float = 0.0  # fixed: seconds; uniform: low; lognormal: median seconds
    b: float = 0.0  # uniform: high; lognormal: sigma

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        return cls("lognormal", median, sigma)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal":
            return self.a * float(rng.lognormvariate(0.0, self.b))
        return self.a


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    query: str = ""


@dataclass
class FakeUpstream:
    model: str = "fake-model"
    latency: Latency = field(default_factory=Latency)
    token_delay_s: float = 0.0
    # "echo" repeats the last user message, "upper" shouts it, "fixed" answers `text`.
    style: Literal["echo", "upper", "fixed"] = "echo"
    text: str = "OK"
    # Share of answers replaced by an unrelated one (a model that disagrees sometimes).
    disagree_rate: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    # The first N model requests fail with error_status (then behave normally): retry tests.
    fail_first: int = 0
    mode: Mode = "normal"
    retry_after_s: float = 1.0
    seed: int | None = 0
    record: bool = True
    received: list[Received] = field(default_factory=list)
    # The size of a hostile answer (for gzip_bomb: inflated); 1 GiB by default.
    bomb_bytes: int = 1 << 30
    # Streams: (seconds to the last byte, seconds to the first token) of each answer, from
    # the request's arrival in the handler to those writes; served at GET /_fake/served as
    # the truth a record's candidate timings are checked against (testing/timings.py).
    wire_timings: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._served = 0
        self._gzipped: bytes | None = None
        # Bytes of hostile answers written so far, and those cut off by the reader.
        self.bomb_sent = 0
        self.bombs_cut = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- answers ---------------------------------------------------------------------

    def answer_for(self, prompt: str) -> str:
        if self.disagree_rate and self._rng.random() < self.disagree_rate:
            digest = hashlib.sha1(prompt.encode()).hexdigest()[:8]
            return f"I am not sure, perhaps {digest}."
        if self.style == "fixed":
            return self.text
        if self.style == "upper":
            return prompt.upper()
        return f"Echo: {prompt}"

    def reply(self, body: dict[str, Any], prompt: str) -> str:
        """The answer to a whole request; subclasses that read more than the last user turn
        (the system prompt, documents, tool results) override this."""
        return self.answer_for(prompt)

    @staticmethod
    def _prompt(body: dict[str, Any]) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list) and isinstance(body.get("input"), list):
            messages = body["input"]  # Responses input items: the last user message
        if isinstance(messages, list):
            for msg in reversed(messages):
                if isinstance(msg, dict) and msg.get("role") == "user":
                    content = msg.get("content")
                    return content if isinstance(content, str) else orjson.dumps(content).decode()
        for key in ("prompt", "input"):
            value = body.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value and isinstance(value[0], str):
                return value[0]
        return ""

    # -- server ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/embeddings", self._handle)
        app.router.add_post("/v1/responses", self._handle)
        app.router.add_post("/v1/messages", self._handle)  # Anthropic Messages
        # Azure OpenAI: a deployment's paths, the resource's Responses, the v1 form.
        app.router.add_post("/openai/deployments/{deployment}/{tail:.+}", self._handle)
        app.router.add_post("/openai/responses", self._handle)
        app.router.add_post("/openai/v1/{tail:.+}", self._handle)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_fake/served", self._timings)
        app.router.add_route("*", "/{tail:.*}", self._echo_other)
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve on ``host:port``; HTTPS with ``ssl_context`` (TLS tests)."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=ssl_context, backlog=4096).start()
        addr = self._runner.addresses[0]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{addr[0]}:{addr[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        )

    async def _timings(self, _: web.Request) -> web.Response:
        return web.json_response({"served": self.wire_timings})

    async def _echo_other(self, request: web.Request) -> web.Response:
        """Unknown routes: say what arrived, so pass-through can be checked."""
        body = await request.read()
        if self.record:
            self.received.append(Received(request.path_qs, dict(request.headers), body))
        return web.json_response(
            {"path": request.path_qs, "method": request.method, "body_bytes": len(body)},
            status=404 if request.path.startswith("/missing") else 200,
            headers={"x-fake-upstream": self.model},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = route_of(request.path)
        if route is None:  # an Azure path of no surface
            return await self._echo_other(request)
        arrived = time.perf_counter()
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return web.json_response(
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}},
                status=400,
            )
        if self.record:
            received = Received(request.path, dict(request.headers), body)
            received.query = request.query_string
            self.received.append(received)
        if _needs_api_version(request.path) and "api-version" not in request.query:
            return web.json_response(
                {"error": {"code": "404", "message": "Resource not found"}}, status=404
            )
        if not isinstance(body, dict):
            return web.json_response({"error": {"message": "body must be an object"}}, status=400)

        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if self.mode in BOMB_MODES:
            return await self._bomb(request)
        if self.mode == "rate_limit":
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                status=429,
                headers={"Retry-After": f"{self.retry_after_s:g}"},
            )
        self._served += 1
        injected = self.error_rate and self._rng.random() < self.error_rate
        if self._served <= self.fail_first or self.mode == "error" or injected:
            return web.json_response(
                {"error": {"message": "injected failure", "type": "server_error"}},
                status=self.error_status,
            )
        await asyncio.sleep(self.latency.sample(self._rng))
        if self.mode == "garbage":
            return web.Response(body=b"\x00not json{{", content_type="application/json")

        model = body["model"] if isinstance(body.get("model"), str) else self.model
        prompt = self._prompt(body)
        if route == "embeddings":
            return web.json_response(self._embedding(body, model, prompt))
        answer = self.reply(body, prompt)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(answer)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream") is True:
            return await self._stream(request, route, body, model, answer, usage, arrived)
        return web.json_response(_complete(route, model, answer, usage, body))

    def _bomb_parts(self) -> tuple[bytes, int, bytes]:
        """A chat completion ``bomb_bytes`` long: head, filler length, tail."""
        head = (
            b'{"id":"chatcmpl-bomb","object":"chat.completion","created":1700000000,"model":"'
            + self.model.encode()
            + b'","choices":[{"index":0,"message":{"role":"assistant","content":"'
        )
        tail = b'"},"finish_reason":"stop"}]}'
        return head, max(0, self.bomb_bytes - len(head) - len(tail)), tail

    def _gzip_bomb(self) -> bytes:
        """Compressed once, chunk by chunk (the inflated body never exists here)."""
        if self._gzipped is None:
            head, fill, tail = self._bomb_parts()
            z = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
            out = [z.compress(head)]
            for _ in range(fill // len(_FILL)):
                out.append(z.compress(_FILL))
            out += [z.compress(_FILL[: fill % len(_FILL)]), z.compress(tail), z.flush()]
            self._gzipped = b"".join(out)
        return self._gzipped

    async def _bomb(self, request: web.Request) -> web.StreamResponse:
        """Hostile answers: written in 64 KiB pieces until done or the reader hangs up."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        head, fill, tail = self._bomb_parts()
        pieces: list[bytes] = []
        if self.mode == "gzip_bomb":
            body = self._gzip_bomb()
            resp.headers["Content-Encoding"] = "gzip"
            resp.content_length = len(body)
            pieces = [body[i : i + len(_FILL)] for i in range(0, len(body), len(_FILL))]
        elif self.mode == "huge_length":
            resp.content_length = self.bomb_bytes
        else:  # huge_chunked, stall
            resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            if self.mode == "stall":
                await resp.write(head)
                self.bomb_sent += len(head)
                await asyncio.sleep(3600)  # the head and a few bytes, then nothing
            if not pieces:
                whole, rest = divmod(fill, len(_FILL))
                pieces = [head, *(_FILL for _ in range(whole)), _FILL[:rest], tail]
            for piece in pieces:
                await resp.write(piece)
                self.bomb_sent += len(piece)
            await resp.write_eof()
        except ConnectionError:
            self.bombs_cut += 1  # the reader stopped reading and closed: what it should do
        return resp

    def _embedding(self, body: dict[str, Any], model: str, prompt: str) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, item in enumerate(items):
            seed = hashlib.sha256(str(item).encode()).digest()
            data.append(
                {"object": "embedding", "index": i, "embedding": [b / 255 for b in seed[:16]]}
            )
        tokens = sum(_tokens(str(i)) for i in items)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _stream(
        self,
        request: web.Request,
        route: str,
        body: dict[str, Any],
        model: str,
        answer: str,
        usage: dict[str, int],
        arrived: float = 0.0,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        words = answer.split(" ")
        events = list(_stream_events(route, model, words, usage, body))
        cut = len(events) // 2 if self.mode == "truncate" else None
        first = arrived
        for i, event in enumerate(events):
            if cut is not None and i == cut:
                assert request.transport is not None
                request.transport.close()  # half an answer, then gone
                return resp
            await resp.write(event)
            if i == 0:
                first = time.perf_counter()
            if self.token_delay_s and i < len(events) - 1:
                await asyncio.sleep(self.token_delay_s)
        await resp.write_eof()
        self.wire_timings.append((time.perf_counter() - arrived, first - arrived))
        return resp


def _needs_api_version(path: str) -> bool:
    """Azure OpenAI's versioned paths (not its /openai/v1 form) answer 404 without one."""
    return path.startswith("/openai/") and not path.startswith("/openai/v1/")


_RESPONSE_IDS = itertools.count(1)


def _response_id() -> str:
    return f"resp_fake{next(_RESPONSE_IDS):06d}"


def _tokens(text: str) -> int:
    """Deterministic token count: whitespace-separated words."""
    return len(text.split())


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _complete(
    route: str,
    model: str,
    answer: str,
    usage: dict[str, int],
    body: dict[str, Any],
    response_id: str | None = None,
) -> dict[str, Any]:
    created = int(time.time())
    if route == "messages":
        return fake_anthropic.message(model, answer, usage, body)
    if route == "responses":
        return {
            "id": response_id or _response_id(),
            "object": "response",
            "created_at": created,
            "model": model,
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": usage["prompt_tokens"],
                "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
            },
        }
    if route == "completions":
        choice: dict[str, Any] = {
            "index": 0,
            "text": answer,
            "finish_reason": "stop",
            "logprobs": None,
        }
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    message: dict[str, Any] = {"role": "assistant", "content": answer}
    finish = "stop"
    if body.get("tools"):
        tool = body["tools"][0].get("function", {}).get("name", "tool")
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake",
                    "type": "function",
                    "function": {"name": tool, "arguments": orjson.dumps({"q": answer}).decode()},
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def _stream_events(
    route: str, model: str, words: list[str], usage: dict[str, int], body: dict[str, Any]
) -> Any:
    created = int(time.time())
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if route == "messages":
        yield from fake_anthropic.events(model, words, usage, body)
        return
    if route == "responses":
        response_id = _response_id()
        yield b"event: response.created\n" + _sse(
            {
                "type": "response.created",
                "response": {"id": response_id, "model": model, "status": "in_progress"},
            }
        )
        for p in pieces:
            yield b"event: response.output_text.delta\n" + _sse(
                {"type": "response.output_text.delta", "delta": p}
            )
        done = _complete("responses", model, "".join(pieces), usage, body, response_id)
        yield b"event: response.completed\n" + _sse(
            {"type": "response.completed", "response": done}
        )
        return
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if route == "completions":
        base = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": model}
        for p in pieces:
            yield _sse({**base, "choices": [{"index": 0, "text": p, "finish_reason": None}]})
        yield _sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage})
    else:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        yield _sse(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
        for p in pieces:
            yield _sse(
                {**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
            )
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


async def serve_forever(upstream: FakeUpstream, host: str, port: int) -> None:
    url = await upstream.start(host, port)
    print(f"fake upstream {upstream.model} on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await upstream.stop()
