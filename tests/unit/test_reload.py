"""The reload registry, the file watcher (a ConfigMap-style symlink swap) and the outcomes,
driven by hand: ``poll`` is called directly, so nothing waits on a clock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from shadoweval.campaign import Campaign
from shadoweval.config import Config, load
from shadoweval.metrics import Metrics
from shadoweval.proxy.reload import (
    RELOADABLE,
    RESTART_ONLY,
    Reloader,
    restart_keys,
)

BASE: dict[str, Any] = {
    "listen": {"port": 8080},
    "admin": {"port": 9090},
    "primary": {"url": "http://127.0.0.1:1"},
    "candidates": [{"name": "a", "url": "http://127.0.0.1:2"}],
    "sink": {"kind": "memory"},
}


def test_every_top_level_key_is_reloadable_or_restart_only() -> None:
    fields = set(Config.model_fields)
    assert RELOADABLE | set(RESTART_ONLY) == fields
    assert not RELOADABLE & set(RESTART_ONLY)


def test_restart_keys_are_named_to_their_second_level() -> None:
    old = Config.model_validate(BASE)
    new = Config.model_validate({**BASE, "listen": {"port": 8081}, "log_level": "debug"})
    assert restart_keys(old, new) == ["listen.port", "log_level"]
    more = Config.model_validate({**BASE, "candidates": [], "sampling": {"rate": 0.5}})
    assert restart_keys(old, more) == []


class ConfigMap:
    """A directory shaped like a mounted ConfigMap: the file is a symlink through ``..data``
    to a timestamped directory, and an update swaps ``..data`` atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        self.path = root / "shadoweval.yaml"

    def write(self, raw: dict[str, Any] | str) -> None:
        self.version += 1
        version = self.root / f"..2026_12_04_{self.version}"
        version.mkdir()
        text = raw if isinstance(raw, str) else yaml.safe_dump(raw)
        (version / "shadoweval.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/shadoweval.yaml")


class Applied:
    def __init__(self) -> None:
        self.configs: list[Config] = []
        self.fail = False

    async def __call__(self, cfg: Config) -> None:
        if self.fail:
            raise RuntimeError("the worker said no")
        self.configs.append(cfg)


def outcomes(m: Metrics) -> dict[str, float]:
    value = m.registry.get_sample_value
    names = ("applied", "unchanged", "invalid", "refused", "failed")
    return {
        o: value("shadoweval_config_reloads_total", {"outcome": o}) or 0.0
        for o in names
        if value("shadoweval_config_reloads_total", {"outcome": o})
    }


def info(m: Metrics) -> list[str]:
    return [
        s.labels["hash"]
        for f in m.registry.collect()
        if f.name == "shadoweval_config_info"
        for s in f.samples
    ]


async def idle(_: float) -> None:
    raise AssertionError("the tests poll by hand")


@pytest.fixture
def watched(tmp_path: Path) -> tuple[ConfigMap, Reloader, Applied, Metrics]:
    cm = ConfigMap(tmp_path)
    cm.write(BASE)
    m = Metrics()
    applied = Applied()
    reloader = Reloader(cm.path, load(cm.path, {}), applied, m, environ={}, sleep=idle)
    return cm, reloader, applied, m


async def test_a_configmap_swap_is_seen_and_applied_once(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics],
) -> None:
    cm, reloader, applied, m = watched
    first = info(m)
    assert first == [reloader.current.digest()]
    assert await reloader.poll() is None  # nothing changed
    b = {"name": "b", "url": "http://127.0.0.1:3"}
    cm.write({**BASE, "candidates": [*BASE["candidates"], b]})
    assert await reloader.poll() == "applied"
    assert [c.name for c in applied.configs[0].candidates] == ["a", "b"]
    assert await reloader.poll() is None  # seen: not applied twice
    assert outcomes(m) == {"applied": 1}
    # The old hash's series is gone, the new one is the only one.
    assert info(m) == [applied.configs[0].digest()] != first


async def test_the_same_content_again_is_unchanged(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics],
) -> None:
    cm, reloader, applied, m = watched
    cm.write(BASE)  # a new directory, the same configuration
    assert await reloader.poll() == "unchanged"
    assert applied.configs == [] and outcomes(m) == {"unchanged": 1}


async def test_an_invalid_file_is_refused_with_the_start_up_error_and_tried_once(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    cm, reloader, applied, m = watched
    before = reloader.current
    cm.write({**BASE, "sampling": {"rate": 7}})
    assert await reloader.poll() == "invalid"
    assert await reloader.poll() is None  # not logged again every interval
    assert "sampling.rate: Input should be less than or equal to 1" in caplog.text
    assert "the configuration in force stays" in caplog.text
    cm.write("primary: [unclosed\n")
    assert await reloader.poll() == "invalid"
    assert "is not valid YAML" in caplog.text
    assert applied.configs == [] and reloader.current is before
    assert outcomes(m) == {"invalid": 2}
    assert info(m) == [before.digest()]


async def test_a_start_up_check_refuses_too(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    cm, reloader, applied, _ = watched
    cand = {"name": "k", "url": "http://127.0.0.1:3", "api_key_env": "SHADOWEVAL_TEST_UNSET_KEY"}
    cm.write({**BASE, "candidates": [cand]})
    assert await reloader.poll() == "invalid"
    assert "SHADOWEVAL_TEST_UNSET_KEY is not set" in caplog.text and not applied.configs


async def test_a_restart_only_key_is_refused_naming_it(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    cm, reloader, applied, m = watched
    cm.write({**BASE, "listen": {"port": 8081}, "shadow_worker": {"max_pending_bytes": 1 << 20}})
    assert await reloader.poll() == "refused"
    assert "listen.port, shadow_worker.max_pending_bytes only change with a restart" in (
        caplog.text
    )
    assert applied.configs == [] and outcomes(m) == {"refused": 1}


async def test_sighup_reloads_and_a_failure_to_apply_is_counted(
    watched: tuple[ConfigMap, Reloader, Applied, Metrics],
) -> None:
    cm, reloader, applied, m = watched
    cm.write({**BASE, "sampling": {"rate": 0.5}})
    applied.fail = True
    assert await reloader.reload("SIGHUP") == "failed"
    applied.fail = False
    assert await reloader.poll() is None  # the signal's reload read this version
    cm.write({**BASE, "sampling": {"rate": 0.25}})
    assert await reloader.reload("SIGHUP") == "applied"
    assert outcomes(m) == {"failed": 1, "applied": 1}


def test_metrics_have_every_outcome_at_zero() -> None:
    m = Metrics()
    for outcome in ("applied", "unchanged", "invalid", "refused", "failed"):
        labels = {"outcome": outcome}
        assert m.registry.get_sample_value("shadoweval_config_reloads_total", labels) == 0


def test_a_replaced_campaign_passes_its_drain_to_its_successor() -> None:
    cand = Config.model_validate(
        {**BASE, "candidates": [{**BASE["candidates"][0], "budget": {"max_pairs": 3}}]}
    ).candidates[0]
    old = Campaign(cand)
    assert old.begin() is None  # in flight when the reload comes
    new = Campaign(cand.model_copy(update={"sample_rate": 0.5}))
    new.adopt(old)
    old.end(0.0, paired=True)  # the old lane's answer lands on the new campaign
    assert new.pairs == 1 and new.requests == 1
    assert new.begin() is None and new.begin() is None
    assert new.begin() == "budget"  # 1 paired + 2 in flight: the cap holds across the reload


async def test_a_change_of_the_pricing_file_reloads(tmp_path: Path) -> None:
    """Not only the file itself: its ``pricing_file`` is watched too, so a price edit in
    its own ConfigMap key is applied."""
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text(yaml.safe_dump({"models": {"m": {"input_per_mtok": 1.0}}}))
    path = tmp_path / "shadoweval.yaml"
    path.write_text(yaml.safe_dump({**BASE, "pricing_file": "pricing.yaml"}))
    applied = Applied()
    reloader = Reloader(path, load(path, {}), applied, Metrics(), environ={}, sleep=idle)
    assert await reloader.poll() is None  # nothing changed
    pricing.write_text(yaml.safe_dump({"models": {"m": {"input_per_mtok": 2.0}}}))
    assert await reloader.poll() == "applied"
    assert applied.configs[-1].pricing.models["m"].input_per_mtok == 2.0
    assert await reloader.poll() is None
    pricing.unlink()  # gone (mid-swap, or removed): refused, the prices in force stay
    assert await reloader.poll() == "invalid"
    assert await reloader.poll() is None  # tried once per change
