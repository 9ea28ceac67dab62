"""The proxy end to end: the official openai client, real sockets, fake upstreams."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import openai
import pytest

from shadoweval.testing import FakeUpstream, Latency, running_stack
from tests.waiting import wait_for

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]


def client(url: str, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="caller-secret", max_retries=0, **kw)


def metric(stack: Any, name: str, labels: dict[str, str]) -> float:
    return stack.proxy.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_answers_are_identical_to_calling_the_primary(validate_pair: Any) -> None:
    async with running_stack() as stack:
        via, direct = client(stack.url), client(stack.primary.url)
        a = await via.chat.completions.create(model="prod-model", messages=MESSAGES)
        b = await direct.chat.completions.create(model="prod-model", messages=MESSAGES)
        assert a.model_dump(exclude={"created"}) == b.model_dump(exclude={"created"})

        raw_via = await via.chat.completions.with_raw_response.create(
            model="prod-model", messages=MESSAGES
        )
        raw_direct = await direct.chat.completions.with_raw_response.create(
            model="prod-model", messages=MESSAGES
        )
        assert raw_via.status_code == raw_direct.status_code == 200
        assert raw_via.headers["content-type"] == raw_direct.headers["content-type"]

        chunks_via = [
            c.model_dump(exclude={"created"})
            async for c in await via.chat.completions.create(
                model="prod-model", messages=MESSAGES, stream=True
            )
        ]
        chunks_direct = [
            c.model_dump(exclude={"created"})
            async for c in await direct.chat.completions.create(
                model="prod-model", messages=MESSAGES, stream=True
            )
        ]
        assert chunks_via == chunks_direct and len(chunks_via) > 3

        records = await stack.memory.wait_for(3)
        for rec in records:
            validate_pair(rec)
            # How long the shadow queued and its answer waited for parsing: load, told
            # apart from the candidate's latency (a candidate's figures only).
            assert rec["candidate"]["queue_wait_s"] >= 0 and rec["candidate"]["parse_wait_s"] >= 0
            assert "queue_wait_s" not in rec["primary"]
        streamed = [r for r in records if r["primary"]["stream"]]
        assert (
            streamed
            and streamed[0]["primary"]["output_text"] == "Echo: What is the capital of France?"
        )
        assert streamed[0]["primary"]["ttft_s"] is not None


def test_sync_client_through_the_proxy() -> None:
    async def main() -> None:
        async with running_stack() as stack:

            def call() -> tuple[str | None, str]:
                sync = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
                answer = sync.chat.completions.create(model="prod-model", messages=MESSAGES)
                text = "".join(
                    c.choices[0].delta.content or ""
                    for c in sync.chat.completions.create(
                        model="prod-model", messages=MESSAGES, stream=True
                    )
                    if c.choices
                )
                return answer.choices[0].message.content, text

            whole, streamed = await asyncio.to_thread(call)
            assert whole == streamed == "Echo: What is the capital of France?"
            await stack.memory.wait_for(2)

    asyncio.run(main())


async def test_all_understood_routes_are_mirrored(validate_pair: Any) -> None:
    async with running_stack() as stack:
        c = client(stack.url)
        await c.completions.create(model="prod-model", prompt="hello there")
        await c.embeddings.create(model="prod-model", input=["a", "b"])
        resp = await c.responses.create(model="prod-model", input="hi you")
        assert resp.output_text == "Echo: hi you"
        stream = await c.responses.create(model="prod-model", input="hi stream", stream=True)
        async for _ in stream:
            pass
        records = await stack.memory.wait_for(4)
        by_route = {}
        for r in records:
            validate_pair(r)
            by_route.setdefault(r["route"], []).append(r)
        assert set(by_route) == {"completions", "embeddings", "responses"}
        assert by_route["embeddings"][0]["candidate"]["extra"] == {"embeddings": 2, "dims": 16}
        texts = sorted(r["candidate"]["output_text"] for r in by_route["responses"])
        assert texts == ["Echo: hi stream", "Echo: hi you"]


async def test_candidate_gets_own_credentials_rewrites_and_transforms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAND_KEY", "cand-secret")
    opts = {
        "cand-a": {
            "model": "small-model",
            "api_key_env": "CAND_KEY",
            "params": {"temperature": 0, "max_tokens": 64, "seed": 7},
            "system_prompt": "Be brief.",
        },
        "cand-b": {"system_prompt": "Extra rules.", "system_prompt_mode": "prepend"},
    }
    cands = {"cand-a": FakeUpstream(model="small-model"), "cand-b": FakeUpstream(model="b")}
    async with running_stack(candidates=cands, candidate_options=opts) as stack:
        msgs = [{"role": "system", "content": "Original."}, *MESSAGES]
        await client(stack.url).chat.completions.create(
            model="prod-model",
            messages=msgs,
            temperature=0.9,
            extra_headers={"Cookie": "session=1", "X-Custom": "y"},
        )
        records = await stack.memory.wait_for(2)
        primary_req = stack.primary.received[0]
        assert primary_req.headers["Authorization"] == "Bearer caller-secret"
        assert primary_req.headers["Cookie"] == "session=1"
        assert primary_req.body["temperature"] == 0.9 and primary_req.body["messages"] == msgs

        a = cands["cand-a"].received[0]
        assert a.headers["Authorization"] == "Bearer cand-secret"
        assert "Cookie" not in a.headers and "X-Custom" not in a.headers
        assert a.body["model"] == "small-model"
        assert (a.body["temperature"], a.body["max_tokens"], a.body["seed"]) == (0, 64, 7)
        assert a.body["messages"] == [{"role": "system", "content": "Be brief."}, *MESSAGES]

        b = cands["cand-b"].received[0]
        assert "Authorization" not in b.headers  # no api_key_env: no credentials at all
        assert b.body["model"] == "prod-model"
        assert [m["content"] for m in b.body["messages"]] == [
            "Extra rules.",
            "Original.",
            MESSAGES[0]["content"],
        ]
        for rec in records:
            assert "caller-secret" not in str(rec)


async def test_control_can_forward_caller_auth() -> None:
    cands = {"control": FakeUpstream(model="prod-model")}
    opts = {"control": {"role": "control", "forward_caller_auth": True}}
    async with running_stack(candidates=cands, candidate_options=opts) as stack:
        await client(stack.url).chat.completions.create(model="prod-model", messages=MESSAGES)
        [rec] = await stack.memory.wait_for(1)
        assert cands["control"].received[0].headers["Authorization"] == "Bearer caller-secret"
        assert rec["candidate"]["role"] == "control"
        assert rec["candidate"]["output_text"] == rec["primary"]["output_text"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["hang", "refused"])
async def test_slow_or_dead_candidate_never_delays_the_caller(failure: str) -> None:
    primary = FakeUpstream(model="prod-model", latency=Latency.fixed(0.02))
    cands = {"bad": FakeUpstream(mode="hang")} if failure == "hang" else {}
    opts: dict[str, Any] = {"bad": {"timeout_s": 30, "concurrency": 2, "queue_size": 4}}
    overrides: dict[str, Any] = {}
    if failure == "refused":
        overrides = {
            "candidates": [
                {
                    "name": "bad",
                    "url": f"http://127.0.0.1:{free_port()}",
                    "concurrency": 2,
                    "queue_size": 4,
                }
            ]
        }
    async with running_stack(
        primary=primary, candidates=cands, candidate_options=opts, overrides=overrides
    ) as stack:
        c = client(stack.url)
        for _ in range(20):
            r = await c.chat.completions.create(model="prod-model", messages=MESSAGES)
            assert r.choices[0].message.content
        if failure == "hang":
            # The hanging candidate holds its workers for 30 s: every caller got its answer
            # while not one of its shadows had ended, so none waited for it.
            assert stack.memory.records == []
            dropped = metric(
                stack,
                "shadoweval_shadow_dropped_total",
                {"upstream": "bad", "reason": "queue_full"},
            )
            assert dropped == 20 - 2 - 4  # 2 in flight, 4 queued, the rest dropped and counted
        else:
            labels = {"role": "candidate", "upstream": "bad", "error_type": "connect"}
            await wait_for(
                lambda: (
                    metric(stack, "shadoweval_upstream_errors_total", labels) >= 1
                    and bool(stack.memory.records)
                ),
                what="a refused shadow recorded",
            )
            recs = stack.memory.records
            assert recs and all(r["candidate"]["error_type"] == "connect" for r in recs)


async def test_candidate_failures_become_records_not_caller_errors() -> None:
    cands = {
        "err": FakeUpstream(mode="error", error_status=503),
        "garbage": FakeUpstream(mode="garbage"),
        "cut": FakeUpstream(mode="truncate"),
        "limited": FakeUpstream(mode="rate_limit"),
    }
    async with running_stack(candidates=cands) as stack:
        stream = await client(stack.url).chat.completions.create(
            model="prod-model", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: What is the capital of France?"
        records = await stack.memory.wait_for(4)
        kinds = {r["candidate"]["upstream"]: r["candidate"]["error_type"] for r in records}
        assert kinds == {
            "err": "http_5xx",
            "garbage": "invalid_response",
            "cut": "truncated_stream",
            "limited": "http_429",
        }


async def raw_post(
    url: str, body: bytes, path: str = "/v1/chat/completions", **kw: Any
) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as s, s.post(url + path, data=body, **kw) as r:
        return r.status, await r.read(), r.headers


async def test_bad_inputs() -> None:
    async with running_stack(overrides={"limits": {"max_body_bytes": 4096}}) as stack:
        # Malformed JSON and invalid UTF-8: the primary decides (400 here); never mirrored.
        status, body, _ = await raw_post(
            stack.url, b"{not json", headers={"Content-Type": "application/json"}
        )
        assert status == 400 and b"invalid JSON" in body
        status, _, _ = await raw_post(
            stack.url, b'{"model": "\xff\xfe"}', headers={"Content-Type": "application/json"}
        )
        assert status == 400
        # Too large: refused by the proxy itself with a clear JSON error.
        status, body, headers = await raw_post(stack.url, b"x" * 5000)
        assert (
            status == 413
            and b"request_too_large" in body
            and headers["x-shadoweval-error"] == "request_too_large"
        )
        # Unknown route: passed through untouched, not mirrored.
        status, body, headers = await raw_post(stack.url, b"abc", path="/v2/other?x=1")
        assert (
            status == 200
            and b'"/v2/other?x=1"' in body
            and headers["x-fake-upstream"] == "prod-model"
        )
        labels = {"upstream": "cand-a", "reason": "invalid_request"}
        await wait_for(
            lambda: metric(stack, "shadoweval_shadow_dropped_total", labels) == 2,
            what="both invalid requests counted",
        )
        assert stack.memory.records == []
        assert len(stack.candidates["cand-a"].received) == 0


async def test_primary_down_is_a_fast_clear_502() -> None:
    async with running_stack() as stack:
        await stack.primary.stop()
        with pytest.raises(openai.InternalServerError) as err:
            await client(stack.url).chat.completions.create(model="prod-model", messages=MESSAGES)
        # Fast: a refused connection is answered at once (a timeout would be a 504).
        assert err.value.status_code == 502
        assert err.value.response.headers["x-shadoweval-error"] == "primary_connect"
        assert "cannot connect to upstream" in err.value.response.json()["error"]["message"]
        [rec] = await stack.memory.wait_for(1)
        assert rec["primary"]["error_type"] == "connect" and rec["primary"]["status"] is None


async def test_primary_garbage_is_relayed_and_recorded() -> None:
    async with running_stack(primary=FakeUpstream(mode="garbage")) as stack:
        status, body, _ = await raw_post(
            stack.url,
            b'{"model": "m", "messages": []}',
            headers={"Content-Type": "application/json"},
        )
        assert (status, body) == (200, b"\x00not json{{")
        [rec] = await stack.memory.wait_for(1)
        assert rec["primary"]["error_type"] == "invalid_response"


async def test_primary_cut_mid_stream_reaches_caller_as_cut() -> None:
    async with running_stack(primary=FakeUpstream(mode="truncate")) as stack:
        stream = await client(stack.url).chat.completions.create(
            model="prod-model", messages=MESSAGES, stream=True
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        [rec] = await stack.memory.wait_for(1)
        assert rec["primary"]["error_type"] == "truncated_stream" and rec["primary"]["truncated"]
        assert rec["candidate"]["error_type"] is None


async def test_streams_are_relayed_chunk_by_chunk() -> None:
    primary = FakeUpstream(model="prod-model", token_delay_s=0.15)
    async with running_stack(primary=primary) as stack:
        stream = await client(stack.url).chat.completions.create(
            model="prod-model", messages=MESSAGES, stream=True
        )
        arrivals = []
        t0 = time.perf_counter()
        async for _ in stream:
            arrivals.append(time.perf_counter() - t0)
        # 9 events 150 ms apart: a buffering proxy would deliver them all at once at the end.
        assert len(arrivals) >= 8
        assert arrivals[-1] - arrivals[1] > 0.6


async def test_sampling_rate_zero_and_keyed_sampling() -> None:
    async with running_stack(overrides={"sampling": {"rate": 0.0}}) as stack:
        await client(stack.url).chat.completions.create(model="prod-model", messages=MESSAGES)
        await asyncio.sleep(0.2)
        assert stack.memory.records == [] and not stack.candidates["cand-a"].received
    async with running_stack(
        overrides={"sampling": {"rate": 0.5, "key": "header:x-user-id"}}
    ) as stack:
        c = client(stack.url)
        for user in range(20):
            for _ in range(3):
                await c.chat.completions.create(
                    model="prod-model", messages=MESSAGES, extra_headers={"x-user-id": f"u{user}"}
                )
        decided = {"upstream": "cand-a", "decision": "in"}
        await wait_for(
            lambda: (
                len(stack.memory.records)
                == metric(stack, "shadoweval_shadow_sampling_decisions_total", decided)
            ),
            what="every mirrored request paired",
        )
        per_key: dict[str, int] = {}
        for rec in stack.memory.records:
            per_key[rec["sampling_key"]] = per_key.get(rec["sampling_key"], 0) + 1
        assert 0 < len(per_key) < 20
        assert set(per_key.values()) == {3}  # a user is always in or always out


async def test_redaction_applies_to_records_not_to_traffic() -> None:
    async with running_stack() as stack:
        msg = [{"role": "user", "content": "I am jane@example.com, card 4111 1111 1111 1111"}]
        r = await client(stack.url).chat.completions.create(model="prod-model", messages=msg)
        assert "jane@example.com" in (r.choices[0].message.content or "")
        [rec] = await stack.memory.wait_for(1)
        text = str(rec)
        assert "jane@example.com" not in text and "4111" not in text
        assert "[REDACTED:email]" in rec["request"]["messages"][0]["content"]
        assert "[REDACTED:credit_card]" in rec["primary"]["output_text"]


async def test_admin_endpoints() -> None:
    async with running_stack() as stack, aiohttp.ClientSession() as s:
        for path, expected in (("/healthz", 200), ("/readyz", 200)):
            async with s.get(stack.proxy.admin_url + path) as r:
                assert r.status == expected
        async with s.get(stack.proxy.admin_url + "/metrics") as r:
            assert "shadoweval_shadow_queue_depth" in await r.text()
        async with s.get(stack.url + "/metrics") as r:  # the proxy port passes through
            assert r.headers["x-fake-upstream"] == "prod-model"
