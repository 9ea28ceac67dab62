"""The channel between the proxy and its children, and a relay's frames passed on."""

from __future__ import annotations

from typing import Any

from shadoweval.config.proxy import parse
from shadoweval.metrics import Metrics
from shadoweval.proxy.children import OFFER, Channel, frame, unframe
from shadoweval.proxy.worker import ShadowWorker
from shadoweval.types import Capture
from tests.waiting import wait_for


async def test_frames_split_anywhere_come_out_whole_and_offers_unopened() -> None:
    messages: list[tuple[Any, ...]] = []
    offers: list[bytes] = []
    channel = Channel(messages.append, lambda: None, offers.append)
    offer = frame(("offer", ("chat", b"x" * 300)), OFFER)
    stream = frame(("metrics", 1)) + offer + frame(("ready",)) + offer
    for i in range(len(stream)):  # one byte at a time: the worst split
        channel.data_received(stream[i : i + 1])
    assert messages == [("metrics", 1), ("ready",)]
    assert offers == [offer, offer]
    assert unframe(offers[0]) == ("offer", ("chat", b"x" * 300))
    # Without an offer handler, offers are messages like any other.
    plain: list[tuple[Any, ...]] = []
    Channel(plain.append, lambda: None).data_received(stream)
    assert [m[0] for m in plain] == ["metrics", "offer", "ready", "offer"]


async def test_a_relays_offer_the_worker_cannot_take_is_counted_as_lost() -> None:
    cfg = parse(
        {
            "primary": {"url": "http://p"},
            "candidates": [{"name": "a", "url": "http://a"}, {"name": "b", "url": "http://b"}],
            "shadow_worker": {"enabled": True},
            "listen": {"processes": 2},
        }
    )
    m = Metrics()
    worker = ShadowWorker(cfg, m)  # never started: its channel is down
    capture = Capture(started=0.0)
    offer = ("chat", "/v1/chat/completions", [(b"host", b"h")], b"{}", capture, None)
    worker.forward(frame(("offer", offer), OFFER))
    for name in ("a", "b"):
        labels = {"upstream": name, "reason": "worker_unavailable"}
        assert m.registry.get_sample_value("shadoweval_shadow_dropped_total", labels) == 1
        labels = {"upstream": name, "decision": "in"}
        assert (
            m.registry.get_sample_value("shadoweval_shadow_sampling_decisions_total", labels) == 1
        )


async def test_a_lost_offer_is_counted_by_the_candidates_match_rules() -> None:
    cfg = parse(
        {
            "primary": {"url": "http://p"},
            "candidates": [
                {"name": "big", "url": "http://a", "match": {"models": ["gpt-4o"]}},
                {"name": "small", "url": "http://b", "match": {"models": ["gpt-4o-mini"]}},
            ],
            "shadow_worker": {"enabled": True},
            "listen": {"processes": 2},
        }
    )
    m = Metrics()
    worker = ShadowWorker(cfg, m)  # never started: its channel is down
    body = b'{"model": "gpt-4o", "messages": []}'
    offer = ("chat", "/v1/chat/completions", [(b"host", b"h")], body, Capture(started=0.0), None)
    worker.forward(frame(("offer", offer), OFFER))

    def value(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    decisions = "shadoweval_shadow_sampling_decisions_total"
    assert value(decisions, upstream="big", decision="in") == 1
    assert (
        value("shadoweval_shadow_dropped_total", upstream="big", reason="worker_unavailable") == 1
    )
    assert value(decisions, upstream="small", decision="unmatched") == 1
    assert value(decisions, upstream="small", decision="in") == 0


class _Written:
    """Stands in for a channel: what the child writes back to the proxy."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, ...]] = []
        self.transport = None

    def write(self, data: bytes) -> None:
        self.messages.append(unframe(data))


async def test_a_reload_is_applied_before_the_next_frame_and_answered() -> None:
    import asyncio

    from shadoweval.proxy.children import Parent

    parent = Parent()
    written = _Written()
    parent.channel = written  # type: ignore[assignment]
    parent.config.set_result({})
    seen: list[str] = []
    parent.on_offer = lambda message: seen.append(f"offer {message[1]}")

    def reload(config: dict[str, Any]) -> asyncio.Future[None]:
        seen.append(f"reload {config['v']}")  # the synchronous part
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if config["v"] == 1:
            done.set_result(None)
        else:
            done.set_exception(ValueError("bad"))
        return done

    parent.on_reload = reload
    parent._on_message(("reload", 7, {"v": 1}))
    parent._on_message(("offer", "after"))  # read next: the reload is already in force
    parent._on_message(("reload", 8, {"v": 2}))
    await wait_for(lambda: len(written.messages) == 2, what="both reloads answered")
    assert seen == ["reload 1", "offer after", "reload 2"]
    assert sorted(written.messages) == [("reloaded", 7, None), ("reloaded", 8, "ValueError: bad")]
