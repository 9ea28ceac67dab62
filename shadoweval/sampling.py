"""Which requests are mirrored: a global rate, per-candidate rates, an optional stable key,
and a cap in shadow requests per second."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping

from shadoweval.config.proxy import Sampling

_SCALE = float(1 << 64)


def _unit(data: bytes) -> float:
    """A uniform number in [0, 1) derived from ``data``: stable across processes and hosts."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class TokenBucket:
    """``rate`` tokens per second, bursts up to ``rate`` (one second's worth)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Sampler:
    def __init__(self, cfg: Sampling, rng: random.Random | None = None) -> None:
        self.cfg = cfg  # a reload keeps this sampler (its token bucket) while it is equal
        self._rate = cfg.rate
        self._salt = cfg.salt.encode()
        self._header = (
            cfg.key.removeprefix("header:").lower() if cfg.key and cfg.key != "body" else None
        )
        self._by_body = cfg.key == "body"
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(cfg.max_per_second) if cfg.max_per_second else None

    @property
    def keyed(self) -> bool:
        """Whether decisions depend on the request (callers may skip building its headers)."""
        return self._by_body or self._header is not None

    def key(self, headers: Mapping[str, str], body: bytes) -> bytes | None:
        """The stable sampling key of a request, or None when sampling is random."""
        if self._by_body:
            return hashlib.blake2b(body, digest_size=16).digest()
        if self._header is not None:
            value = headers.get(self._header)
            # surrogateescape: aiohttp decodes header bytes that way, so invalid UTF-8 from
            # a caller maps back to its bytes instead of raising on the hot path.
            return value.encode("utf-8", "surrogateescape") if value is not None else None
        return None

    def draw(self, key: bytes | None, salt: bytes = b"") -> float:
        if key is None:
            return self._rng.random()
        return _unit(self._salt + salt + b"\x00" + key)

    def mirrored(self, key: bytes | None) -> bool:
        """The global decision: is this request mirrored at all?"""
        return self._rate > 0 and (self._rate >= 1.0 or self.draw(key) < self._rate)

    def candidate_in(self, key: bytes | None, name: str, rate: float) -> bool:
        # Salted with the candidate name so per-candidate subsets are independent.
        return rate > 0 and (rate >= 1.0 or self.draw(key, name.encode()) < rate)

    def take_budget(self) -> bool:
        return self._bucket is None or self._bucket.take()
