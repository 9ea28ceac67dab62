"""``shadoweval plan`` on the shipped campaign example and a synthetic pairs file, and
``check-config`` on that example."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from shadoweval.cli import main
from shadoweval.config.proxy import load
from shadoweval.config.scorer import parse_scorer
from shadoweval.plan import judge_plan, plan, read_requests

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "campaigns.yaml"
T0 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
NOW = datetime(2026, 12, 7, tzinfo=UTC).timestamp()  # before both campaigns' start


def write_pairs(path: Path, n: int = 101, spacing_s: float = 864.0) -> None:
    """n requests 864 s apart (100 per day), gpt-4o and gpt-4o-mini in turn; each written
    twice (two candidates), as the proxy would."""
    lines = []
    for i in range(n):
        mini = i % 2 == 1
        rec = {
            "schema": "shadoweval.pair.v1",
            "request_id": f"r{i}",
            "ts": datetime.fromtimestamp(T0 + i * spacing_s, UTC).isoformat(),
            "route": "chat",
            "task": "support-fr" if mini else None,
            "request": {"model": "gpt-4o-mini" if mini else "gpt-4o", "messages": []},
            "primary": {"output_text": "ok", "usage": {"input_tokens": 1000, "output_tokens": 500}},
            "candidate": {"upstream": "x"},
        }
        lines += [orjson.dumps(rec), orjson.dumps({**rec, "candidate": {"upstream": "y"}})]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_the_shipped_campaign_example_passes_check_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "llama-3.3-70b (candidate), qwen3-8b (candidate)" in out
    cfg = load(EXAMPLE)
    assert [c.match.models for c in cfg.candidates] == [
        ["gpt-4o", "gpt-4o-2024-*"],
        ["gpt-4o-mini", "gpt-4o-mini-*"],
    ]


def test_plan_per_candidate_from_observed_traffic(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs)
    requests = read_requests(str(pairs))
    assert len(requests) == 101  # one per request_id, not per record
    big, small = plan(load(EXAMPLE), requests, pairs_needed=200, now=NOW)
    # 100 requests/day, 51 of 101 gpt-4o, 20 % of them: ~10 pairs a day.
    assert big.matched_share == pytest.approx(51 / 101)
    assert big.shadows_per_day == pytest.approx(100 * 51 / 101 * 0.2)
    # Priced at the candidate's model with the primary's tokens: 1000 in, 500 out at 0.60.
    assert big.usd_per_shadow == pytest.approx(1500 * 0.60 / 1e6)
    assert big.usd_per_day == pytest.approx(big.shadows_per_day * 1500 * 0.60 / 1e6)
    assert big.days_to_needed == pytest.approx(200 / big.shadows_per_day)  # ~19.8
    assert small.shadows_per_day == pytest.approx(100 * 50 / 101 * 0.5)
    # The 14-day window is shorter than the ~20 days needed at this rate.
    assert any("schedule ends" in x for x in big.limited_by)


def test_a_daily_cap_limits_the_pairs_and_the_judge_is_priced(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs)
    requests = read_requests(str(pairs))
    cfg = load(EXAMPLE)
    raw = cfg.model_dump()
    raw["candidates"][0]["budget"] = {"usd_per_day": 0.0018}  # two shadows' worth
    capped = type(cfg).model_validate(raw)
    big = plan(capped, requests, pairs_needed=10, now=NOW)[0]
    assert big.pairs_per_day == pytest.approx(2.0)
    assert "budget.usd_per_day" in big.limited_by
    scorer = parse_scorer(
        {
            "judge": {
                "url": "http://127.0.0.1:1",
                "price_input_per_mtok": 1.0,
                "budget": {"usd_per_day": 1e-5},
            },
            "scorers": {"default": ["judge_pairwise"], "routes": {}},
        },
        environ={},
    )
    judge = judge_plan(scorer, requests, pairs_per_day=100)
    assert judge is not None and judge.calls_per_pair == 2.0
    assert judge.usd_per_day == 1e-5 and judge.limited_by == "judge.budget.usd_per_day"


def test_plan_command_prints_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs)
    args = ["plan", "--config", str(EXAMPLE), "--pairs", str(pairs)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "observed traffic: 100 requests/day" in out and "llama-3.3-70b" in out
    assert main([*args, "--json", "--pairs-needed", "50"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pairs_needed"] == 50 and len(data["candidates"]) == 2


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "no such file"),
        (b"not json\n", [], "no shadoweval.pair.v1 records"),
        (b"", ["--recorded-rate", "0"], "--recorded-rate must be in (0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    extra: list[str],
    message: str,
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    if content is not None:
        pairs.write_bytes(content)
    assert main(["plan", "--config", str(EXAMPLE), "--pairs", str(pairs), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_one_instant_of_traffic_gives_no_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, n=3, spacing_s=0)
    assert main(["plan", "--config", str(EXAMPLE), "--pairs", str(pairs)]) == 2
    assert "span no time" in capsys.readouterr().err


def test_check_config_warns_of_a_usd_cap_on_an_unpriced_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "primary: {url: 'http://127.0.0.1:9001'}\n"
        "candidates: [{name: c, url: 'http://127.0.0.1:9002', model: nowhere-7b,"
        " budget: {usd_per_day: 5}}]\n"
    )
    assert main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "candidates[c].budget.usd_per_day: model 'nowhere-7b' has no price" in err


def test_a_candidate_is_priced_from_its_own_answers_where_the_file_has_them(
    tmp_path: Path,
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, n=3)
    cfg = load(EXAMPLE)
    name = cfg.candidates[0].name
    lines = pairs.read_bytes().splitlines()
    first = orjson.loads(lines[0])  # r0 (gpt-4o): the candidate answered it with 100 + 50
    first["candidate"] = {"upstream": name, "usage": {"input_tokens": 100, "output_tokens": 50}}
    pairs.write_bytes(b"\n".join([orjson.dumps(first), *lines[1:]]) + b"\n")
    requests = read_requests(str(pairs))
    assert requests[0].answered[name] == (100, 50)
    big = plan(cfg, requests, pairs_needed=10, now=NOW)[0]
    # r0 at its own 150 tokens, r2 (no answer of its own) at the primary's 1500.
    assert big.usd_per_shadow == pytest.approx((150 + 1500) / 2 * 0.60 / 1e6)
    assert "priced from its own answers on 1 of 2 requests" in big.note


def test_match_headers_apply_when_the_records_carry_headers(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, n=4)
    lines = [orjson.loads(line) for line in pairs.read_bytes().splitlines()]
    for rec in lines:  # requests r0 and r1 from tenant acme, the rest from globex
        rec["headers"] = {"X-Tenant": "acme" if rec["request_id"] in ("r0", "r1") else "globex"}
    pairs.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    cfg = load(EXAMPLE)
    raw = cfg.model_dump()
    raw["candidates"][0]["match"] = {"headers": {"x-tenant": "acme"}}
    only_acme = type(cfg).model_validate(raw)
    requests = read_requests(str(pairs))
    assert requests[0].headers == {"x-tenant": "acme"}
    big = plan(only_acme, requests, pairs_needed=10, now=NOW)[0]
    assert big.matched_share == pytest.approx(2 / 4)
    assert "match.headers not applied" not in big.note
    write_pairs(pairs, n=4)  # the same without headers: said so
    big = plan(only_acme, read_requests(str(pairs)), pairs_needed=10, now=NOW)[0]
    assert big.matched_share == 0 and "match.headers not applied" in big.note
