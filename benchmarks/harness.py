"""Process plumbing for the benchmarks: nginx upstreams and mirrors, the shadoweval proxy,
fake upstreams, load generators, core pinning, RSS."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "bin"
PYTHON = sys.executable

# A realistic non-streaming chat completion (about 600 bytes).
CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "prod-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The capital of France is Paris. It has been the capital since "
                    "the 10th century and is known for the Eiffel Tower, the Louvre and "
                    "its cafés. Anything else you would like to know?",
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 41, "total_tokens": 65},
    }
)
REQUEST_BODY = json.dumps(
    {
        "model": "prod-model",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer briefly."},
        ],
        "temperature": 0.2,
    }
)

# Cores: the system under test (proxy) gets one, upstreams and load generators the other.
SUT_CORE = "0"
LOAD_CORE = "1" if (os.cpu_count() or 1) > 1 else "0"


def _many_files() -> None:
    """10,000 requests in flight need 20,000+ sockets in the proxy: raise its limit as far
    as this machine allows (root may lift the hard limit too)."""
    import resource

    for limit in (1 << 17, 1 << 16):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            continue


def write_results(out: Path, data: Any, md: str, *, sort_keys: bool = False) -> None:
    """``out``.json and ``out``.md (the table the docs quote), and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, default=str, sort_keys=sort_keys) + "\n"
    out.with_suffix(".json").write_text(text)
    out.with_suffix(".md").write_text(md)
    print(md)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


def rss_bytes(pid: int, field: str = "Rss") -> int:
    """Resident memory of a process and its children (the shadow worker, when enabled).
    ``field="Pss"``: each shared page divided among the processes sharing it, so a worker
    forked from the proxy is not counted twice (closest to what a pod's cgroup charges)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1]) * 1024
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_bytes(int(c), field) for c in children)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its live children."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(c)) for c in children)


# Config merged into every shadoweval under test (run.py --worker), and its relay
# processes when not given (run.py --processes).
SHADOWEVAL_EXTRA: dict[str, Any] = {}
PROCESSES = 1


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def process(argv: list[str], name: str, port: int | None = None, **kw: Any) -> Iterator[Proc]:
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kw)
    proc = Proc(popen, name)
    try:
        if port is not None:
            try:
                wait_port(port)
            except RuntimeError:
                proc.stop()
                raise RuntimeError(
                    f"{name} did not start:\n{Path(log.name).read_text()[-2000:]}"
                ) from None
        yield proc
    finally:
        proc.stop()


def nginx_conf(workdir: Path, servers: str, workers: int = 1) -> Path:
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
{servers}
}}
"""
    )
    return conf


@contextlib.contextmanager
def nginx_upstreams(n: int, cores: str = LOAD_CORE, workers: int = 1) -> Iterator[list[int]]:
    """``n`` nginx servers answering every request with CHAT_BODY (``return 200``)."""
    ports = [free_port() for _ in range(n)]
    body = CHAT_BODY.replace("'", "\\'")
    servers = "\n".join(
        f"""  server {{ listen 127.0.0.1:{p} reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{body}'; }} }}"""
        for p in ports
    )
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        conf = nginx_conf(Path(tmp), servers, workers)
        with process(
            pinned(cores, ["nginx", "-c", str(conf), "-p", tmp]), "nginx-upstream", ports[-1]
        ):
            yield ports


@contextlib.contextmanager
def nginx_proxy(
    primary: int,
    mirrors: list[int],
    streaming: bool = False,
    pid: list[int] | None = None,
    workers: int = 1,
    cores: str = SUT_CORE,
) -> Iterator[int]:
    """nginx as the system under test: proxy_pass to the primary, `mirror` to each candidate
    (``streaming``: unbuffered, each upstream chunk passed on as it arrives, as for SSE;
    ``workers``: worker processes, sharing the port with reuseport)."""
    port = free_port()
    ups = [f"  upstream primary {{ server 127.0.0.1:{primary}; keepalive 512; }}"]
    mirror_lines, mirror_locations = [], []
    for i, m in enumerate(mirrors):
        ups.append(f"  upstream cand{i} {{ server 127.0.0.1:{m}; keepalive 512; }}")
        mirror_lines.append(f"mirror /_mirror{i};")
        mirror_locations.append(
            f"""    location = /_mirror{i} {{ internal; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass http://cand{i}$request_uri; }}"""
        )
    servers = (
        "\n".join(ups)
        + f"""
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ {" ".join(mirror_lines)} mirror_request_body on;
      {"proxy_buffering off;" if streaming else ""}
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://primary; }}
{chr(10).join(mirror_locations)}
  }}"""
    )
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        conf = nginx_conf(Path(tmp), servers, workers)
        with process(
            pinned(cores, ["nginx", "-c", str(conf), "-p", tmp]), "nginx-proxy", port
        ) as proc:
            if pid is not None:  # for CPU accounting (master and worker)
                pid.append(proc.pid)
            yield port


@contextlib.contextmanager
def shadoweval_proxy(
    primary_url: str,
    candidate_urls: list[str],
    extra: dict[str, Any] | None = None,
    processes: int | None = None,
    cores: str = SUT_CORE,
) -> Iterator[tuple[int, int, Proc]]:
    """``shadoweval serve`` pinned to the system-under-test core; yields (port, admin port, proc).
    ``processes``: relay processes on the port (``listen.processes``, with the worker)."""
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-shadoweval-") as tmp:
        cfg: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin},
            "primary": {"name": "prod", "url": primary_url},
            "candidates": [
                {"name": f"cand-{i}", "url": u, "concurrency": 64, "queue_size": 4096}
                for i, u in enumerate(candidate_urls)
            ],
            "sink": {"kind": "file", "path": f"{tmp}/pairs.jsonl", "buffer_records": 100000},
            "log_level": "warning",
        }
        for key, value in {**SHADOWEVAL_EXTRA, **(extra or {})}.items():
            cfg[key] = value
        processes = processes or PROCESSES
        if processes > 1:
            cfg["listen"]["processes"] = processes
            cfg["shadow_worker"] = {**cfg.get("shadow_worker", {}), "enabled": True}
        path = Path(tmp) / "config.json"  # JSON is YAML
        path.write_text(json.dumps(cfg))
        argv = pinned(cores, [PYTHON, "-m", "shadoweval", "serve", "--config", str(path)])
        with process(argv, "shadoweval", port, preexec_fn=_many_files) as proc:
            wait_port(admin)
            yield port, admin, proc


@contextlib.contextmanager
def fake_upstream(*args: str) -> Iterator[int]:
    port = free_port()
    argv = pinned(
        LOAD_CORE, [PYTHON, "-m", "shadoweval", "fake-upstream", "--port", str(port), *args]
    )
    with process(argv, "fake-upstream", port):
        yield port


def shadow_counts(admin_port: int) -> dict[str, float]:
    """What became of the shadows so far, from the proxy's /metrics: pairs recorded and
    shadows dropped (by reason), so a throughput figure says how much was mirrored."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {"pairs": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "shadoweval_pairs_total":
                out["pairs"] += sample.value
            elif sample.name == "shadoweval_shadow_dropped_total" and sample.value:
                key = f"dropped_{sample.labels['reason']}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def vegeta(url: str, rate: int, duration_s: float, body: str = REQUEST_BODY) -> dict[str, Any]:
    """Open-loop fixed-rate load: requests leave on schedule whatever the server does, so a
    slow server cannot hide its latency (no coordinated omission)."""
    with tempfile.TemporaryDirectory(prefix="bench-vegeta-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(body)
        target = f"POST {url}\nContent-Type: application/json\n@{body_file}\n"
        attack = subprocess.run(
            pinned(LOAD_CORE, [str(TOOLS / "vegeta"), "attack", f"-rate={rate}", f"-duration={duration_s}s",
                               "-timeout=30s", "-max-workers=2000", "-keepalive=true"]),
            input=target.encode(), capture_output=True, check=True,
        )  # fmt: skip
        report = subprocess.run(
            [str(TOOLS / "vegeta"), "report", "-type=json"],
            input=attack.stdout,
            capture_output=True,
            check=True,
        )
    data = json.loads(report.stdout)
    lat = data["latencies"]
    return {
        "requests": data["requests"],
        "success": data["success"],
        "errors": len(data.get("errors") or []),
        "p50_ms": lat["50th"] / 1e6,
        "p90_ms": lat["90th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "max_ms": lat["max"] / 1e6,
        "mean_ms": lat["mean"] / 1e6,
    }


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


def wrk(
    url: str, duration_s: int, connections: int = 64, cores: str = LOAD_CORE, threads: int = 1
) -> float:
    """Saturating closed-loop load; returns requests per second."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_LUA % REQUEST_BODY)
        out = subprocess.run(
            pinned(cores, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "-s", str(script), url]),
            capture_output=True, check=True, text=True,
        )  # fmt: skip
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"unexpected wrk output:\n{out.stdout}")
