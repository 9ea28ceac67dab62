"""The caller's credentials go to the primary and nowhere else.

Tokens are planted in the caller's Authorization, in a custom key header, in a cookie and in
a query string; traffic of every kind runs with tracing on (in-memory exporter) and every
logger at DEBUG, against candidates that answer, fail and cut off. Then everything the proxy
wrote is scanned: pair records, log lines, span names and attributes, /metrics, and the
headers and bodies each candidate received. The control with ``forward_caller_auth`` is the
one documented exception: it is the primary's own endpoint and gets the credential headers of
the API form called (here OpenAI's: the Authorization only, not the X-Api-Key).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shadoweval.config.proxy import Tracing
from shadoweval.testing import FakeUpstream, running_stack
from shadoweval.tracing import build_provider
from tests.security.rawhttp import exchange

BEARER = "sk-callerPLANTEDbearer0123456789"
API_KEY = "callerPLANTEDapikey0123456789"
COOKIE = "callerPLANTEDcookie0123456789"
QUERY = "callerPLANTEDquery0123456789"
PLANTED = (BEARER, API_KEY, COOKIE, QUERY)
CALLER_HEADERS = {
    "Authorization": f"Bearer {BEARER}",
    "X-Api-Key": API_KEY,
    "Cookie": f"session={COOKIE}",
    "x-shadoweval-task": "qa",
}
CANDIDATE_KEY = "candidate-own-key-0123456789"


async def traffic(url: str) -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    async with aiohttp.ClientSession(headers=CALLER_HEADERS) as s:
        for body in (chat, {**chat, "stream": True}):
            async with s.post(url + f"/v1/chat/completions?api-key={QUERY}", json=body) as r:
                assert r.status == 200
                await r.read()
        async with s.post(url + "/v1/embeddings", json={"model": "e", "input": "x"}) as r:
            assert r.status == 200
        async with s.get(url + f"/v1/models?key={QUERY}") as r:  # pass-through
            assert r.status == 200
        async with s.post(url + "/v1/completions", data=b"{not json") as r:  # primary says 400
            assert r.status == 400
    # A malformed request carrying the token in the broken header line.
    bad = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Api-Key: {API_KEY}\r\x00\r\n"
        "Content-Length: 2\r\n\r\n{}"
    )
    assert (await exchange(url, bad.encode())).status == 400


async def test_caller_credentials_reach_the_primary_and_nothing_else(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CAND_KEY", CANDIDATE_KEY)
    exporter = InMemorySpanExporter()
    provider = build_provider(Tracing(enabled=True), SimpleSpanProcessor(exporter))
    primary = FakeUpstream(model="prod")
    candidates = {
        "cand": FakeUpstream(model="c"),
        "failing": FakeUpstream(mode="error", error_status=503),
        "cut": FakeUpstream(mode="truncate"),
        "ctl": FakeUpstream(model="prod"),
    }
    options: dict[str, dict[str, Any]] = {
        "cand": {"api_key_env": "CAND_KEY", "headers": {"X-Org": "acme"}},
        "failing": {"retry": {"max_attempts": 2, "backoff_s": 0}},
        "ctl": {"role": "control", "forward_caller_auth": True},
    }
    overrides = {"tracing": {"enabled": True}, "log_level": "debug"}
    async with running_stack(
        primary=primary,
        candidates=candidates,
        candidate_options=options,
        overrides=overrides,
        tracer_provider=provider,
    ) as stack:
        await traffic(stack.url)
        records = await stack.memory.wait_for(3 * 4)  # chat, stream, embeddings x 4 candidates
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as s, s.get(stack.proxy.admin_url + "/metrics") as r:
            metrics_text = await r.text()
    spans = exporter.get_finished_spans()
    assert spans, "tracing was on: there must be spans to scan"

    # The primary got every credential as sent (the proxy is transparent to it) ...
    assert primary.received[0].headers["Authorization"] == f"Bearer {BEARER}"
    assert primary.received[0].headers["X-Api-Key"] == API_KEY

    # ... and no record, log line, span or metric holds any of them.
    written = {
        "records": orjson.dumps(records).decode(),
        "logs": caplog.text + "".join(str(r.args) for r in caplog.records),
        "spans": "".join(span.to_json() for span in spans),
        "metrics": metrics_text,
    }
    for where, text in written.items():
        for token in PLANTED:
            assert token not in text, f"{token} found in {where}"

    # Candidates got their own headers only: the candidate its own key, the others none.
    for name, fake in candidates.items():
        assert fake.received, name
        for got in fake.received:
            seen = repr((got.headers, got.body, got.path))
            for token in (API_KEY, COOKIE, QUERY):
                assert token not in seen, (name, token)
            auth = got.headers.get("Authorization")
            if name == "ctl":  # the documented exception: the primary's own endpoint
                assert auth == f"Bearer {BEARER}"
            else:
                assert BEARER not in seen, name
                assert auth == (f"Bearer {CANDIDATE_KEY}" if name == "cand" else None), (name, auth)
    assert candidates["cand"].received[0].headers["X-Org"] == "acme"
    # The candidates' own key is a credential too: it never reaches records, logs or spans.
    for where, text in written.items():
        assert CANDIDATE_KEY not in text, where
