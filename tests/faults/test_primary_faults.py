"""A primary that breaks: the caller gets what the primary alone would have given (same
status, headers, bytes and the same kind of ending), the failure is counted and recorded,
and the shadows still produce their pairs. Only when the primary gives nothing at all (down,
or silent past primary.timeout_s) does the proxy answer itself: a fast, marked 502/504."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest

from shadoweval.testing import FakeUpstream, running_stack
from tests.faults.helpers import EVENTS, ScriptedUpstream, call, sample, shadow_accounting

STREAM = orjson.dumps(
    {"model": "prod", "stream": True, "messages": [{"role": "user", "content": "capital?"}]}
)
PLAIN = orjson.dumps({"model": "prod", "messages": [{"role": "user", "content": "capital?"}]})

# behaviour: (request body, how the primary's failure is recorded)
FAULTS: dict[str, tuple[Any, bytes, str]] = {
    "resets mid-stream": ("sse_reset", STREAM, "truncated_stream"),
    "closes mid-stream": ("sse_close", STREAM, "truncated_stream"),
    "answers 503 with Retry-After": ("http_503", PLAIN, "http_5xx"),
    "sends garbage": ("garbage", PLAIN, "invalid_response"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_primary_that(fault: str) -> None:
    behaviour, body, error_type = FAULTS[fault]
    primary = ScriptedUpstream(behaviour)
    requests = 3
    async with running_stack(primary=primary) as stack:  # type: ignore[arg-type]
        direct = [await call(primary.url, body) for _ in range(requests)]
        proxied = [await call(stack.url, body) for _ in range(requests)]
        records = await stack.memory.wait_for(requests)
        m = stack.proxy.metrics
        assert proxied == direct
        if behaviour.startswith("sse"):
            assert not direct[0].complete and direct[0].body == b"".join(EVENTS[:3])
        assert primary.requests == 2 * requests  # never retried by default
        assert (
            sample(
                m,
                "shadoweval_upstream_errors_total",
                role="primary",
                upstream="prod",
                error_type=error_type,
            )
            == requests
        )
        assert [r["primary"]["error_type"] for r in records] == [error_type] * requests
        assert all(r["candidate"]["error_type"] is None for r in records)
        assert shadow_accounting(m, "cand-a")["balance"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_primary_that_is_down_gets_a_fast_marked_502() -> None:
    port = free_port()
    assert (await call(f"http://127.0.0.1:{port}", PLAIN)).error == "ClientConnectorError"
    async with running_stack(overrides={"primary": {"url": f"http://127.0.0.1:{port}"}}) as stack:
        out = await call(stack.url, PLAIN)
        # Fast by construction: refused at connect, no retry (a timeout would be a 504).
        assert out.status == 502 and out.complete and b'"code":"primary_connect"' in out.body
        [record] = await stack.memory.wait_for(1)
        assert record["primary"]["error_type"] == "connect"
        assert (
            sample(
                stack.proxy.metrics,
                "shadoweval_upstream_errors_total",
                role="primary",
                upstream="prod",
                error_type="connect",
            )
            == 1
        )


async def test_a_primary_silent_past_its_timeout_gets_a_504() -> None:
    overrides: dict[str, Any] = {"primary": {"timeout_s": 0.5}}
    async with running_stack(primary=FakeUpstream(mode="hang"), overrides=overrides) as stack:
        out = await call(stack.url, PLAIN)
        # The fake never answers: only the 0.5 s timer can have ended this call.
        assert out.status == 504 and b'"code":"primary_timeout"' in out.body
        [record] = await stack.memory.wait_for(1)
        assert record["primary"]["error_type"] == "timeout"
