"""Header validation for every header shadoweval itself writes to an upstream.

The caller's own headers are checked by the HTTP parser before the proxy sees them; headers
that come from configuration or the environment (candidate headers, API keys) are checked
here, so a line break or control character can never split a request we send.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2 token: the only characters a field name may have.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9110 §5.5 field value: visible ASCII, space, tab and obs-text (0x80-0xFF); no CR, LF,
# NUL or other control characters, no leading or trailing whitespace.
_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")

# Framing and connection headers: the proxy computes these itself for every request it
# sends. A configured one could contradict them (a second Content-Length, a
# Transfer-Encoding) and desynchronise the upstream's parser.
RESERVED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)


# Credentials: never copied into a record (``record.headers`` refuses them).
CREDENTIALS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"}
)


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent as one header line, or None when it can."""
    if not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not an RFC 9110 token"
    if not _VALUE.fullmatch(value):
        return (
            f"header {name!r} has a line break, a control character, leading or trailing "
            "whitespace, or a character outside Latin-1"
        )
    return None


def header_line(name: str, value: str) -> tuple[bytes, bytes]:
    """The raw bytes of one validated header; raises ValueError when it is not safe."""
    problem = header_problem(name, value)
    if problem is not None:
        raise ValueError(problem)
    return name.encode("ascii"), value.encode("latin-1")
