"""Azure OpenAI end to end: the official openai package's AzureOpenAI client through the
proxy (deployment paths with api-version, the resource's Responses path, the /openai/v1
form), stream and not, tools, errors; what a candidate is sent (its deployment, key and
query) and the pair records."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from shadoweval.testing import FakeUpstream, running_stack

API_VERSION = "2024-10-21"
MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def azure(url: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=url, api_key="caller-secret", api_version=API_VERSION, max_retries=0
    )


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def test_answers_are_identical_to_calling_the_primary(validate_pair: Any) -> None:
    async with running_stack() as stack:
        via, direct = azure(stack.url), azure(stack.primary.url)
        a = await via.chat.completions.create(model="prod-deploy", messages=MESSAGES)
        b = await direct.chat.completions.create(model="prod-deploy", messages=MESSAGES)
        assert a.model_dump(exclude={"created"}) == b.model_dump(exclude={"created"})
        stream = await via.chat.completions.create(
            model="prod-deploy", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: What is the capital of France?"
        emb = await via.embeddings.create(model="embed-deploy", input="hello")
        assert len(emb.data[0].embedding) == 16

        records = await stack.memory.wait_for(3)
        for rec in records:
            validate_pair(rec)
        by_route = {(r["route"], r["primary"]["stream"]): r for r in records}
        whole, streamed = by_route[("chat", False)], by_route[("chat", True)]
        for rec in (whole, streamed):
            assert rec["path"] == "/openai/deployments/prod-deploy/chat/completions"
            assert rec["deployment"] == "prod-deploy"
            assert rec["request"]["model"] == "prod-deploy"
            prim = rec["primary"]
            assert prim["error_type"] is None, prim["error"]
            assert prim["output_text"] == "Echo: What is the capital of France?"
            assert rec["candidate"]["output_text"] == prim["output_text"]
        assert whole["primary"]["usage"]["estimated"] is False
        # The candidate asked for a stream's usage (the caller did not).
        assert streamed["candidate"]["usage"]["estimated"] is False
        assert streamed["primary"]["ttft_s"] is not None
        assert by_route[("embeddings", False)]["deployment"] == "embed-deploy"
    # The caller's query (its api-version) went on to the candidate with the path.
    got = stack.candidates["cand-a"].received
    assert {g.path for g in got} == {
        "/openai/deployments/prod-deploy/chat/completions",
        "/openai/deployments/embed-deploy/embeddings",
    }
    assert all(g.query == f"api-version={API_VERSION}" for g in got)


async def test_a_deployment_without_a_model_in_the_body_is_recorded_as_the_model() -> None:
    async with running_stack() as stack:
        async with httpx2.AsyncClient() as http:
            resp = await http.post(
                f"{stack.url}/openai/deployments/prod-deploy/chat/completions",
                params={"api-version": API_VERSION},
                json={"messages": MESSAGES},
                headers={"api-key": "caller-secret"},
            )
        assert resp.status_code == 200
        [rec] = await stack.memory.wait_for(1)
    assert rec["request"]["model"] == "prod-deploy"
    assert rec["deployment"] == "prod-deploy"


async def test_tool_calls_and_responses_on_azure_paths(validate_pair: Any) -> None:
    async with running_stack() as stack:
        c = azure(stack.url)
        done = await c.chat.completions.create(model="prod-deploy", messages=MESSAGES, tools=TOOLS)
        assert done.choices[0].message.tool_calls
        resp = await c.responses.create(model="prod-deploy", input="hello there")
        assert resp.output_text == "Echo: hello there"
        streamed = await c.responses.create(model="prod-deploy", input="and more", stream=True)
        events = [e.type async for e in streamed]
        assert events[-1] == "response.completed"
        records = await stack.memory.wait_for(3)
        for rec in records:
            validate_pair(rec)
    calls = next(r for r in records if r["route"] == "chat")
    [call] = calls["primary"]["tool_calls"]
    assert call["name"] == "lookup" and calls["primary"]["finish_reason"] == "tool_calls"
    responses = [r for r in records if r["route"] == "responses"]
    assert {r["path"] for r in responses} == {"/openai/responses"}
    assert {r["primary"]["output_text"] for r in responses} == {
        "Echo: hello there",
        "Echo: and more",
    }
    assert all("deployment" not in r for r in responses)  # the model is in the body
    got = stack.candidates["cand-a"].received
    assert all(g.query == f"api-version={API_VERSION}" for g in got)
    assert all(g.body["store"] is False for g in got if g.path == "/openai/responses")


async def test_the_v1_form_is_understood() -> None:
    async with running_stack() as stack:
        c = openai.AsyncOpenAI(
            base_url=f"{stack.url}/openai/v1/", api_key="caller-secret", max_retries=0
        )
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await c.responses.create(model="gpt-4o", input="hi")
        records = await stack.memory.wait_for(2)
    assert sorted(r["path"] for r in records) == [
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
    ]
    assert sorted(r["route"] for r in records) == ["chat", "responses"]


async def test_an_azure_candidate_gets_its_deployment_key_and_api_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAND_AZURE_KEY", "cand-secret")
    cand = FakeUpstream(model="cand-model")
    options = {
        "cand-a": {
            # The candidate's own query: its api-version replaces the caller's.
            "url_query": "api-version=2025-04-01-preview&extra=1",
            "model": "cand-deploy",
            "api_key_env": "CAND_AZURE_KEY",
            "api_key_header": "api-key",
        }
    }
    async with running_stack(candidates={"cand-a": cand}, candidate_options=options) as stack:
        async with httpx2.AsyncClient() as http:
            resp = await http.post(
                f"{stack.url}/openai/deployments/prod-deploy/chat/completions",
                params={"api-version": API_VERSION, "trace": "x", "key": "caller-key"},
                json={"model": "prod-deploy", "messages": MESSAGES},
                headers={"api-key": "caller-secret"},
            )
        assert resp.status_code == 200
        [rec] = await stack.memory.wait_for(1)
    assert rec["deployment"] == "prod-deploy"
    [got] = cand.received
    assert got.path == "/openai/deployments/cand-deploy/chat/completions"
    assert got.body["model"] == "cand-deploy"
    # The caller's other parameters kept, its credentials never passed on.
    assert got.query == "trace=x&api-version=2025-04-01-preview&extra=1"
    headers = lower(got.headers)
    assert headers["api-key"] == "cand-secret"
    assert "authorization" not in headers


async def test_errors_reach_the_caller_as_the_primary_sent_them(validate_pair: Any) -> None:
    primary = FakeUpstream(model="prod-model", mode="rate_limit")
    async with running_stack(primary=primary) as stack:
        with pytest.raises(openai.RateLimitError):
            await azure(stack.url).chat.completions.create(model="prod-deploy", messages=MESSAGES)
        [rec] = await stack.memory.wait_for(1)
        validate_pair(rec)
    assert rec["primary"]["error_type"] == "http_429"
    assert rec["primary"]["error"] == "rate limited"


async def test_a_missing_api_version_is_the_primarys_answer_to_give() -> None:
    async with running_stack() as stack:
        async with httpx2.AsyncClient() as http:
            via = await http.post(
                f"{stack.url}/openai/deployments/prod-deploy/chat/completions",
                json={"messages": MESSAGES},
            )
        assert via.status_code == 404
        [rec] = await stack.memory.wait_for(1)
    assert rec["primary"]["error_type"] == "http_4xx"
    assert rec["candidate"]["error_type"] == "http_4xx"


async def test_azure_traffic_goes_to_an_openai_candidate_and_the_reverse() -> None:
    plain, az = FakeUpstream(model="plain"), FakeUpstream(model="az")
    options = {
        "plain": {"paths": "openai", "model": "small-model"},
        "az": {"paths": "azure", "model": "az-deploy", "url_query": "api-version=2025-01-01"},
    }
    async with running_stack(candidates={"plain": plain, "az": az}, candidate_options=options) as s:
        await azure(s.url).chat.completions.create(model="prod-deploy", messages=MESSAGES)
        c = openai.AsyncOpenAI(base_url=f"{s.url}/v1", api_key="caller-secret", max_retries=0)
        await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await c.responses.create(model="gpt-4o", input="hi")
        await c.embeddings.create(model="ada", input="hi")
        records = await s.memory.wait_for(8)
    assert all(r["candidate"]["error_type"] is None for r in records), records
    # The Azure request's api-version belongs to Azure's form: not sent to /v1 paths.
    assert [(g.path, g.query) for g in plain.received] == [
        ("/v1/chat/completions", ""),
        ("/v1/chat/completions", ""),
        ("/v1/responses", ""),
        ("/v1/embeddings", ""),
    ]
    # An Azure candidate's own api-version replaces the caller's.
    assert [(g.path, g.query) for g in az.received] == [
        ("/openai/deployments/az-deploy/chat/completions", "api-version=2025-01-01"),
        ("/openai/deployments/az-deploy/chat/completions", "api-version=2025-01-01"),
        ("/openai/responses", "api-version=2025-01-01"),
        ("/openai/deployments/az-deploy/embeddings", "api-version=2025-01-01"),
    ]
