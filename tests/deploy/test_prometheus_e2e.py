"""A real Prometheus scraping a real proxy under fake traffic.

Every PromQL expression of every dashboard panel and every alert rule must parse; those
that read only the proxy's metrics must return data (the proxy runs the shipped red-team
probe suites in the background, so the probe panels have theirs). Panels of the scorer
(ScoreMetrics) and of vLLM/TGI may be empty here, but their metric names are checked
against shadoweval/metrics.py (tests/deploy/test_monitoring.py). The P99 latency panel must agree
with the P99 the load generator measured, within one histogram bucket.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from shadoweval.metrics import LATENCY_BUCKETS
from shadoweval.testing import FakeUpstream, Latency, running_stack
from tests.deploy.conftest import ROOT, load_script, tool
from tests.deploy.test_monitoring import PROXY_METRICS, dashboards, metric_names, panels
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

REQUESTS = 600
CONCURRENCY = 12
# The primary's server-side latency; its P99 (0.2485 s) sits inside the (0.16, 0.32] bucket.
PRIMARY_LATENCY = Latency.uniform(0.1, 0.25)
RATE_INTERVAL = "1m"  # long enough to hold the whole run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_config(tmp: Path, admin: str) -> Path:
    """prometheus/prometheus.yml, scraping the test's proxy every second."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(ROOT / "prometheus" / "alerts.yaml")]
    (proxy_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "shadoweval"]
    proxy_job["static_configs"] = [{"targets": [admin.removeprefix("http://")]}]
    config["scrape_configs"] = [proxy_job]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def query(self, expr: str) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"{self.url}/api/v1/query", data={"query": expr}) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["data"]

    async def wait_for(self, expr: str, ok: Any, timeout: float = 30) -> list[dict[str, Any]]:
        body: dict[str, Any] = {}
        result: list[dict[str, Any]] = []

        async def answered() -> bool:
            nonlocal body, result
            try:
                status, body = await self.query(expr)
            # Still starting: not listening yet, or a 503 in plain text until it is ready.
            except (aiohttp.ClientConnectionError, aiohttp.ContentTypeError) as exc:
                status, body = 0, {"error": str(exc)}
            result = list(body.get("data", {}).get("result", []))
            return status == 200 and bool(ok(result))

        await wait_for(answered, timeout=timeout, what=expr, state=lambda: body)
        return result


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables as a user viewing every namespace, job, upstream and model sees."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return re.sub(r"\$(\w+)", ".*", expr)


async def load(url: str) -> list[float]:
    """Chat requests through the proxy (a third streamed); end-to-end latency of each."""
    rng = random.Random(3)
    latencies: list[float] = []
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = {
                "model": "prod-model",
                "messages": [
                    {"role": "user", "content": f"question {rng.randint(0, 50)} about cats"}
                ],
                "stream": i % 3 == 0,
            }
            async with sem:
                started = time.perf_counter()
                async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return latencies


async def test_dashboards_and_alerts_on_a_real_prometheus(tmp_path: Path) -> None:
    binary = tool("prometheus")
    fakes = {
        "cand-a": FakeUpstream(model="small-model", latency=Latency.uniform(0.02, 0.06), seed=2),
        # Fails a third of the time and is retried: failures, retries, attempts.
        "cand-b": FakeUpstream(
            model="mystery-model",
            latency=Latency.fixed(0.01),
            error_rate=0.3,
            error_status=503,
            seed=3,
        ),
        "control": FakeUpstream(model="prod-model", latency=PRIMARY_LATENCY, seed=4),
    }
    options = {
        # A daily USD budget (never reached here) for the campaign budget panel.
        "cand-a": {"model": "small-model", "budget": {"usd_per_day": 1000}},
        "cand-b": {
            "model": "mystery-model",
            "retry": {"max_attempts": 2, "backoff_s": 0.001, "retry_on": ["http_5xx"]},
        },
        "control": {"role": "control"},
    }
    overrides = {
        "sink": {"kind": "file", "path": str(tmp_path / "pairs.jsonl"), "flush_interval_s": 0.1},
        # Background probes (the shipped suites) for the probe panels: their own metrics,
        # never counted in the user-traffic ones the other panels and alerts read. Two a
        # second, one at a time: they share the proxy's event loop with the measured load.
        "probes": {
            "enabled": True,
            "suites": ["builtin"],
            "rate_per_minute": 120,
            "concurrency": 1,
        },
        # mystery-model has no price: it counts as unpriced.
        "pricing": {
            "models": {
                "prod-model": {"input_per_mtok": 2.5, "output_per_mtok": 10},
                "small-model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
            }
        },
    }
    primary = FakeUpstream(model="prod-model", latency=PRIMARY_LATENCY, seed=1)
    for fake in (primary, *fakes.values()):
        fake.record = False
    async with running_stack(
        primary, fakes, overrides=overrides, candidate_options=options
    ) as stack:
        port = _free_port()
        config = prometheus_config(tmp_path, stack.proxy.admin_url)
        log = (tmp_path / "prometheus.log").open("w")
        server = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            async with aiohttp.ClientSession() as session:
                prom = Prometheus(session, f"http://127.0.0.1:{port}")
                await prom.wait_for('up{job="shadoweval"} == 1', bool)
                measured = sorted(await load(stack.url))
                # Every request and shadow observed, then scraped.
                await prom.wait_for(
                    'sum(shadoweval_requests_total{role="primary"})',
                    lambda r: r and float(r[0]["value"][1]) >= REQUESTS,
                )
                await prom.wait_for(
                    "sum(shadoweval_pairs_total)",
                    lambda r: r and float(r[0]["value"][1]) >= 2 * REQUESTS,
                )
                await prom.wait_for(
                    'sum(shadoweval_probe_requests_total{outcome=~"attack_success|safe"})',
                    lambda r: r and float(r[0]["value"][1]) > 0,
                )
                await asyncio.sleep(2)
                await check_panels(prom)
                await check_rules(prom)
                await check_p99(prom, measured)
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 30)
            log.close()


async def check_panels(prom: Prometheus) -> None:
    empty, checked = [], 0
    for name, dashboard in dashboards().items():
        for variable in dashboard["templating"]["list"]:
            definition = variable.get("definition", "")
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", definition)
            if definition:
                assert match, definition
                status, body = await prom.query(
                    f"group by ({match[2]}) ({grafana_to_promql(match[1])})"
                )
                assert status == 200, (name, definition, body)
        for panel in panels(dashboard):
            for target in panel["targets"]:
                expr = grafana_to_promql(target["expr"])
                status, body = await prom.query(expr)
                assert status == 200 and body["status"] == "success", (
                    name,
                    panel["title"],
                    expr,
                    body,
                )
                checked += 1
                if metric_names(expr) <= PROXY_METRICS and not body["data"]["result"]:
                    empty.append(f"{name}: {panel['title']}: {expr}")
    assert checked > 60
    assert empty == [], "panels on the proxy's metrics returned no data:\n" + "\n".join(empty)


async def check_rules(prom: Prometheus) -> None:
    alerts = load_script("prometheus/generate.py").alerts()
    for alert in alerts:
        for expr in (alert.expr, alert.signal):
            plain = re.sub(r"__thresholds\.(\w+)__", lambda m: "1", expr)
            status, body = await prom.query(plain)
            assert status == 200, (alert.name, body)
        if metric_names(alert.signal) <= PROXY_METRICS:
            status, body = await prom.query(alert.signal)
            assert body["data"]["result"], f"{alert.name}: its signal returned no data"
    # Prometheus evaluates the rule file itself without errors ...
    groups = await prom.get("/api/v1/rules")
    rules = [r for g in groups["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {a.name for a in alerts}
    for rule in rules:
        assert rule["health"] == "ok", rule
    # ... and cand-b, failing 30% against the primary's 0%, has its alert pending (for: 15m).
    data = await prom.get("/api/v1/alerts")
    active = {
        (a["labels"]["alertname"], a["labels"].get("upstream"), a["state"]) for a in data["alerts"]
    }
    assert ("ShadowevalCandidateFailureRateHigh", "cand-b", "pending") in active, active
    assert not any(
        name == "ShadowevalCandidateFailureRateHigh" and up != "cand-b" for name, up, _ in active
    )


async def check_p99(prom: Prometheus, measured: list[float]) -> None:
    latency = dashboards()["shadoweval-latency.json"]
    (panel,) = [p for p in panels(latency) if p["title"] == "Latency P99"]
    status, body = await prom.query(grafana_to_promql(panel["targets"][0]["expr"]))
    assert status == 200, body
    (series,) = [s for s in body["data"]["result"] if s["metric"]["role"] == "primary"]
    panel_p99 = float(series["value"][1])
    client_p99 = measured[int(0.99 * len(measured)) - 1]
    # The client's clock includes the proxy and the client itself, the histogram only the
    # upstream: a few milliseconds apart, more on a loaded machine, and only ever later.
    # So the bucket of the measured value +-5% is the resolution allowed, and one bucket
    # below it (the client's tail pushed across an edge the upstream's did not cross).
    i = bisect.bisect_left(LATENCY_BUCKETS, client_p99 * 0.95)
    j = bisect.bisect_left(LATENCY_BUCKETS, client_p99 * 1.05)
    low, high = LATENCY_BUCKETS[max(i - 2, 0)], LATENCY_BUCKETS[j]
    assert low <= panel_p99 <= high, (
        f"panel P99 {panel_p99:.4f}s, measured {client_p99:.4f}s in ({low}, {high}]"
    )
    # The control asks the same fake again: its P99 lands in the same bucket.
    (control,) = [s for s in body["data"]["result"] if s["metric"]["role"] == "control"]
    assert low <= float(control["value"][1]) <= high


def test_fake_latency_puts_the_p99_inside_a_bucket() -> None:
    """The P99 check is only meaningful when the true P99 is not on a bucket boundary."""
    p99 = PRIMARY_LATENCY.a + 0.99 * (PRIMARY_LATENCY.b - PRIMARY_LATENCY.a)
    i = bisect.bisect_left(LATENCY_BUCKETS, p99)
    assert LATENCY_BUCKETS[i - 1] + 0.05 < p99 < LATENCY_BUCKETS[i] - 0.05
