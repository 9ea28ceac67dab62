"""The shadow worker (``shadow_worker.enabled``): candidates, pairing and the sink in a
child process. The caller sees the same answers, the records are the same, /metrics is one
exposition, and a dead worker costs shadows only — never a primary answer."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Sampling, parse
from shadoweval.records import iter_jsonl
from shadoweval.sampling import Sampler
from shadoweval.testing import running_stack
from tests.waiting import wait_for

MESSAGES: Any = [{"role": "user", "content": "hello worker"}]


def overrides(tmp_path: Path) -> dict[str, Any]:
    # scheduling: normal, not the default idle: under SCHED_IDLE the worker gets only the CPU
    # everything else leaves, so on a machine busy with other work it may not even finish
    # starting (by design). These tests are about what the worker does, not its class.
    return {
        "shadow_worker": {"enabled": True, "scheduling": "normal"},
        "sink": {"kind": "file", "path": str(tmp_path / "pairs.jsonl")},
    }


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)


async def scrape(admin_url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{admin_url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def wait_for_pairs(admin_url: str, n: int, **labels: str) -> str:
    """The /metrics text once ``shadoweval_pairs_total`` (merged from the worker) reaches n."""
    text = ""

    async def paired() -> bool:
        nonlocal text
        text = await scrape(admin_url)
        return sample(text, "shadoweval_pairs_total", **labels) >= n

    await wait_for(
        paired,
        what=f"{n} pairs {labels}",
        state=lambda: sample(text, "shadoweval_pairs_total", **labels),
    )
    return text


async def test_pairs_and_metrics_come_from_the_worker(tmp_path: Path, validate_pair: Any) -> None:
    async with running_stack(overrides=overrides(tmp_path)) as stack:
        worker = stack.proxy.worker
        assert worker is not None and stack.proxy.dispatcher is None
        c = client(stack.url)
        answers = [
            await c.chat.completions.create(model="prod-model", messages=MESSAGES) for _ in range(5)
        ]
        assert all(a.choices[0].message.content == "Echo: hello worker" for a in answers)
        # The worker pairs asynchronously.
        text = await wait_for_pairs(stack.proxy.admin_url, 5, upstream="cand-a")
        # One exposition: every family once, the primary's series from the proxy process
        # and the candidate's from the worker.
        names = [f.name for f in text_string_to_metric_families(text)]
        assert len(names) == len(set(names))
        assert sample(text, "shadoweval_pairs_total", upstream="cand-a") == 5
        assert (
            sample(text, "shadoweval_requests_total", role="primary", upstream="prod", outcome="ok")
            == 5
        )
        assert sample(text, "shadoweval_requests_total", role="candidate", upstream="cand-a") == 5
        assert sample(text, "shadoweval_ready") == 1
        # Per-process facts are the proxy's, not a sum.
        assert sample(text, "process_start_time_seconds") < 2 * 10**10
        # The worker sends and reads at the proxy's priority (its times are the wire's);
        # its one child, which parses, pairs and writes, runs lower.
        assert worker.process.pid is not None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == ours
        (pairing,) = children_of(worker.process.pid)
        assert os.getpriority(os.PRIO_PROCESS, pairing) >= ours + 10
    records = list(iter_jsonl([tmp_path / "pairs.jsonl"], Counter()))
    assert len(records) == 5
    for r in records:
        assert r["primary"]["output_text"] == "Echo: hello worker"
        assert r["candidate"]["upstream"] == "cand-a"
        assert r["request"]["messages"] == MESSAGES
        validate_pair(r)
        # Timed in the worker, parsed in its idle child: both waits are on the record.
        assert r["candidate"]["queue_wait_s"] >= 0 and r["candidate"]["parse_wait_s"] >= 0


async def test_a_dead_worker_costs_shadows_only_and_is_replaced(tmp_path: Path) -> None:
    async with running_stack(overrides=overrides(tmp_path)) as stack:
        worker = stack.proxy.worker
        assert worker is not None and worker.process.pid is not None
        first_pid = worker.process.pid
        c = client(stack.url)
        await c.chat.completions.create(model="prod-model", messages=MESSAGES)
        os.kill(first_pid, signal.SIGKILL)
        registry = stack.proxy.metrics.registry
        process = {"process": "shadow_worker"}
        # The proxy has seen the channel close (its death is counted as it is noticed).
        await wait_for(
            lambda: (
                registry.get_sample_value("shadoweval_process_restarts_total", process) == 1
                and not worker.process.ready
            ),
            what="the proxy to notice the dead worker",
        )
        # The caller never notices.
        for _ in range(3):
            answer = await c.chat.completions.create(model="prod-model", messages=MESSAGES)
            assert answer.choices[0].message.content == "Echo: hello worker"
        dropped = stack.proxy.metrics.registry.get_sample_value(
            "shadoweval_shadow_dropped_total",
            {"upstream": "cand-a", "reason": "worker_unavailable"},
        )
        assert dropped == 3
        # Counted as the dispatcher would have: sampled for the candidate, then dropped (the
        # drop-ratio alert divides one by the other).
        sampled_in = stack.proxy.metrics.registry.get_sample_value(
            "shadoweval_shadow_sampling_decisions_total", {"upstream": "cand-a", "decision": "in"}
        )
        assert sampled_in == 3
        # A new worker takes over (after a short back-off) and shadows flow again.
        await wait_for(
            lambda: worker.process.pid != first_pid and worker.process.ready,
            what="a replacement worker",
        )
        assert registry.get_sample_value("shadoweval_process_restarts_total", process) == 1
        await c.chat.completions.create(model="prod-model", messages=MESSAGES)
        text = await wait_for_pairs(stack.proxy.admin_url, 1, upstream="cand-a")
        assert sample(text, "shadoweval_pairs_total", upstream="cand-a") == 1
    # The first record was written by the first worker before it was killed, or lost with
    # it (a SIGKILL loses its buffer); the last is always there.
    contents = list(iter_jsonl([tmp_path / "pairs.jsonl"], Counter()))
    assert 1 <= len(contents) <= 2


async def test_a_dead_pairing_process_costs_records_only_and_is_replaced(tmp_path: Path) -> None:
    async with running_stack(overrides=overrides(tmp_path)) as stack:
        worker = stack.proxy.worker
        assert worker is not None and worker.process.pid is not None
        (first,) = children_of(worker.process.pid)
        c = client(stack.url)
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            text = await scrape(stack.proxy.admin_url)
            return sample(text, "shadoweval_process_restarts_total", process="shadow_pairing") == 1

        await wait_for(restarted, what="the worker to notice its dead pairing process")
        # Callers never notice; the answers the worker cannot hand over are counted.
        answer = await c.chat.completions.create(model="prod-model", messages=MESSAGES)
        assert answer.choices[0].message.content == "Echo: hello worker"

        async def counted() -> bool:
            text = await scrape(stack.proxy.admin_url)
            unrecorded = sample(text, "shadoweval_shadow_unrecorded_total", upstream="cand-a")
            return unrecorded + sample(text, "shadoweval_pairs_total", upstream="cand-a") == 1

        await wait_for(counted, what="the shadow to be recorded or counted unrecorded")
        # A new pairing process takes over (after a short back-off) and records flow again.
        await wait_for(
            lambda: children_of(worker.process.pid) not in ([], [first]),
            what="a replacement pairing process",
        )
        # A replacement is up before it is ready: until then shadows are counted unrecorded,
        # so a request is sent on every poll until one is recorded.
        before = sample(
            await scrape(stack.proxy.admin_url), "shadoweval_pairs_total", upstream="cand-a"
        )

        async def paired_again() -> bool:
            text = await scrape(stack.proxy.admin_url)
            if sample(text, "shadoweval_pairs_total", upstream="cand-a") > before:
                return True
            await c.chat.completions.create(model="prod-model", messages=MESSAGES)
            return False

        await wait_for(paired_again, what="records through the replacement pairing process")
    assert len(list(iter_jsonl([tmp_path / "pairs.jsonl"], Counter()))) >= 1


async def test_sampling_is_decided_once_and_only_mirrored_requests_cross(tmp_path: Path) -> None:
    """The proxy takes the global decision (the worker never draws again) and counts the
    requests it keeps; a keyed decision gives the same pairs as in one process."""
    sampling = {"rate": 0.5, "key": "header:x-user"}
    users = [f"user-{i}" for i in range(40)]
    expected = [u for u in users if Sampler(Sampling(**sampling)).mirrored(u.encode())]
    assert 5 < len(expected) < 35  # the check below means something
    async with running_stack(overrides={**overrides(tmp_path), "sampling": sampling}) as stack:
        c = client(stack.url)
        for user in users:
            await c.chat.completions.create(
                model="prod-model", messages=MESSAGES, extra_headers={"x-user": user}
            )
        text = await wait_for_pairs(stack.proxy.admin_url, len(expected))
        assert sample(text, "shadoweval_pairs_total") == len(expected)
        assert sample(text, "shadoweval_shadow_sampling_decisions_total", decision="in") == len(
            expected
        )
        out = sample(text, "shadoweval_shadow_sampling_decisions_total", decision="out")
        assert out == len(users) - len(expected)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sampling": {"send_shadows": "with_request"}}, "sampling.send_shadows"),
        ({"sink": {"kind": "memory"}}, "memory sink"),
    ],
)
def test_worker_config_errors_name_the_key(extra: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {
        "primary": {"name": "p", "url": "http://127.0.0.1:1"},
        "shadow_worker": {"enabled": True},
        "sink": {"kind": "file", "path": "pairs.jsonl"},
        **extra,
    }
    with pytest.raises(ConfigError) as err:
        parse(raw, environ={})
    assert "shadow_worker.enabled" in str(err.value) and message in str(err.value)


async def test_shadow_spans_come_from_the_worker_linked_to_the_request(tmp_path: Path) -> None:
    """The worker exports its shadow spans itself (OTLP/http, to a collector stand-in here);
    each links to the SERVER span the proxy process started, and the record's trace_id is
    that span's."""
    pytest.importorskip("opentelemetry.sdk")
    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported: list[Any] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                exported.extend(scope_spans.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    parent_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(parent_spans))
    tracing = {"enabled": True, "otlp_endpoint": f"http://127.0.0.1:{port}"}
    try:
        async with running_stack(
            overrides={**overrides(tmp_path), "tracing": tracing}, tracer_provider=provider
        ) as stack:
            await client(stack.url).chat.completions.create(model="prod-model", messages=MESSAGES)
            # Paired in the worker: its shadow span has ended, and stopping flushes both.
            await wait_for_pairs(stack.proxy.admin_url, 1)
        # Stopping the stack stopped the worker, which flushed its exporter.
        [server] = [s for s in parent_spans.get_finished_spans() if s.kind.name == "SERVER"]
        assert server.context is not None
        [shadow] = exported
        assert [link.trace_id for link in shadow.links] == [server.context.trace_id.to_bytes(16)]
        assert [link.span_id for link in shadow.links] == [server.context.span_id.to_bytes(8)]
        attrs = {a.key: a.value.string_value for a in shadow.attributes}
        assert attrs["shadoweval.upstream"] == "cand-a"
        [record] = list(iter_jsonl([tmp_path / "pairs.jsonl"], Counter()))
        assert record["trace_id"] == f"{server.context.trace_id:032x}"
    finally:
        await runner.cleanup()


async def test_random_sampling_is_not_applied_twice(tmp_path: Path) -> None:
    """Unkeyed, the proxy's draw decides alone: the worker drawing again would mirror about
    a quarter at rate 0.5 instead of half (bounds: +-4.2 standard deviations)."""
    sampling = {"rate": 0.5}
    n = 200
    async with running_stack(overrides={**overrides(tmp_path), "sampling": sampling}) as stack:
        async with aiohttp.ClientSession() as s:
            body = {"model": "prod-model", "messages": MESSAGES}
            for _ in range(n):
                async with s.post(f"{stack.url}/v1/chat/completions", json=body) as resp:
                    assert resp.status == 200
        text = ""

        async def settled() -> bool:
            nonlocal text
            text = await scrape(stack.proxy.admin_url)
            decided = sample(text, "shadoweval_shadow_sampling_decisions_total")
            mirrored = sample(text, "shadoweval_shadow_sampling_decisions_total", decision="in")
            # Decided when offered; paired once the candidate has answered.
            return decided >= n and sample(text, "shadoweval_pairs_total") >= mirrored

        await wait_for(settled, what="every request decided and every mirror paired")
        decided = sample(text, "shadoweval_shadow_sampling_decisions_total")
        assert decided == n  # every request decided once, in one process or the other
        pairs = sample(text, "shadoweval_pairs_total")
        assert 70 <= pairs <= 130, pairs


async def test_the_worker_leaves_idle_priority_to_shut_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under SCHED_IDLE a saturated machine starves the worker past the shutdown grace: the
    # proxy lifts it to the normal policy before telling it to close.
    lifted: list[tuple[int, int]] = []
    real = os.sched_setscheduler

    def record(pid: int, policy: int, param: os.sched_param) -> None:
        lifted.append((pid, policy))
        real(pid, policy, param)

    async with running_stack(overrides=overrides(tmp_path)) as stack:
        worker = stack.proxy.worker
        assert worker is not None and worker.process.pid is not None
        pid = worker.process.pid
        monkeypatch.setattr(os, "sched_setscheduler", record)
    assert (pid, os.SCHED_OTHER) in lifted
