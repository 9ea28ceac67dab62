"""campaign_state: the campaigns' counters saved to a file and restored by the next run,
so a restart does not start a day's spend, the request and pair caps or a duration anew."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from shadoweval.campaign import Campaign
from shadoweval.campaign_store import SCHEMA, CampaignStore
from shadoweval.config.proxy import Candidate

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def candidate(name: str = "c", **extra: Any) -> Candidate:
    return Candidate.model_validate({"name": name, "url": "http://127.0.0.1:1", **extra})


BUDGET: dict[str, Any] = {
    "budget": {"usd_per_day": 1.0, "max_requests": 10},
    "schedule": {"duration": "2h"},
}


def spend(c: Campaign, n: int, usd: float) -> None:
    for _ in range(n):
        assert c.begin() is None
        c.end(usd, paired=True)


def test_a_restart_continues_the_counters(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.json"
    first = Campaign(candidate(**BUDGET), clock=clock)
    spend(first, 4, 0.2)
    CampaignStore(str(path), lambda: [first], 10).save()
    clock.now += 3600  # the process comes back an hour later
    again = Campaign(candidate(**BUDGET), clock=clock)
    other = Campaign(candidate("new"), clock=clock)
    assert CampaignStore(str(path), lambda: [again, other], 10).restore() == ["c"]
    assert (again.requests, again.pairs, again.pairs_today) == (4, 4, 4)
    assert again.spend.spent == pytest.approx(0.8)
    # The duration counts from the first run's start, not from the restart.
    assert again.end_ts == first.end_ts == T0 + 7200
    spend(again, 1, 0.2)
    assert again.refusal() == "budget"  # 1.0 spent today: the cap holds across the restart
    clock.now = datetime(2026, 12, 8, 0, 30, tzinfo=UTC).timestamp()
    assert again.refusal() == "schedule"


def test_a_saved_day_that_is_over_rolls_over(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.json"
    first = Campaign(candidate(budget={"usd_per_day": 1.0}), clock=clock)
    spend(first, 5, 0.2)
    CampaignStore(str(path), lambda: [first], 10).save()
    clock.now += 86_400
    again = Campaign(candidate(budget={"usd_per_day": 1.0}), clock=clock)
    CampaignStore(str(path), lambda: [again], 10).restore()
    assert again.spend.spent == 0.0 and again.pairs_today == 0 and again.pairs == 5
    assert again.refusal() is None


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", orjson.dumps({"schema": "other", "candidates": {}})]
)
def test_an_unreadable_file_is_logged_and_the_counters_start_from_zero(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    c = Campaign(candidate(**BUDGET), clock=FakeClock())
    with caplog.at_level(logging.WARNING):
        assert CampaignStore(str(path), lambda: [c], 10).restore() == []
    assert "campaign_state.path" in caplog.text and c.requests == 0


def test_a_bad_entry_is_skipped_and_a_missing_file_is_a_first_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    c = Campaign(candidate(**BUDGET), clock=FakeClock())
    assert CampaignStore(str(path), lambda: [c], 10).restore() == []
    path.write_bytes(orjson.dumps({"schema": SCHEMA, "candidates": {"c": {"requests": "x"}}}))
    assert CampaignStore(str(path), lambda: [c], 10).restore() == []


def test_a_failed_save_is_logged_once_and_leaves_no_temporary_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = Campaign(candidate(**BUDGET), clock=FakeClock())
    blocker = tmp_path / "state"  # a file where the directory should be
    blocker.write_text("")
    store = CampaignStore(str(blocker / "campaigns.json"), lambda: [c], 10)
    with caplog.at_level(logging.WARNING):
        store.save()
        store.save()
    assert caplog.text.count("not saved") == 1
    blocker.unlink()  # the volume is back: the next save works, directories created
    store.save()
    assert orjson.loads((blocker / "campaigns.json").read_bytes())["schema"] == SCHEMA
    assert [p.name for p in blocker.iterdir()] == ["campaigns.json"]


def test_check_config_names_an_unwritable_state_path(tmp_path: Path) -> None:
    from shadoweval.config.proxy import parse

    blocker = tmp_path / "state"
    blocker.write_text("")
    raw = {"primary": {"url": "http://127.0.0.1:1"}}
    ok = parse({**raw, "campaign_state": {"path": str(tmp_path / "new" / "campaigns.json")}})
    assert ok.path_problems() == []  # created at start
    bad = parse({**raw, "campaign_state": {"path": str(blocker / "campaigns.json")}})
    (problem,) = bad.path_problems()
    assert problem.startswith("campaign_state.path:") and "not a directory" in problem


async def test_the_final_save_is_never_overtaken_by_an_older_one(tmp_path: Path) -> None:
    clock = FakeClock()
    c = Campaign(candidate(**BUDGET), clock=clock)
    path = tmp_path / "state.json"
    store = CampaignStore(str(path), lambda: [c], 10)
    old = store._snapshot()
    spend(c, 2, 0.1)
    await store.close()  # the newer snapshot is written...
    store._write(*old)  # ...and the older one, arriving late, is not
    assert orjson.loads(path.read_bytes())["candidates"]["c"]["requests"] == 2
