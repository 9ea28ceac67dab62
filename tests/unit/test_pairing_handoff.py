"""The shadow worker's hand-off to its idle child: bounded, and every answer it cannot hand
over is counted (``shadoweval_shadow_unrecorded_total``), never buffered."""

from __future__ import annotations

from shadoweval.config.proxy import parse
from shadoweval.metrics import Metrics
from shadoweval.proxy.pairing_child import PairingHandoff
from shadoweval.proxy.shadow import ShadowJob
from shadoweval.records import RequestInfo
from shadoweval.types import Capture


async def test_an_answer_the_idle_child_cannot_take_is_counted_unrecorded() -> None:
    cfg = parse(
        {
            "primary": {"name": "prod", "url": "http://127.0.0.1:1"},
            "candidates": [{"name": "cand", "url": "http://127.0.0.1:2"}],
            "shadow_worker": {"enabled": True},
            "sink": {"kind": "file", "path": "unused.jsonl"},
        },
        environ={},
    )
    m = Metrics()
    handoff = PairingHandoff(cfg, m, forked=None)  # never started: as while it restarts
    info = RequestInfo("r1", 0.0, "chat", "/v1/chat/completions", None, None)
    job = ShadowJob(info, "chat", b"{}", ())
    job.primary_done(Capture(started=0.0))
    handoff.send(cfg.candidates[0], job, {}, Capture(started=0.0), 0.0, False)
    assert (
        m.registry.get_sample_value("shadoweval_shadow_unrecorded_total", {"upstream": "cand"}) == 1
    )
