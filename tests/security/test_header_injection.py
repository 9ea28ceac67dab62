"""No header of ours can split a request: candidate headers, API keys from the environment
and a control's forwarded Authorization are validated before they are written, and
everything that passes encodes to exactly one header line (checked with an HTTP parser)."""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import parse
from shadoweval.headers import header_line
from shadoweval.proxy.candidate import CandidateClient
from shadoweval.proxy.upstream import UpstreamPool
from shadoweval.server import ProxyServer

BASE: dict[str, Any] = {"primary": {"url": "http://127.0.0.1:9"}}


def candidate(**extra: Any) -> dict[str, Any]:
    return {**BASE, "candidates": [{"name": "c", "url": "http://127.0.0.1:9", **extra}]}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "a\r\nX-Injected: 1"},
        {"X-A": "a\nX-Injected: 1"},
        {"X-A": "a\rb"},
        {"X-A": "a\x00b"},
        {"X-A": "a\x7fb"},
        {"X-A": "tab at the end\t"},
        {"X-A": "€ is not Latin-1"},
        {"X A": "space in the name"},
        {"X-A:": "colon in the name"},
        {"": "empty name"},
        {"Transfer-Encoding": "chunked"},
        {"Content-Length": "0"},
        {"Host": "elsewhere"},
        {"Connection": "close"},
        {"Authorization": "Bearer x"},
    ],
)
def test_candidate_headers_that_could_split_or_reframe_a_request_are_config_errors(
    headers: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match=r"candidates\.0\.headers"):
        parse(candidate(headers=headers), environ={})


def test_clean_candidate_headers_load() -> None:
    cfg = parse(candidate(headers={"X-Org": "acme", "X-Latin1": "café"}), environ={})
    assert cfg.candidates[0].headers["X-Latin1"] == "café"


async def test_an_api_key_with_a_line_break_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAND_KEY", "sk-abc\r\nX-Injected: 1")
    cfg = parse(candidate(api_key_env="CAND_KEY"), environ={})
    with pytest.raises(ConfigError, match=r"candidates\[c\]"):
        CandidateClient(cfg.candidates[0], 1024)
    server = ProxyServer(cfg)
    with pytest.raises(ConfigError):
        await server.start()
    assert server.proxy_url == ""  # nothing was bound
    await server.stop()


def test_a_forwarded_caller_authorization_is_rechecked() -> None:
    cfg = parse(
        {
            **BASE,
            "candidates": [
                {
                    "name": "ctl",
                    "url": "http://127.0.0.1:9",
                    "role": "control",
                    "forward_caller_auth": True,
                }
            ],
        },
        environ={},
    )
    client = CandidateClient(cfg.candidates[0], 1024)
    # What aiohttp hands over for the raw bytes b"Bearer caf\xc3\xa9 \xff" (surrogateescape).
    given_auth = b"Bearer caf\xc3\xa9 \xff".decode("utf-8", "surrogateescape")
    forwarded = client._raw_headers_for((("Authorization", given_auth),))
    assert (b"Authorization", b"Bearer caf\xc3\xa9 \xff") in forwarded
    # A value that could split the request is never written (the control goes without it).
    raw = client._raw_headers_for((("Authorization", "Bearer x\r\nX-Injected: 1"),))
    assert all(name != b"Authorization" for name, _ in raw)
    assert not any(b"\r" in v or b"\n" in v for _, v in raw)


def parsed_headers(request: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """(headers, messages) as a real HTTP/1.1 parser (llhttp) reads ``request``."""

    class Collect:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.messages = 0

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.messages += 1

    sink = Collect()
    httptools.HttpRequestParser(sink).feed_data(request)
    return sink.headers, sink.messages


header_text = st.text(st.characters(max_codepoint=0x17F), max_size=12)


@settings(max_examples=500, deadline=None)
@given(header_text, header_text)
def test_any_header_is_refused_or_written_as_exactly_one_line(name: str, value: str) -> None:
    try:
        line = header_line(name, value)
    except ValueError:
        return
    pool = UpstreamPool("http://upstream.invalid:80")
    request = pool.encode_request("POST", "/v1/chat/completions", [line], b"{}")
    try:
        headers, messages = parsed_headers(request)
    except httptools.HttpParserError as exc:  # pragma: no cover - a failure of the property
        raise AssertionError(f"{request!r} does not parse: {exc}") from None
    assert messages == 1
    assert headers == [(b"Host", b"upstream.invalid"), line, (b"Content-Length", b"2")]
