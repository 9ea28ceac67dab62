"""A caller that reads slowly holds the primary back: the proxy buffers a bounded amount
of a large answer, not all of it, and the caller still gets every byte."""

from __future__ import annotations

import asyncio
import socket

import orjson

from shadoweval.testing import FakeUpstream, running_stack

TEXT = "0123456789abcdef" * (1 << 19)  # 8 MiB of answer text
REQUEST = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "big"}]})


def head_and_body(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


async def test_a_slow_caller_pauses_the_primary_and_gets_every_byte() -> None:
    primary = FakeUpstream(model="prod-model", style="fixed", text=TEXT)
    async with running_stack(primary=primary, candidates={}) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(
            sock,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(REQUEST), REQUEST),
        )
        # The caller reads nothing: the relay stops reading the primary, and holds far
        # less than the answer.
        pool = stack.proxy._pools["prod"]
        for _ in range(100):
            await asyncio.sleep(0.05)
            if pool._all and not all(c.transport and c.transport.is_reading() for c in pool._all):
                break
        [upstream] = pool._all
        assert upstream.transport is not None and not upstream.transport.is_reading()
        await asyncio.sleep(0.3)  # nothing more arrives once paused
        [caller] = stack.proxy._http.connections  # type: ignore[union-attr]
        assert caller.transport is not None
        held = caller.transport.get_write_buffer_size()
        assert held < 2 * 1024 * 1024, held

        raw = bytearray()
        while True:
            data = await loop.sock_recv(sock, 1 << 16)
            if not data:
                break
            raw += data
            head, body = head_and_body(bytes(raw))
            if b"\r\n\r\n" in raw and b"content-length" in head.lower():
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
        sock.close()
        head, body = head_and_body(bytes(raw))
        assert head.startswith(b"HTTP/1.1 200")
        answer = orjson.loads(body)
        assert answer["choices"][0]["message"]["content"] == TEXT
        # The connection went back to the pool reading again, and serves the next call.
        assert upstream.transport.is_reading()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(REQUEST), REQUEST)
        )
        again = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert again.startswith(b"HTTP/1.1 200")
        assert len(stack.proxy._pools["prod"]._all) == 1  # the same connection, reused
