"""``record.headers``: the request headers a pair record keeps (redacted, cut, never
credentials), read by ``report --by header:NAME`` and by ``plan``'s ``match.headers``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from shadoweval.config import ConfigError, parse
from shadoweval.config.proxy import RECORD_HEADER_MAX_CHARS, Pricing
from shadoweval.config.report import Report
from shadoweval.pricing import PriceTable
from shadoweval.report.aggregate import build_report
from shadoweval.report.load import load
from shadoweval.testing import running_stack
from tests.waiting import wait_for


async def ask(url: str, headers: dict[str, str]) -> None:
    c = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="caller-secret", max_retries=0, default_headers=headers
    )
    await c.chat.completions.create(
        model="prod-model", messages=[{"role": "user", "content": "hi"}]
    )


@pytest.mark.parametrize("worker", [False, True], ids=["one-process", "shadow-worker"])
async def test_named_headers_are_recorded_redacted_and_cut(
    validate_pair: Any, worker: bool, tmp_path: Path
) -> None:
    overrides: dict[str, Any] = {"record": {"headers": ["X-Tenant", "x-team", "x-note"]}}
    if worker:  # the record is built in the worker's pairing process
        overrides |= {
            "shadow_worker": {"enabled": True, "scheduling": "normal"},
            "sink": {"kind": "file", "path": str(tmp_path / "pairs.jsonl")},
        }
    async with running_stack(overrides=overrides) as stack:
        long = "n" * (RECORD_HEADER_MAX_CHARS + 50)
        await ask(stack.url, {"X-Tenant": "acme", "X-Other": "kept out", "x-team": "ops"})
        await ask(stack.url, {"X-Tenant": "globex", "x-note": long})
        await ask(stack.url, {"X-Tenant": "mail jane.doe@example.com"})
        records = await (
            written(tmp_path / "pairs.jsonl", 3) if worker else stack.memory.wait_for(3)
        )
    for rec in records:
        validate_pair(rec)
    by_tenant = {r["headers"]["x-tenant"]: r["headers"] for r in records}
    assert by_tenant["acme"] == {"x-tenant": "acme", "x-team": "ops"}
    assert by_tenant["globex"]["x-note"] == "n" * RECORD_HEADER_MAX_CHARS
    assert "mail [REDACTED:email]" in by_tenant
    assert not any("authorization" in h or "x-other" in h for h in by_tenant.values())


async def written(path: Path, n: int) -> list[Any]:
    """The first n records of a file sink, once it has flushed them."""

    def lines() -> list[bytes]:
        return path.read_bytes().splitlines() if path.exists() else []

    await wait_for(lambda: len(lines()) >= n, what=f"{n} records in {path.name}")
    return [orjson.loads(line) for line in lines()[:n]]


async def test_no_headers_are_recorded_unless_named() -> None:
    async with running_stack() as stack:
        await ask(stack.url, {"X-Tenant": "acme"})
        (rec,) = await stack.memory.wait_for(1)
    assert "headers" not in rec


@pytest.mark.parametrize("name", ["Authorization", "api-key", "x-api-key", "Cookie"])
def test_credentials_are_refused_naming_the_key(name: str) -> None:
    raw = {"primary": {"url": "http://127.0.0.1:1"}, "record": {"headers": [name]}}
    with pytest.raises(ConfigError, match=r"record\.headers.*credential"):
        parse(raw)


def test_the_report_segments_by_a_recorded_header(tmp_path: Path) -> None:
    from shadoweval.testing.synthetic import Upstream, generate

    pairs, scores = generate(Upstream("prod", role="primary"), [Upstream("cand")], 240)
    for i, rec in enumerate(pairs):
        rec["headers"] = {"x-tenant": "acme" if i % 3 else "globex"}
    p, s = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    s.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scores))
    rules = Report().model_copy(
        update={"rules": Report().rules.model_copy(update={"min_pairs": 50})}
    )
    report = build_report(load([p], [s]), rules, PriceTable(Pricing()), by=("header:x-tenant",))
    segments = report["candidates"][0]["segments"]["header:x-tenant"]
    assert {r["segment"]: r["pairs"] for r in segments} == {"acme": 160, "globex": 80}
