"""config/shadoweval.yaml as shipped: `serve` and `probe` run on it without secrets, with only
the upstream URLs, ports and output paths moved by SHADOWEVAL_* overrides (the file itself
is read from the checkout, unchanged)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from shadoweval.testing import FakeUpstream
from tests.waiting import wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "shadoweval.yaml"


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    primary, cand = FakeUpstream(model="prod"), FakeUpstream(model="small-model")
    await primary.start()
    await cand.start()
    yield primary, cand
    await primary.stop()
    await cand.stop()


def shipped_env(primary: FakeUpstream, cand: FakeUpstream, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWEVAL_")}
    env.pop("CAND_A_API_KEY", None)  # as on a fresh machine: no secret set
    return env | {
        "PYTHONUNBUFFERED": "1",
        "SHADOWEVAL_LISTEN__PORT": "0",
        "SHADOWEVAL_ADMIN__PORT": "0",
        "SHADOWEVAL_PRIMARY__URL": primary.url,
        "SHADOWEVAL_CANDIDATES__0__URL": cand.url,
        "SHADOWEVAL_CANDIDATES__1__URL": primary.url,  # the control asks the primary again
        "SHADOWEVAL_SINK__PATH": str(tmp_path / "pairs.jsonl"),
        # The worker's SCHED_IDLE class starves on a machine busy with other work (by
        # design); the shipped file's behaviour is otherwise unchanged.
        "SHADOWEVAL_SHADOW_WORKER__SCHEDULING": "normal",
    }


def pairs(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_the_shipped_config_serves_without_secrets(
    upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path
) -> None:
    primary, cand = upstreams
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadoweval", "serve", "--config", str(SHIPPED),
        stderr=asyncio.subprocess.PIPE, env=shipped_env(primary, cand, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    log: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: any("proxy on " in line for line in log) or proc.returncode is not None,
            what="serve to start",
            state=lambda: log,
        )
        assert proc.returncode is None, "".join(log)
        [started] = [line for line in log if "proxy on " in line]
        url = started.split("proxy on ")[1].split(" ")[0]
        body = {"model": "prod", "messages": [{"role": "user", "content": "hello"}]}
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{url}/v1/chat/completions", json=body) as r,
        ):
            assert r.status == 200, await r.text()
        # Mirrored to both candidates through the shadow worker (the file's choice).
        out = tmp_path / "pairs.jsonl"
        await wait_for(lambda: len(pairs(out)) == 2, what="a pair per candidate", state=lambda: log)
        assert {p["candidate"]["upstream"] for p in pairs(out)} == {"cand-a", "control"}  # type: ignore[index]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, "".join(log)
        await reader


async def test_the_shipped_config_probes_without_secrets(
    upstreams: tuple[FakeUpstream, FakeUpstream], tmp_path: Path
) -> None:
    primary, cand = upstreams
    out = tmp_path / "probe-pairs.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadoweval", "probe", "--config", str(SHIPPED),
        "--category", "over_refusal", "--no-variants", "--quiet", "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=shipped_env(primary, cand, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, stderr.decode()
    assert pairs(out), "no probe records"
