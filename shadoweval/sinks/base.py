"""The sink interface: where pair records go once they leave the proxy."""

from __future__ import annotations

from typing import Protocol

from shadoweval.types import Json


class Sink(Protocol):
    """A destination for records.

    ``put`` never blocks and never raises: it buffers the record or, when the buffer is
    full, drops it, counts the drop and returns False. ``close`` flushes what it can within
    ``timeout`` seconds and counts the rest.
    """

    name: str

    async def start(self) -> None: ...

    def put(self, record: Json, key: bytes | None = None) -> bool: ...

    async def close(self, timeout: float) -> None: ...
