"""Anthropic Messages end to end: the official anthropic client through the proxy, stream
and not, tools, errors; the candidate's request (system prompt, credentials, version)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from shadoweval.testing import FakeUpstream, running_stack

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS: Any = [
    {
        "name": "lookup",
        "description": "Look a city up",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
]


def client(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="caller-secret", max_retries=0)


async def raw_bytes(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with httpx2.AsyncClient() as http:
        resp = await http.post(
            f"{url}/v1/messages",
            json=body,
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
        return resp.status_code, resp.content


async def test_answers_are_identical_to_calling_the_primary(validate_pair: Any) -> None:
    async with running_stack() as stack:
        via, direct = client(stack.url), client(stack.primary.url)
        a = await via.messages.create(model="prod-model", max_tokens=64, messages=MESSAGES)
        b = await direct.messages.create(model="prod-model", max_tokens=64, messages=MESSAGES)
        assert a.model_dump() == b.model_dump()
        assert a.content[0].type == "text" and a.stop_reason == "end_turn"

        async with via.messages.stream(
            model="prod-model", max_tokens=64, messages=MESSAGES
        ) as stream:
            text_via = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text_via == "Echo: What is the capital of France?"
        assert final.usage.output_tokens > 0

        body = {"model": "prod-model", "max_tokens": 64, "messages": MESSAGES, "stream": True}
        assert await raw_bytes(stack.url, body) == await raw_bytes(stack.primary.url, body)

        records = await stack.memory.wait_for(3)  # whole, streamed, raw stream
        for rec in records:
            validate_pair(rec)
            assert rec["route"] == "messages"
        whole = next(r for r in records if not r["primary"]["stream"])
        streamed = next(r for r in records if r["primary"]["stream"])
        for rec in (whole, streamed):
            prim = rec["primary"]
            assert prim["error_type"] is None, prim["error"]
            assert prim["output_text"] == "Echo: What is the capital of France?"
            assert prim["finish_reason"] == "end_turn"
            assert prim["model"] == "prod-model"
            assert prim["usage"]["estimated"] is False
            assert prim["usage"]["output_tokens"] == a.usage.output_tokens
            assert prim["usage"]["input_tokens"] == a.usage.input_tokens
            assert rec["candidate"]["error_type"] is None
            assert rec["candidate"]["output_text"] == prim["output_text"]
        assert streamed["primary"]["ttft_s"] is not None


async def test_tool_use_blocks_are_recorded_as_tool_calls() -> None:
    async with running_stack() as stack:
        c = client(stack.url)
        msg = await c.messages.create(
            model="prod-model", max_tokens=64, messages=MESSAGES, tools=TOOLS
        )
        assert msg.content[0].type == "tool_use" and msg.stop_reason == "tool_use"
        async with c.messages.stream(
            model="prod-model", max_tokens=64, messages=MESSAGES, tools=TOOLS
        ) as stream:
            streamed = await stream.get_final_message()
        assert streamed.content[0].type == "tool_use"
        records = await stack.memory.wait_for(2)
        for rec in records:
            [call] = rec["primary"]["tool_calls"]
            assert call["name"] == "lookup" and call["id"] == "toolu_fake"
            assert '"q"' in call["arguments"]
            assert rec["primary"]["finish_reason"] == "tool_use"


async def test_candidate_gets_its_system_prompt_key_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAND_ANTHROPIC_KEY", "cand-secret")
    cand = FakeUpstream(model="cand-model")
    options = {
        "cand-a": {
            "api_key_env": "CAND_ANTHROPIC_KEY",
            "api_key_header": "x-api-key",
            "system_prompt": "Be brief.",
            "system_prompt_mode": "prepend",
        }
    }
    async with running_stack(candidates={"cand-a": cand}, candidate_options=options) as stack:
        await client(stack.url).messages.create(
            model="prod-model", max_tokens=64, system="You are a geographer.", messages=MESSAGES
        )
        await stack.memory.wait_for(1)
    [got] = cand.received
    assert got.path == "/v1/messages"
    assert got.body["system"] == "Be brief.\n\nYou are a geographer."
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["x-api-key"] == "cand-secret"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers  # the caller's key never reaches a candidate
    assert "stream_options" not in got.body


async def test_errors_reach_the_caller_as_the_primary_sent_them() -> None:
    primary = FakeUpstream(model="prod-model", mode="error", error_status=529)
    async with running_stack(primary=primary) as stack:
        with pytest.raises(anthropic.APIStatusError) as err:
            await client(stack.url).messages.create(
                model="prod-model", max_tokens=64, messages=MESSAGES
            )
        assert err.value.status_code == 529
        [rec] = await stack.memory.wait_for(1)
        assert rec["primary"]["error_type"] == "http_5xx"
        assert rec["primary"]["error"] == "injected failure"


async def test_multipart_uploads_are_relayed_exactly_and_not_mirrored() -> None:
    files = {"file": ("a.wav", b"RIFF" + bytes(range(256)) * 64, "audio/wav")}
    async with running_stack() as stack:
        async with httpx2.AsyncClient() as http:
            via = await http.post(
                f"{stack.url}/v1/audio/transcriptions", files=files, data={"model": "whisper"}
            )
        assert via.status_code == 200
        got = via.json()
        assert got["path"] == "/v1/audio/transcriptions" and got["body_bytes"] > 16384
        # An understood request after it: once its record is written, the upload's turn to
        # be offered has long passed (offers run in request order), so one record means the
        # upload was passed through only.
        await client(stack.url).messages.create(model="prod-model", max_tokens=8, messages=MESSAGES)
        records = await stack.memory.wait_for(1)
        assert [r["path"] for r in records] == ["/v1/messages"]


async def test_a_control_forwarding_the_callers_credentials_gets_its_x_api_key() -> None:
    cands = {"ctl": FakeUpstream(model="claude-prod")}
    opts = {"ctl": {"role": "control", "forward_caller_auth": True}}
    body = {
        "model": "claude-prod",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with running_stack(candidates=cands, candidate_options=opts) as stack:
        status, _ = await raw_bytes(stack.url, body)  # the caller's key in x-api-key
        assert status == 200
        [rec] = await stack.memory.wait_for(1)
        assert rec["candidate"]["error_type"] is None
    got = {k.lower(): v for k, v in cands["ctl"].received[0].headers.items()}
    assert got["x-api-key"] == "k"
    assert "authorization" not in got
