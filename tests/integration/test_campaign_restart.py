"""campaign_state with real processes: a proxy stopped and started again on the same state
file keeps counting its candidate's budget where it left off, in one process and with the
shadow worker (where the budgets live)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from shadoweval.testing import FakeUpstream, running_stack

from .test_campaigns import MODES, TOKEN, TOKEN_ENV, base, scrape_with_token, settled
from .test_shadow_worker import sample

MESSAGES: Any = [{"role": "user", "content": "hello again"}]


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@MODES
async def test_a_restart_keeps_the_budget_spent(tmp_path: Path, worker: bool) -> None:
    state = tmp_path / "campaigns.json"
    overrides = base(tmp_path, worker) | {"campaign_state": {"path": str(state)}}
    options = {"capped": {"concurrency": 1, "budget": {"max_requests": 5}}}
    sent = []
    for run, n in enumerate((3, 4)):  # 3 shadows, a restart, then only 2 more are allowed
        fake = FakeUpstream(model="capped-model")
        async with running_stack(
            candidates={"capped": fake}, overrides=overrides, candidate_options=options
        ) as stack:
            c = openai.AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="sk-test", max_retries=0)
            for _ in range(n):
                await c.chat.completions.create(model="prod", messages=MESSAGES)
            text = await settled(stack.proxy.admin_url, n, "capped")
            if run == 1:
                assert sample(text, "shadoweval_shadow_dropped_total", reason="budget") == 2
                text = await scrape_with_token(stack.proxy.admin_url)
                assert sample(text, "shadoweval_candidate_budget_remaining_requests") == 0
        sent.append(len(fake.received))
        saved = orjson.loads(state.read_bytes())["candidates"]["capped"]
        assert saved["requests"] == sum(sent)
    assert sent == [3, 2]
