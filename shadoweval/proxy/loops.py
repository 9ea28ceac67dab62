"""Loop protection: a proxy whose primary or candidate is itself turns one caller request
into an endless stream of (billed) requests to itself.

Two guards. At start-up (``serve`` and ``check-config``) an upstream URL that resolves to
the proxy's own listen address is a ConfigError. At run time every request the proxy
sends carries ``x-shadoweval-hop: <id>``, and a request that arrives with this proxy's
own id is refused with 508 (``refused{loop}``, proxy/http.py), which also catches loops
through other hosts (a gateway, a DNS name, a second proxy in front).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Iterator

from yarl import URL

from shadoweval.config.proxy import Config, Listen

HOP_HEADER = b"x-shadoweval-hop"


def hop_id(listen: Listen) -> bytes:
    """This proxy's marker: the same in every process of one proxy (relays, the shadow
    worker, forked or spawned) without being passed around, different for every pod (the
    host name) and every proxy on one host (the port). Hashed: nothing about the host leaks
    to upstreams."""
    seed = f"{socket.gethostname()}:{listen.port}".encode()
    return hashlib.sha256(seed).hexdigest()[:16].encode()


def hop_header(listen: Listen) -> tuple[bytes, bytes]:
    return HOP_HEADER, hop_id(listen)


def _resolve(host: str, port: int) -> set[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()  # unresolvable now: the run-time marker still guards it
    return {str(info[4][0]) for info in infos}


def _is_local(address: str) -> bool:
    """True when this machine owns ``address`` (binding to it succeeds)."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _reaches(address: str, own: set[str], wildcard: bool) -> bool:
    """Whether connecting to ``address`` (on the listen port) reaches the proxy itself."""
    if address in own or ipaddress.ip_address(address).is_unspecified:  # 0.0.0.0 is here
        return True
    return wildcard and _is_local(address)


def _upstreams(cfg: Config) -> Iterator[tuple[str, str]]:
    yield "primary.url", cfg.primary.url
    for cand in cfg.candidates:
        yield f"candidates[{cand.name}].url", cand.url


def self_loops(cfg: Config) -> list[str]:
    """One message per upstream URL that points at the proxy's own listen address."""
    listen = cfg.listen
    if listen.port == 0:  # an ephemeral port cannot be named in a URL ahead of time
        return []
    own = _resolve(listen.host, listen.port)
    wildcard = any(ipaddress.ip_address(a).is_unspecified for a in own) or not own
    problems = []
    for key, url in _upstreams(cfg):
        parsed = URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if parsed.host is None or port != listen.port:
            continue
        addresses = _resolve(parsed.host, port)
        if any(_reaches(a, own, wildcard) for a in addresses):
            problems.append(
                f"{key}: {url} is this proxy's own listen address "
                f"({listen.host}:{listen.port}); every request would come back to it"
            )
    return problems
