"""How fast can any Python relay be on this machine? The floor under the saturation target.

    .venv/bin/python benchmarks/floor.py

Measures, in one run and on the same core as run.py's system under test:

- the CPU one loopback ``send()`` of a small packet costs (the kernel delivers it to the
  receiving socket in the sender's time), which every proxy pays at least twice per
  request;
- wrk against nginx as a plain proxy, against a bare relay (an asyncio protocol on
  uvloop, llhttp parsing, the project's upstream pool: no limits, no metrics, no capture,
  no records, nothing a sidecar needs) and against shadoweval without candidates.

The bare relay is the ceiling of the approach: whatever shadoweval adds must fit between
it and nginx. Results: results/floor.json and results/floor.md.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness as h

RESULTS = Path(__file__).parent / "results"

BARE_RELAY = r"""
import asyncio, sys
import httptools, uvloop
from shadoweval.proxy.forward import raw_end_to_end
from shadoweval.proxy.upstream import UpstreamPool


class Relay(asyncio.Protocol):
    def __init__(self, pool):
        self.pool, self.parser = pool, httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.headers, self.body = [], []

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        method = self.parser.get_method().decode()
        args = (method, self.url.decode(), self.headers, b"".join(self.body))
        asyncio.get_running_loop().create_task(self.relay(*args))

    async def relay(self, method, target, headers, body):
        up = await self.pool.request(method, target, raw_end_to_end(headers), body, timeout_s=30)
        data = await up.read()
        out = [b"HTTP/1.1 %d OK\r\n" % up.status]
        for k, v in raw_end_to_end(up.raw_headers):
            out += [k, b": ", v, b"\r\n"]
        up.release()
        out.append(b"content-length: %d\r\n\r\n" % len(data))
        self.transport.write(b"".join(out) + data)


async def main():
    pool = UpstreamPool(sys.argv[1], limit=256, connect_timeout_s=5)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Relay(pool), "127.0.0.1", int(sys.argv[2]), backlog=4096)
    await asyncio.Event().wait()


uvloop.run(main())
"""


def send_cost_us(n: int = 50_000) -> float:
    """CPU time of one 100-byte loopback send (TCP_NODELAY), the reader in another process."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    client = socket.create_connection(srv.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn, _ = srv.accept()
    pid = os.fork()
    if pid == 0:  # the reader
        got = 0
        while got < n * 100:
            got += len(conn.recv(65536))
        os._exit(0)
    os.sched_setaffinity(0, {int(h.SUT_CORE)})
    msg = b"x" * 100
    started = time.process_time()
    for _ in range(n):
        client.send(msg)
        time.sleep(0)  # one send per wake-up, as a proxy does
    cost = (time.process_time() - started) / n * 1e6
    os.waitpid(pid, 0)
    return cost


def main() -> int:
    repeat, duration = 3, 6
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "load_average_at_start": os.getloadavg()[0]}  # fmt: skip
    res["loopback_send_cpu_us"] = send_cost_us()
    rps: dict[str, list[float]] = {"nginx": [], "bare_relay": [], "shadoweval": []}
    with h.nginx_upstreams(1) as (p,):
        upstream = f"http://127.0.0.1:{p}"
        target = "/v1/chat/completions"
        with h.nginx_proxy(p, []) as nginx:
            rps["nginx"] = [
                h.wrk(f"http://127.0.0.1:{nginx}{target}", duration) for _ in range(repeat)
            ]
        script = Path(RESULTS / "bare_relay.tmp.py")
        script.write_text(BARE_RELAY)
        try:
            port = h.free_port()
            argv = h.pinned(h.SUT_CORE, [h.PYTHON, str(script), upstream, str(port)])
            with h.process(argv, "bare-relay", port):
                h.wrk(f"http://127.0.0.1:{port}{target}", 2)
                rps["bare_relay"] = [
                    h.wrk(f"http://127.0.0.1:{port}{target}", duration) for _ in range(repeat)
                ]
        finally:
            script.unlink(missing_ok=True)
        with h.shadoweval_proxy(upstream, []) as (sp, _, _proc):
            h.wrk(f"http://127.0.0.1:{sp}{target}", 2)
            rps["shadoweval"] = [
                h.wrk(f"http://127.0.0.1:{sp}{target}", duration) for _ in range(repeat)
            ]
    res["rps"] = rps
    med = {k: statistics.median(v) for k, v in rps.items()}
    res["median_rps"] = med
    res["bare_relay_vs_nginx"] = med["bare_relay"] / med["nginx"]
    res["shadoweval_vs_nginx"] = med["shadoweval"] / med["nginx"]
    res["shadoweval_vs_bare_relay"] = med["shadoweval"] / med["bare_relay"]
    md = (
        f"Run {res['started']}, one core each (load average {res['load_average_at_start']:.2f}).\n\n"
        f"- one loopback `send()` of 100 bytes: {res['loopback_send_cpu_us']:.1f} µs of CPU\n\n"
        "| system under test | req/s (median of 3) | vs nginx |\n|---|---|---|\n"
        + "".join(f"| {k} | {med[k]:,.0f} | {med[k] / med['nginx']:.2f}x |\n" for k in rps)
    )
    h.write_results(RESULTS / "floor", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
