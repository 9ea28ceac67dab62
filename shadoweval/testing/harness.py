"""Start a fake primary, fake candidates and the proxy together (tests and the demo)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shadoweval.config.proxy import Config, parse
from shadoweval.metrics import Metrics
from shadoweval.server import ProxyServer
from shadoweval.sinks import MemorySink
from shadoweval.testing.fake_upstream import FakeUpstream

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


@dataclass
class Stack:
    proxy: ProxyServer
    primary: FakeUpstream
    candidates: dict[str, FakeUpstream] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.proxy.proxy_url

    @property
    def memory(self) -> MemorySink:
        assert isinstance(self.proxy.sink, MemorySink)
        return self.proxy.sink


@contextlib.asynccontextmanager
async def running_stack(
    primary: FakeUpstream | None = None,
    candidates: dict[str, FakeUpstream] | None = None,
    overrides: dict[str, Any] | None = None,
    candidate_options: dict[str, dict[str, Any]] | None = None,
    metrics: Metrics | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Stack]:
    """Fakes on free ports, a proxy in front of them; memory sink unless overridden.

    ``overrides`` are merged section by section into the config; ``candidate_options`` into each
    candidate's entry by name (``url_query``: a query string for its URL). Everything is
    stopped (gracefully) on exit.
    """
    primary = primary or FakeUpstream(model="prod-model")
    candidates = (
        candidates if candidates is not None else {"cand-a": FakeUpstream(model="cand-model")}
    )
    started: list[FakeUpstream] = []
    try:
        await primary.start()
        started.append(primary)
        for fake in candidates.values():
            await fake.start()
            started.append(fake)
        raw: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "primary": {"name": "prod", "url": primary.url},
            "candidates": [
                _candidate(name, fake.url, (candidate_options or {}).get(name, {}))
                for name, fake in candidates.items()
            ],
            "sink": {"kind": "memory"},
            "shutdown": {"grace_s": 5, "shadow_grace_s": 2},
        }
        for key, value in (overrides or {}).items():
            # Sections merge (so {"primary": {"retry": ...}} keeps the fake's URL).
            current = raw.get(key)
            if isinstance(value, dict) and isinstance(current, dict):
                raw[key] = {**current, **value}
            else:
                raw[key] = value
        cfg: Config = parse(raw, environ={})
        proxy = ProxyServer(cfg, metrics=metrics, tracer_provider=tracer_provider)
        await proxy.start()
        stack = Stack(proxy, primary, candidates)
        try:
            yield stack
        finally:
            await proxy.stop()
    finally:
        for fake in started:
            await fake.stop()


def _candidate(name: str, url: str, options: dict[str, Any]) -> dict[str, Any]:
    entry = {"name": name, "url": url, **options}
    if query := entry.pop("url_query", None):
        entry["url"] = f"{url}?{query}"
    return entry
