"""The admin port's optional bearer token: /healthz and /readyz stay open for kubelet probes,
everything else needs the token (compared in constant time); a token named by token_env that
is missing stops the start instead of leaving /metrics open."""

from __future__ import annotations

import hmac
from typing import Any

import aiohttp
import pytest

from shadoweval import admin
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import parse
from shadoweval.server import ProxyServer
from shadoweval.testing import running_stack

TOKEN = "admin-token-0123456789abcdef"


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.text()


async def test_without_a_token_the_admin_port_is_open() -> None:
    async with running_stack() as stack:
        assert (await get(stack.proxy.admin_url + "/metrics"))[0] == 200


@pytest.mark.parametrize("source", ["token", "token_env"])
async def test_with_a_token_only_the_probes_are_open(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    setting = {"token": TOKEN} if source == "token" else {"token_env": "ADMIN_TOKEN"}
    async with running_stack(overrides={"admin": setting}) as stack:
        base = stack.proxy.admin_url
        assert (await get(base + "/healthz"))[0] == 200
        assert (await get(base + "/readyz"))[0] == 200
        for path in ("/metrics", "/nope", "/metrics/"):
            for token in (None, "", "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
                status, body = await get(base + path, token)
                assert status == 401, (path, token)
                assert "shadoweval_" not in body
        status, body = await get(base + "/metrics", TOKEN)
        assert status == 200 and "shadoweval_ready 1.0" in body


async def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", spy)
    async with running_stack(overrides={"admin": {"token": TOKEN}}) as stack:
        await get(stack.proxy.admin_url + "/metrics", "guess")
    assert calls == [(b"Bearer guess", f"Bearer {TOKEN}".encode())]


@pytest.mark.parametrize("value", [None, "", "too-short"])
async def test_a_missing_or_weak_token_env_stops_the_start(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ADMIN_TOKEN", value)
    cfg = parse(
        {
            "listen": {"port": 0},
            "admin": {"port": 0, "token_env": "ADMIN_TOKEN"},
            "primary": {"url": "http://127.0.0.1:9"},
            "sink": {"kind": "memory"},
        },
        environ={},
    )
    server = ProxyServer(cfg)
    with pytest.raises(ConfigError, match=r"admin\.token_env: \$ADMIN_TOKEN is unset or shorter"):
        await server.start()
    assert server.admin_url == "" and server.proxy_url == ""
    await server.stop()


def test_token_settings_are_checked_without_echoing_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"primary": {"url": "http://a"}, "admin": {"token": "weak-secret"}}, environ={})
    assert "at least 16" in str(err.value) and "weak-secret" not in str(err.value)
    with pytest.raises(ConfigError, match="either token or token_env"):
        parse(
            {"primary": {"url": "http://a"}, "admin": {"token": TOKEN, "token_env": "X"}},
            environ={},
        )
    cfg = parse({"primary": {"url": "http://a"}, "admin": {"token": TOKEN}}, environ={})
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.admin)
