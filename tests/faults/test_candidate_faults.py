"""Candidates that break in every way the network allows. For each: the caller gets exactly
what the primary alone gives (compared with a direct call, byte for byte), the failure is
counted under its error type, and every shadow ends as a record (nothing lost)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
from aiohttp import web

from shadoweval.testing import FakeUpstream, running_stack
from tests.faults.helpers import ScriptedUpstream, call, sample, shadow_accounting
from tests.waiting import wait_for

BODY = orjson.dumps(
    {
        "model": "prod",
        "stream": True,
        "messages": [{"role": "user", "content": "capital of France?"}],
    }
)
ONE_TRY = {"retry": {"max_attempts": 1}}
# A hung candidate's shadow ends this long after the caller's answer: the ordering checked
# in run_fault, not a time limit.
HANG_TIMEOUT_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# name: (upstream or URL, candidate options, error type the failure is counted as)
FAULTS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "hangs": (
        lambda: FakeUpstream(mode="hang"),
        {"timeout_s": HANG_TIMEOUT_S, **ONE_TRY},
        "timeout",
    ),
    "resets before answering": (lambda: FakeUpstream(mode="reset"), ONE_TRY, "truncated_stream"),
    "resets mid-stream": (lambda: ScriptedUpstream("sse_reset"), ONE_TRY, "truncated_stream"),
    "sends garbage": (lambda: FakeUpstream(mode="garbage"), ONE_TRY, "invalid_response"),
    "sends half an SSE stream and closes": (
        lambda: FakeUpstream(mode="truncate"),
        ONE_TRY,
        "truncated_stream",
    ),
    "answers 5xx": (
        lambda: FakeUpstream(mode="error", error_status=502),
        {"retry": {"max_attempts": 2, "backoff_s": 0}},
        "http_5xx",
    ),
    "has a DNS name that does not resolve": (
        lambda: "http://candidate.shadoweval.invalid:8000",
        ONE_TRY,
        "connect",
    ),
    "refuses connections": (lambda: f"http://127.0.0.1:{free_port()}", ONE_TRY, "connect"),
}


async def run_fault(
    upstream: Any, options: dict[str, Any], requests: int
) -> tuple[Any, list[Any], list[Any]]:
    """Direct and proxied outcomes of ``requests`` calls, with a broken candidate "bad"."""
    primary = ScriptedUpstream("ok_stream")
    if isinstance(upstream, str):
        stack_args: dict[str, Any] = {
            "candidates": {},
            "overrides": {"candidates": [{"name": "bad", "url": upstream, **options}]},
        }
    else:
        stack_args = {"candidates": {"bad": upstream}, "candidate_options": {"bad": options}}
    async with running_stack(primary=primary, **stack_args) as stack:  # type: ignore[arg-type]
        direct = [await call(primary.url, BODY) for _ in range(requests)]
        proxied = []
        hangs = options.get("timeout_s") == HANG_TIMEOUT_S
        for i in range(requests):
            proxied.append(await call(stack.url, BODY))
            if hangs:  # had the caller waited for the candidate, its timeout would be recorded
                assert len(stack.memory.records) <= i, "the caller waited for a candidate"
        await stack.memory.wait_for(requests, timeout=15)
        return stack, direct, proxied


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_candidate_that(fault: str) -> None:
    make, options, error_type = FAULTS[fault]
    requests = 3
    stack, direct, proxied = await run_fault(make(), options, requests)
    m = stack.proxy.metrics
    assert direct[0].complete and direct[0].body.endswith(b"data: [DONE]\n\n")
    assert proxied == direct  # status, headers, every byte, clean end
    assert (
        sample(
            m,
            "shadoweval_upstream_errors_total",
            role="candidate",
            upstream="bad",
            error_type=error_type,
        )
        == requests
    )
    records = stack.memory.records
    assert [r["candidate"]["error_type"] for r in records] == [error_type] * requests
    assert all(r["primary"]["error_type"] is None for r in records)
    accounting = shadow_accounting(m, "bad")
    assert accounting["balance"] == 0 and accounting["pairs"] == requests, accounting
    assert sample(m, "shadoweval_sink_records_total", sink="memory", outcome="written") == requests


async def test_a_candidate_that_answers_429_is_retried_after_retry_after() -> None:
    fake = FakeUpstream(mode="rate_limit", retry_after_s=0.3)
    options = {"retry": {"max_attempts": 3, "backoff_s": 0, "respect_retry_after": True}}
    stack, direct, proxied = await run_fault(fake, options, requests=1)
    m = stack.proxy.metrics
    assert proxied == direct
    [record] = stack.memory.records
    assert record["candidate"]["error_type"] == "http_429" and record["candidate"]["attempts"] == 3
    gaps = [b.at - a.at for a, b in zip(fake.received, fake.received[1:], strict=False)]
    assert len(fake.received) == 3 and all(gap >= 0.28 for gap in gaps), gaps
    assert (
        sample(m, "shadoweval_retries_total", role="candidate", upstream="bad", outcome="error")
        == 2
    )
    for attempt in ("1", "2", "3"):
        assert (
            sample(
                m,
                "shadoweval_upstream_attempts_total",
                role="candidate",
                upstream="bad",
                attempt=attempt,
                outcome="http_429",
            )
            == 1
        )
    assert (
        sample(
            m,
            "shadoweval_upstream_errors_total",
            role="candidate",
            upstream="bad",
            error_type="http_429",
        )
        == 1
    )
    assert shadow_accounting(m, "bad")["balance"] == 0


async def test_a_hanging_candidate_fills_only_its_own_queue() -> None:
    """Past concurrency + queue_size the shadows are dropped and counted, still invisible
    to the caller, while a healthy candidate next to it keeps every pair."""
    primary = ScriptedUpstream("ok")
    cands = {"bad": FakeUpstream(mode="hang"), "good": FakeUpstream(model="g")}
    opts = {"bad": {"timeout_s": 30, "concurrency": 1, "queue_size": 2, **ONE_TRY}}
    async with running_stack(primary=primary, candidates=cands, candidate_options=opts) as stack:  # type: ignore[arg-type]
        body = orjson.dumps({"model": "prod", "messages": [{"role": "user", "content": "hi"}]})
        direct = await call(primary.url, body)
        for _ in range(10):
            assert await call(stack.url, body) == direct
        await stack.memory.wait_for(10)
        m = stack.proxy.metrics
        await wait_for(
            lambda: shadow_accounting(m, "bad")["balance"] == 3, what="3 bad shadows in flight"
        )  # 1 in flight + 2 queued
        assert (
            sample(m, "shadoweval_shadow_dropped_total", upstream="bad", reason="queue_full") == 7
        )
        assert shadow_accounting(m, "good") == {
            "sampled": 10,
            "pairs": 10,
            "dropped": 0,
            "internal": 0,
            "balance": 0,
        }
    # On stop, the 3 still pending are counted as dropped at shutdown: the balance closes.
    assert sample(m, "shadoweval_shadow_dropped_total", upstream="bad", reason="shutdown") == 3
    assert shadow_accounting(m, "bad")["balance"] == 0


class HangsFirst(FakeUpstream):
    """Holds its first ``hangs`` requests for 2 s (past the candidate's timeout), then
    answers normally, keeping its connections alive throughout."""

    def __init__(self, hangs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hangs = hangs

    async def _handle(self, request: Any) -> Any:
        if self.hangs > 0:
            self.hangs -= 1
            await request.read()
            await asyncio.sleep(2.0)
            return web.json_response({"error": {"message": "too late"}}, status=500)
        return await super()._handle(request)


async def test_a_candidate_that_timed_out_keeps_no_connection_slot() -> None:
    """Found by the soak test: a shadow cancelled by its timeout while waiting for the
    answer's head kept its pooled connection checked out; after `concurrency` such
    timeouts the candidate was starved for good (every later shadow timed out waiting for
    a connection, while the upstream itself was fine again)."""
    fake = HangsFirst(hangs=2, model="c")
    options = {"timeout_s": 0.5, "concurrency": 2, **ONE_TRY}
    async with running_stack(
        primary=ScriptedUpstream("ok"), candidates={"bad": fake}, candidate_options={"bad": options}
    ) as stack:  # type: ignore[arg-type]
        body = orjson.dumps({"model": "prod", "messages": [{"role": "user", "content": "hi"}]})
        for _ in range(2):  # both hang: both slots time out
            await call(stack.url, body)
        await stack.memory.wait_for(2)
        for _ in range(4):  # the upstream answers again: so must the shadows
            await call(stack.url, body)
        records = await stack.memory.wait_for(6)
        assert [r["candidate"]["error_type"] for r in records] == ["timeout"] * 2 + [None] * 4


async def test_a_refusing_candidate_trips_its_circuit_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After `failures` refused calls the circuit opens: shadows are dropped at offer time
    (counted `circuit_open`, nothing sent), the caller still gets the primary's bytes; once
    the candidate listens again, the trial call after the cooldown closes it. The breaker
    reads a clock the test moves, so the cooldown is not a race with a busy machine."""
    port = free_port()
    breaker = {"failures": 3, "cooldown_s": 2.0, "max_cooldown_s": 2.0}
    url = f"http://127.0.0.1:{port}"
    bad = {"name": "bad", "url": url, "circuit_breaker": breaker, **ONE_TRY}
    primary = ScriptedUpstream("ok_stream")
    revived = FakeUpstream(model="back")
    caplog.set_level("INFO", logger="shadoweval.proxy.breaker")
    try:
        async with running_stack(
            primary=primary, candidates={}, overrides={"candidates": [bad]}
        ) as stack:  # type: ignore[arg-type]
            m = stack.proxy.metrics
            now = [1000.0]
            assert stack.proxy.dispatcher is not None
            [lane] = stack.proxy.dispatcher._lanes
            assert lane.breaker is not None
            lane.breaker._clock = lambda: now[0]
            direct = await call(primary.url, BODY)

            def circuit() -> float:
                return sample(m, "shadoweval_candidate_circuit_open", upstream="bad")

            def dropped() -> float:
                return sample(
                    m, "shadoweval_shadow_dropped_total", upstream="bad", reason="circuit_open"
                )

            async def proxied(requests: int) -> None:
                for _ in range(requests):  # one at a time, each shadow settled before the next
                    assert await call(stack.url, BODY) == direct
                    await wait_for(
                        lambda: shadow_accounting(m, "bad")["balance"] == 0,
                        what="every bad shadow accounted for",
                    )

            assert circuit() == 0
            await proxied(3)
            errors = [r["candidate"]["error_type"] for r in stack.memory.records]
            assert errors == ["connect"] * 3
            assert circuit() == 1

            await proxied(10)  # the clock stands still: all within the cooldown
            assert dropped() == 10
            assert len(stack.memory.records) == 3  # nothing sent, nothing recorded

            await revived.start(port=port)  # the candidate is back
            now[0] += breaker["cooldown_s"] + 0.05
            await proxied(5)  # the first is the trial; it closes the circuit
            errors = [r["candidate"]["error_type"] for r in stack.memory.records]
            assert errors == ["connect"] * 3 + [None] * 5
            assert circuit() == 0 and dropped() == 10
            assert len(revived.received) == 5
            assert shadow_accounting(m, "bad") == {
                "sampled": 18,
                "pairs": 8,
                "dropped": 10,
                "internal": 0,
                "balance": 0,
            }
    finally:
        await revived.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "circuit" in r.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
