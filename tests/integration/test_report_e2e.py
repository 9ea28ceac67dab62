"""End to end: traffic through a real proxy -> pairs -> ``shadoweval score`` -> report
verdicts -> the HTML report in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest

from shadoweval.cli import main
from shadoweval.testing import running_stack
from shadoweval.testing.fake_upstream import FakeUpstream, Latency

Json = dict[str, Any]
ROOT = Path(__file__).parents[2]
CHROMIUM_HINT = "headless Chromium is not installed (apt-get install -y chromium)"


async def _traffic(url: str, requests: int, concurrency: int = 8) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = {
                "model": "prod-model",
                "messages": [{"role": "user", "content": f"Question {i}: what is {i} squared?"}],
                "stream": i % 3 == 0,
            }
            async with sem, session.post(f"{url}/v1/chat/completions", json=body) as resp:
                await resp.read()
                assert resp.status == 200

        await asyncio.gather(*(one(i) for i in range(requests)))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def _browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


@pytest.fixture
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM_HINT} (CI is set: the render test must run)", pytrace=False)
        pytest.skip(CHROMIUM_HINT)
    return binary


@pytest.fixture(scope="module")
def e2e_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Json, Path, int]:
    """400 requests through the proxy to an equivalent candidate, a worse one and a control."""
    tmp = tmp_path_factory.mktemp("e2e")

    async def run() -> list[Json]:
        primary = FakeUpstream(
            model="prod-model", latency=Latency.fixed(0.02), disagree_rate=0.03, seed=1
        )
        candidates = {
            # The primary asked again: as (non)deterministic as the primary itself.
            "control": FakeUpstream(
                model="prod-model", latency=Latency.fixed(0.02), disagree_rate=0.03, seed=2
            ),
            "equivalent": FakeUpstream(
                model="cheap-model", latency=Latency.fixed(0.02), disagree_rate=0.03, seed=3
            ),
            # 25x the primary: far past the 3x latency bound even when a loaded machine
            # adds tens of milliseconds of queueing to the primary's side.
            "worse": FakeUpstream(
                model="worse-model", latency=Latency.fixed(0.5), disagree_rate=0.4, seed=4
            ),
        }
        for fake in (primary, *candidates.values()):
            fake.record = False
        options = {
            "control": {"role": "control"},
            "equivalent": {"model": "cheap-model"},
            "worse": {"model": "worse-model", "concurrency": 64, "queue_size": 1024},
        }
        pricing = {
            "models": {
                "prod-model": {"input_per_mtok": 10.0, "output_per_mtok": 30.0},
                "cheap-model": {"input_per_mtok": 1.0, "output_per_mtok": 3.0},
                "worse-model": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},
            }
        }
        async with running_stack(
            primary,
            candidates,
            overrides={"pricing": pricing, "sink": {"kind": "memory"}},
            candidate_options=options,
        ) as stack:
            async with asyncio.timeout(120):  # a hung proxy fails the test, never CI
                await _traffic(stack.url, 400)
            await stack.memory.wait_for(1200, timeout=60)
        return list(stack.memory.records)

    pairs = asyncio.run(run())
    pairs_file, scores_file = tmp / "pairs.jsonl", tmp / "scores.jsonl"
    pairs_file.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in pairs))
    # The real scorer: exact match against the primary, and the safety detectors.
    scorer = tmp / "scorer.yaml"
    scorer.write_text(
        f"source: {{kind: file, path: '{pairs_file}'}}\n"
        f"sink: {{kind: file, path: '{scores_file}'}}\n"
        "scorers: {default: [exact]}\n"
    )
    assert main(["score", "--config", str(scorer), "--once"]) == 0
    scores = [orjson.loads(line) for line in scores_file.read_bytes().splitlines()]
    validator = jsonschema.Draft202012Validator(
        json.loads((ROOT / "shadoweval/schemas/score.v1.schema.json").read_text())
    )
    assert not [e for s in scores for e in validator.iter_errors(s)]
    assert {s["scorer"] for s in scores} >= {"exact", "refusal", "toxicity"}
    rules = tmp / "report.yaml"
    rules.write_text(
        "report:\n"
        "  bootstrap_resamples: 1000\n"
        "  rules:\n"
        "    quality_max_drop: 0.05\n"
        "    quality_scorers: [exact]\n"
        "    cost_max_ratio: 0.5\n"
        "    latency_quantile: 0.95\n"
        # Wide enough that a loaded machine's queueing cannot fail the equivalent
        # candidate (same 20 ms as the primary), narrow enough for the 25x one to fail.
        "    latency_max_ratio: 3.0\n"
        "    failure_max_increase: 0.02\n"
        "    min_pairs: 100\n"
    )
    html = tmp / "report.html"
    out = tmp / "report.json"
    code = main(
        [
            "report",
            str(pairs_file),
            "--scores",
            str(scores_file),
            "--config",
            str(rules),
            "--pricing",
            str(ROOT / "config" / "pricing.yaml"),  # records carry cost_usd: not used
            "--json",
            str(out),
            "--html",
            str(html),
            "--quiet",
        ]
    )
    return json.loads(out.read_text()), html, code


@pytest.mark.slow
def test_e2e_verdicts_from_live_traffic(e2e_report: tuple[Json, Path, int]) -> None:
    report, _, code = e2e_report
    verdicts = {r["upstream"]: r["verdict"] for r in report["candidates"]}
    assert verdicts["equivalent"]["status"] == "pass", verdicts["equivalent"]["line"]
    assert verdicts["worse"]["status"] == "fail", verdicts["worse"]["line"]
    failed = {c["rule"] for c in verdicts["worse"]["checks"] if c["status"] == "fail"}
    assert {"quality exact", "latency"} <= failed
    assert code == 1 and report["gate"] == "fail"

    assert report["control"] == "control"
    worse = next(r for r in report["candidates"] if r["upstream"] == "worse")
    exact = worse["quality"][0]
    assert exact["baseline"] == "control" and exact["significant"]
    assert exact["noise_floor"]["candidate_mean"]["value"] > 0.85
    equivalent = next(r for r in report["candidates"] if r["upstream"] == "equivalent")
    ops = equivalent["operations"]
    # Cost comes from the records' cost_usd (the proxy priced them): prices are 0.1x, and
    # token counts differ a little (the primary's streamed usage is estimated).
    assert 0.05 < ops["cost"]["ratio"]["value"] < 0.15
    assert ops["ttft_n"] > 50 and ops["ttft"]["p50"]["candidate"]["value"] > 0
    assert worse["operations"]["latency"]["p95"]["ratio"]["lo"] > 2


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(
    e2e_report: tuple[Json, Path, int], chromium: str, tmp_path: Path
) -> None:
    _, html, _ = e2e_report
    url = html.resolve().as_uri()
    dom = _browser(chromium, tmp_path / "profile-dom", "--dump-dom", url).stdout.decode()
    for plot in (
        "quality_cost",
        "latency",
        "scores-exact",
        "over_time_quality",
        "over_time_latency",
    ):
        assert f'data-plot="{plot}"' in dom, plot
    assert dom.count("<path") >= 8 and dom.count('class="point"') >= 3
    assert "worse: FAIL" in dom  # the failing rules' line
    # Each candidate's sentence, ending with its verdict and rule.
    assert "FAIL under rule `strict`" in dom and "PASS under rule `strict`" in dom
    shot = tmp_path / "report.png"
    _browser(
        chromium, tmp_path / "profile-shot", "--window-size=1360,2200", f"--screenshot={shot}", url
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1360, 2200)
    # A page of tables and plots compresses far worse than a blank one (a few KB).
    assert len(data) > 60_000
