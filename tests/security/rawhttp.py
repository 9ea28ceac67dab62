"""Raw-socket HTTP/1.1 for tests that send what no client library would."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from yarl import URL


@dataclass
class Reply:
    data: bytes  # everything the server sent until it closed (or the timeout)
    closed: bool  # the server closed the connection
    # Pieces written when the reply ended: a cut before the last shows the server did not
    # wait for it (an ordering on the test's own loop, not a wall-clock window).
    sent: int

    @property
    def status(self) -> int | None:
        parts = self.data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def exchange(url: str, *pieces: bytes, gap_s: float = 0.0, timeout_s: float = 5.0) -> Reply:
    """Send ``pieces`` (``gap_s`` apart), then read until the server closes or ``timeout_s``."""
    u = URL(url)
    reader, writer = await asyncio.open_connection(u.host, u.port)
    data = b""
    closed = False
    sent = 0
    try:

        async def send() -> None:
            nonlocal sent
            for i, piece in enumerate(pieces):
                if i and gap_s:
                    await asyncio.sleep(gap_s)
                writer.write(piece)
                sent += 1
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(timeout_s):
                while chunk := await reader.read(65536):
                    data += chunk
                closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    finally:
        writer.close()
    return Reply(data, closed, sent)
