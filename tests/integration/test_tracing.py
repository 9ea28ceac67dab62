"""OpenTelemetry tracing end to end: real proxy, fake upstreams, the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Tracing
from shadoweval.testing import FakeUpstream, running_stack
from shadoweval.tracing import build_provider

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
PROMPT = "What is the capital of France?"
TRACING_ON = {"tracing": {"enabled": True}}


def in_memory(sample_ratio: float = 1.0) -> tuple[TracerProvider, InMemorySpanExporter]:
    """The production provider (sampler, resource) with the exporter swapped for a list."""
    exporter = InMemorySpanExporter()
    cfg = Tracing(enabled=True, sample_ratio=sample_ratio)
    return build_provider(cfg, SimpleSpanProcessor(exporter)), exporter


async def spans_when(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    for _ in range(200):
        spans = list(exporter.get_finished_spans())
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} spans, got {list(exporter.get_finished_spans())}")


async def chat(url: str, headers: dict[str, str] | None = None, stream: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": "prod-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body, headers=headers or {}) as resp,
    ):
        assert resp.status == 200
        return await resp.read()


def by_role(spans: list[ReadableSpan], upstream: str) -> ReadableSpan:
    [span] = [s for s in spans if (s.attributes or {}).get("shadoweval.upstream") == upstream]
    return span


def parse_traceparent(value: str) -> tuple[str, str, bool]:
    """(trace id, span id, sampled); other flag bits (W3C level 2 "random") are the SDK's."""
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00"
    return trace_id, span_id, bool(int(flags, 16) & 1)


def words(text: str) -> int:
    return len(text.split())  # the fake upstream's token count


async def test_spans_links_attributes_and_traceparent(validate_pair: Any) -> None:
    provider, exporter = in_memory()
    candidates = {"cand-a": FakeUpstream(model="cand-model"), "broken": FakeUpstream(mode="error")}
    async with running_stack(
        candidates=candidates,
        candidate_options={"cand-a": {"model": "small-model"}},
        overrides=TRACING_ON,
        tracer_provider=provider,
    ) as stack:
        await chat(stack.url, {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
        records = await stack.memory.wait_for(2)
        spans = await spans_when(exporter, 4)

    assert len(spans) == 4
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    # The SERVER span continues the caller's trace, as a child of the caller's span.
    assert server.name == "POST /v1/chat/completions"
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN and server.parent.is_remote
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert "error.type" not in server.attributes

    # The primary call: a CLIENT child of the SERVER span, whose traceparent the primary got.
    primary = by_role(spans, "prod")
    assert primary.kind == SpanKind.CLIENT
    assert primary.context is not None and primary.parent is not None
    assert primary.context.trace_id == server.context.trace_id
    assert primary.parent.span_id == server.context.span_id
    assert primary.name == "chat prod-model"
    sent = stack.primary.received[0].headers
    # The caller's trace id and flags, the CLIENT span's id.
    assert sent["traceparent"] == f"00-{CALLER_TRACE}-{primary.context.span_id:016x}-01"
    assert sent["tracestate"] == "vendor=abc"
    assert primary.attributes == {
        "server.address": "127.0.0.1",
        "server.port": int(stack.primary.url.rsplit(":", 1)[1]),
        "shadoweval.upstream": "prod",
        "shadoweval.role": "primary",
        "http.request.method": "POST",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "prod-model",
        "gen_ai.response.model": "prod-model",
        "gen_ai.usage.input_tokens": words(PROMPT),
        "gen_ai.usage.output_tokens": words(f"Echo: {PROMPT}"),
        "gen_ai.response.finish_reasons": ("stop",),
        "http.response.status_code": 200,
    }
    assert server.start_time is not None and primary.start_time is not None
    assert server.end_time is not None and primary.end_time is not None
    assert server.start_time <= primary.start_time < primary.end_time <= server.end_time

    # Each shadow call: its own trace, linked to the SERVER span, GenAI attributes.
    request_ids = {r["candidate"]["upstream"]: r["request_id"] for r in records}
    cand = by_role(spans, "cand-a")
    assert cand.kind == SpanKind.CLIENT and cand.parent is None and cand.context is not None
    assert cand.context.trace_id != server.context.trace_id
    [link] = cand.links
    assert link.context.trace_id == server.context.trace_id
    assert link.context.span_id == server.context.span_id
    assert cand.name == "chat small-model"
    assert cand.attributes is not None
    assert {k: v for k, v in cand.attributes.items() if k != "server.port"} == {
        "server.address": "127.0.0.1",
        "gen_ai.operation.name": "chat",
        "shadoweval.upstream": "cand-a",
        "shadoweval.role": "candidate",
        "shadoweval.request_id": request_ids["cand-a"],
        "gen_ai.request.model": "small-model",
        "gen_ai.response.model": "small-model",
        "gen_ai.usage.input_tokens": words(PROMPT),
        "gen_ai.usage.output_tokens": words(f"Echo: {PROMPT}"),
        "gen_ai.response.finish_reasons": ("stop",),
        "http.response.status_code": 200,
    }
    assert cand.status.status_code == StatusCode.UNSET

    broken = by_role(spans, "broken")
    assert broken.attributes is not None
    assert [link.context.span_id for link in broken.links] == [server.context.span_id]
    assert broken.attributes["error.type"] == "http_5xx"
    assert broken.attributes["http.response.status_code"] == 500
    assert "gen_ai.usage.output_tokens" not in broken.attributes
    assert broken.status.status_code == StatusCode.ERROR

    # The pair records carry the request's trace id.
    assert len(records) == 2
    for record in records:
        validate_pair(record)
        assert record["trace_id"] == CALLER_TRACE


async def test_without_traceparent_a_new_trace_starts_and_streams_are_traced() -> None:
    provider, exporter = in_memory()
    async with running_stack(overrides=TRACING_ON, tracer_provider=provider) as stack:
        await chat(stack.url, stream=True)
        [record] = await stack.memory.wait_for(1)
        spans = await spans_when(exporter, 3)

    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server.parent is None and server.context is not None
    trace_id = f"{server.context.trace_id:032x}"
    assert record["trace_id"] == trace_id
    primary = by_role(spans, "prod")
    assert primary.context is not None
    sent = stack.primary.received[0].headers
    assert parse_traceparent(sent["traceparent"]) == (
        trace_id,
        f"{primary.context.span_id:016x}",
        True,
    )
    assert "tracestate" not in sent
    # The caller's stream did not ask for usage: the primary's token count is an estimate.
    assert primary.attributes is not None
    assert primary.attributes["shadoweval.usage.estimated"] is True
    # The candidate's stream asked for it (stream_options.include_usage): measured.
    cand = by_role(spans, "cand-a")
    assert cand.attributes is not None
    assert cand.attributes["gen_ai.usage.output_tokens"] == words(f"Echo: {PROMPT}")
    assert "shadoweval.usage.estimated" not in cand.attributes


async def test_tracing_disabled_makes_no_spans_and_leaves_traceparent_alone() -> None:
    provider, exporter = in_memory()
    async with running_stack(tracer_provider=provider) as stack:
        assert stack.proxy.tracer is None
        await chat(stack.url, {"traceparent": TRACEPARENT})
        [record] = await stack.memory.wait_for(1)
    assert exporter.get_finished_spans() == ()
    assert record["trace_id"] is None
    assert stack.primary.received[0].headers["traceparent"] == TRACEPARENT


async def test_sampling_follows_the_caller_and_shadow_spans_follow_the_request() -> None:
    provider, exporter = in_memory(sample_ratio=0.0)
    async with running_stack(overrides=TRACING_ON, tracer_provider=provider) as stack:
        # Not sampled here (ratio 0): no span at all, not even for the shadow call, but the
        # trace id still reaches the record and the primary (flags 00).
        await chat(stack.url)
        [unsampled] = await stack.memory.wait_for(1)
        await asyncio.sleep(0.1)
        assert exporter.get_finished_spans() == ()
        assert unsampled["trace_id"] is not None and len(unsampled["trace_id"]) == 32
        sent_id, _, sampled = parse_traceparent(stack.primary.received[0].headers["traceparent"])
        assert sent_id == unsampled["trace_id"] and not sampled

        # The caller sampled it: parent-based, so every span is recorded.
        await chat(stack.url, {"traceparent": TRACEPARENT})
        spans = await spans_when(exporter, 3)
    assert {s.kind for s in spans} == {SpanKind.SERVER, SpanKind.CLIENT}
    assert len(spans) == 3


async def test_pass_through_requests_get_http_spans() -> None:
    provider, exporter = in_memory()
    async with (
        running_stack(overrides=TRACING_ON, tracer_provider=provider) as stack,
        aiohttp.ClientSession() as session,
        session.get(f"{stack.url}/missing/thing", headers={"traceparent": TRACEPARENT}) as resp,
    ):
        assert resp.status == 404
        spans = await spans_when(exporter, 2)
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    [client] = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert server.name == "GET" and client.name == "GET"
    assert server.attributes is not None and client.attributes is not None
    assert "gen_ai.operation.name" not in server.attributes
    assert server.attributes["http.response.status_code"] == 404
    assert "error.type" not in server.attributes  # the caller's 4xx is not a server error
    assert client.attributes["error.type"] == "http_4xx"


async def test_enabled_without_opentelemetry_fails_at_start_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, "shadoweval.tracing")
    with pytest.raises(ConfigError, match=r"pip install 'shadoweval\[tracing\]'"):
        async with running_stack(overrides=TRACING_ON):
            pass


def test_tracing_off_never_imports_opentelemetry() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        import aiohttp
        from shadoweval.testing import running_stack

        async def main():
            async with running_stack() as stack, aiohttp.ClientSession() as s:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with s.post(stack.url + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200
                await stack.memory.wait_for(1)
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("mirrored", [False, True])
async def test_the_primarys_answer_is_parsed_once_for_metrics_and_spans(
    mirrored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracing and the metrics share one parse, whether a shadow job holds the answer
    (mirrored here) or not (not mirrored, or mirrored by the shadow worker: the proxy
    process then holds no job either)."""
    parses: list[str] = []
    # Wherever the parser was imported (tracing, telemetry, the dispatcher, ...).
    users = [
        m
        for name, m in list(sys.modules.items())
        if name.startswith("shadoweval.") and name != "shadoweval.protocols.openai"
        and hasattr(m, "parse_answer")
    ]  # fmt: skip
    for module in users:
        real = module.parse_answer

        def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if kwargs.get("role") == "primary":
                parses.append(kwargs["upstream"])
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "parse_answer", counted)
    provider, exporter = in_memory()
    candidates: dict[str, FakeUpstream] | None = None if mirrored else {}
    async with running_stack(
        candidates=candidates, overrides=TRACING_ON, tracer_provider=provider
    ) as stack:
        for _ in range(3):
            await chat(stack.url)
        if mirrored:
            await stack.memory.wait_for(3)
        spans = await spans_when(exporter, 9 if mirrored else 6)
        ok = stack.proxy.metrics.registry.get_sample_value(
            "shadoweval_requests_total",
            {"role": "primary", "upstream": "prod", "model": "prod-model", "route": "chat",
             "outcome": "ok"},
        )  # fmt: skip
    assert ok == 3
    primary = [s for s in spans if (s.attributes or {}).get("shadoweval.upstream") == "prod"]
    assert [(s.attributes or {}).get("gen_ai.response.model") for s in primary] == [
        "prod-model"
    ] * 3
    assert parses == ["prod"] * 3  # one per request, not one for each consumer
