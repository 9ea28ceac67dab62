"""TLS to the upstreams: verification is on by default; a private CA is trusted through
``tls.ca_file``; mutual TLS through ``tls.client_cert``/``client_key``. The fakes serve HTTPS
on 127.0.0.1 with certificates made for each test run (tests/security/certs.py)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import parse
from shadoweval.server import ProxyServer
from shadoweval.testing import FakeUpstream, running_stack
from tests.security.certs import Pki, make_pki

BODY = {"model": "m", "messages": [{"role": "user", "content": "over TLS"}]}


class TlsFake(FakeUpstream):
    """A FakeUpstream that serves HTTPS with the given context."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        return await super().start(host, port, ssl_context or self.context)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def post(url: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/chat/completions", json=BODY) as r:
        return r.status, await r.json(), dict(r.headers)


async def test_primary_over_tls_is_verified_against_the_configured_ca(pki: Pki) -> None:
    primary = TlsFake(pki.server_context(), model="p")
    tls = {"primary": {"tls": {"ca_file": str(pki.ca)}}}
    async with running_stack(primary=primary, overrides=tls) as stack:
        status, body, _ = await post(stack.url)
        assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: over TLS"
        assert stack.primary.url.startswith("https://")


async def test_without_the_ca_verification_fails_and_the_caller_gets_a_clear_502(pki: Pki) -> None:
    primary = TlsFake(pki.server_context(), model="p")
    async with running_stack(primary=primary) as stack:  # verify on, system CAs only
        status, body, headers = await post(stack.url)
        assert status == 502 and headers["x-shadoweval-error"] == "primary_connect"
        assert "CERTIFICATE_VERIFY_FAILED" in body["error"]["message"]
        assert stack.primary.received == []


async def test_a_certificate_for_another_host_fails_even_from_the_right_ca(pki: Pki) -> None:
    primary = TlsFake(pki.server_context(other_host=True), model="p")
    tls = {"primary": {"tls": {"ca_file": str(pki.ca)}}}
    async with running_stack(primary=primary, overrides=tls) as stack:
        status, body, _ = await post(stack.url)
        assert status == 502 and "IP address mismatch" in body["error"]["message"]


async def test_verify_false_accepts_any_certificate_and_says_so(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    primary = TlsFake(pki.server_context(other_host=True), model="p")
    async with running_stack(
        primary=primary, overrides={"primary": {"tls": {"verify": False}}}
    ) as stack:
        assert (await post(stack.url))[0] == 200
    assert "primary.tls.verify is false" in caplog.text


async def test_candidates_use_their_own_tls_settings(pki: Pki) -> None:
    cands = {
        "good": TlsFake(pki.server_context(), model="g"),
        "untrusted": TlsFake(pki.server_context(), model="u"),
    }
    opts = {"good": {"tls": {"ca_file": str(pki.ca)}}, "untrusted": {"retry": {"max_attempts": 1}}}
    async with running_stack(candidates=cands, candidate_options=opts) as stack:
        assert (await post(stack.url))[0] == 200
        records = {
            r["candidate"]["upstream"]: r["candidate"] for r in await stack.memory.wait_for(2)
        }
        assert (
            records["good"]["error_type"] is None
            and records["good"]["output_text"] == "Echo: over TLS"
        )
        assert records["untrusted"]["error_type"] == "connect"
        assert "CERTIFICATE_VERIFY_FAILED" in records["untrusted"]["error"]
        errors = stack.proxy.metrics.registry.get_sample_value(
            "shadoweval_upstream_errors_total",
            {"role": "candidate", "upstream": "untrusted", "error_type": "connect"},
        )
        assert errors == 1


async def test_mutual_tls_needs_the_client_certificate(pki: Pki) -> None:
    ca = {"ca_file": str(pki.ca)}
    mtls = {**ca, "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    for tls, expected in ((ca, 502), (mtls, 200)):
        primary = TlsFake(pki.server_context(require_client_cert=True), model="p")
        async with running_stack(primary=primary, overrides={"primary": {"tls": tls}}) as stack:
            assert (await post(stack.url))[0] == expected, tls


async def test_unreadable_certificates_stop_the_start_naming_the_key(tmp_path: Path) -> None:
    cfg = parse(
        {
            "listen": {"port": 0},
            "admin": {"port": 0},
            "primary": {
                "url": "https://127.0.0.1:9",
                "tls": {"ca_file": str(tmp_path / "missing.pem")},
            },
            "sink": {"kind": "memory"},
        },
        environ={},
    )
    server = ProxyServer(cfg)
    with pytest.raises(ConfigError, match=r"primary\.tls: cannot load certificates"):
        await server.start()
    assert server.proxy_url == ""
    await server.stop()


def test_tls_settings_on_a_plain_http_url_are_refused() -> None:
    with pytest.raises(ConfigError, match="tls is set but url is not https"):
        parse({"primary": {"url": "http://127.0.0.1:9", "tls": {"ca_file": "ca.pem"}}}, environ={})
    with pytest.raises(ConfigError, match="client_key needs client_cert"):
        parse({"primary": {"url": "https://x", "tls": {"client_key": "k.pem"}}}, environ={})
