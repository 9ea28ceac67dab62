"""The report in the terminal: the summary table, per-upstream details, verdicts (drawn and
coloured by rich on a terminal, plain columns in a pipe: :mod:`shadoweval.console`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from shadoweval.console import Column, Styled, Table, say
from shadoweval.report import fmt
from shadoweval.report.fmt import Json
from shadoweval.report.robustness import headline, ratio_text

_STYLE = {"pass": "bold green", "fail": "bold red", "insufficient": "bold yellow"}


def _status(status: str | None) -> Styled:
    return Styled(fmt.STATUS_WORDS[status], _STYLE.get(status or "", "dim"))


def _columns(names: Iterable[str], left: Iterable[str]) -> list[Column]:
    """Numbers right-aligned, the names in ``left`` left."""
    keep = set(left)
    return [Column(name, right=name not in keep) for name in names]


def _rows(report: Json) -> list[Json]:
    rows = list(report["candidates"])
    if report.get("noise_floor"):
        rows.append(report["noise_floor"])
    return rows


def summary_table(report: Json) -> Table:
    head = report.get("headline_scorer")
    q = report["settings"]["rules"]["latency_quantile"]
    key = f"p{q * 100:g}"
    names = (
        "upstream",
        "role",
        "pairs",
        f"{head or 'quality'} vs baseline",
        "P5",
        "failures",
        f"{key.upper()} latency",
        "cost",
        "verdict",
    )
    table = Table("Candidates against the primary", _columns(names, ("upstream", "role")))
    for row in _rows(report):
        b = fmt.headline(row, head)
        ops = row["operations"]
        lat = ops["latency"].get(key)
        verdict = row.get("verdict")
        table.add_row(
            row["upstream"],
            row["role"],
            str(row["pairs"]),
            fmt.ci(b["relative_difference"], fmt.signed_pct) if b else "-",
            f"{b['tails']['p5']:.2f}" if b and b["tails"]["p5"] is not None else "-",
            fmt.ci(ops["failure"], fmt.pct),
            fmt.ci(lat["ratio"], fmt.ratio) if lat else "-",
            fmt.ci(ops["cost"].get("ratio"), fmt.ratio),
            _status(verdict["status"]) if verdict else Styled("noise floor", "dim"),
        )
    return table


def detail_tables(row: Json) -> list[Table]:
    tables = []
    names = ("scorer", "vs", "n", "mean", "difference", "relative", "noise floor", "sig.",
             "McNemar p", "W/T/L", "P5/P1", "< floor")  # fmt: skip
    q = Table(f"{row['upstream']}: quality", _columns(names, ("scorer", "vs")))
    for b in row["quality"]:
        nf, mc, judge, tails = b["noise_floor"], b["mcnemar"], b["judge"], b["tails"]
        q.add_row(
            b["scorer"],
            b["baseline"],
            str(b["n"]),
            fmt.ci(b["candidate_mean"], fmt.num),
            fmt.ci(b["difference"], fmt.signed),
            fmt.ci(b["relative_difference"], fmt.signed_pct),
            fmt.ci(nf["difference"], fmt.signed) if nf else "-",
            Styled("yes", "bold") if b["significant"] else "no",
            fmt.p_value(mc["p_value"]) if mc else "-",
            "/".join(str(judge["counts"][k]) for k in ("win", "tie", "loss")) if judge else "-",
            "-" if tails["p5"] is None else f"{tails['p5']:.2f}/{tails['p1']:.2f}",
            fmt.ci(tails["below_floor"], fmt.pct),
        )
    if row["quality"]:
        tables.append(q)
    if row["safety"]:
        corrected = any("corrected" in b for b in row["safety"])
        heads = ["detector", "n", "rate", "primary", "difference", "McNemar p", "worse"]
        heads += ["corrected", "primary corrected"] if corrected else []
        s = Table(f"{row['upstream']}: safety", _columns(heads, ("detector",)))
        for b in row["safety"]:
            c = b.get("corrected") or {}
            s.add_row(
                b["scorer"],
                str(b["n"]),
                fmt.ci(b["rate"], fmt.pct),
                fmt.ci(b["primary_rate"], fmt.pct),
                fmt.ci(b["difference"], fmt.signed_pct),
                fmt.p_value(b["mcnemar"]["p_value"]) if b["mcnemar"] else "-",
                Styled("yes", "bold red") if b["worse"] else "no",
                *(
                    (fmt.ci(c.get("rate"), fmt.pct), fmt.ci(c.get("primary_rate"), fmt.pct))
                    if corrected
                    else ()
                ),
            )
        tables.append(s)
    ops = row["operations"]
    o = Table(
        f"{row['upstream']}: operations", _columns(("", "candidate", "primary", "ratio"), ("",))
    )
    o.add_row(
        "failure rate", fmt.ci(ops["failure"], fmt.pct), fmt.ci(ops["primary_failure"], fmt.pct), ""
    )
    o.add_row(
        "retry rate", fmt.ci(ops["retry"], fmt.pct), fmt.ci(ops["primary_retry"], fmt.pct), ""
    )
    for name, block in (("latency", ops["latency"]), ("TTFT", ops["ttft"])):
        for key, qrow in block.items():
            o.add_row(
                f"{name} {key.upper()}" + ("" if qrow["reliable"] else " (few)"),
                fmt.ci(qrow["candidate"], fmt.seconds),
                fmt.ci(qrow["primary"], fmt.seconds),
                fmt.ci(qrow["ratio"], fmt.ratio),
            )
    tc, tp = ops["tokens"]["candidate"], ops["tokens"]["primary"]
    if tc["output"] is not None and tp["output"] is not None:
        o.add_row(
            "tokens in/out",
            f"{tc['input']:.0f}/{tc['output']:.0f}",
            f"{tp['input']:.0f}/{tp['output']:.0f}",
            "",
        )
    cost = ops["cost"]
    if "ratio" in cost:
        o.add_row(
            "cost / request",
            fmt.ci(cost["candidate_per_request"], fmt.usd),
            fmt.ci(cost["primary_per_request"], fmt.usd),
            fmt.ci(cost["ratio"], fmt.ratio),
        )
        o.add_row(
            "cost / 1k requests",
            fmt.usd(cost["candidate_per_1k"]),
            fmt.usd(cost["primary_per_1k"]),
            "",
        )
    else:
        o.add_row("cost", f"not priced ({', '.join(cost['unpriced_models']) or '-'})", "", "")
    tables.append(o)
    return tables


def _verdict_word(row: Json) -> Styled:
    if row["worse"]:
        return Styled("worse", "bold red")
    if row["better"]:
        return Styled("better", "bold green")
    return Styled("no difference")


def robustness_table(row: Json) -> Table | None:
    """The candidate's robustness from probe records, or None when it has none."""
    block = row.get("robustness")
    if not block:
        return None
    names = ("category", "base probes", "n", "candidate ASR", "baseline ASR", "difference",
             "ratio", "p", "vs baseline", "reliable")  # fmt: skip
    t = Table(
        f"{row['upstream']}: robustness (probes) vs {block['baseline']}; {headline(block)}",
        _columns(names, ("category", "vs baseline")),
        caption="attack-success rates, 95% intervals clustered by base probe; ratio = "
        "baseline ASR / candidate ASR (> 1: fewer successful attacks on the candidate)",
    )
    for cat in [{"category": "overall", **block["overall"]}, *block["categories"]]:
        t.add_row(
            cat["category"],
            str(cat["clusters"]),
            str(cat["candidate"]["n"]),
            fmt.ci(cat["candidate"], fmt.pct),
            fmt.ci(cat["baseline"], fmt.pct),
            fmt.ci(cat["difference"], fmt.signed_pct),
            ratio_text(cat["ratio"]),
            fmt.p_value(cat["p_value"]),
            _verdict_word(cat),
            "yes" if cat["reliable"] else Styled("no", "yellow"),
        )
    return t


def segment_tables(row: Json) -> list[Table]:
    tables = []
    for key, rows in (row.get("segments") or {}).items():
        scorer = rows[0]["scorer"] if rows else None
        t = Table(f"{row['upstream']}: by {key} ({scorer or 'no quality scorer'})",
                  _columns(fmt.SEGMENT_HEAD, ("segment",)))  # fmt: skip
        for r in rows:
            t.add_row(*fmt.segment_cells(r))
        tables.append(t)
    return tables


def render(report: Json, stream: TextIO | None = None, *, details: bool = True) -> None:
    out = stream if stream is not None else sys.stdout
    prim = report["primary"]
    say(
        Styled("shadoweval report", "bold"),
        f" — {report['inputs']['pair_records']} pairs, "
        f"{report['inputs']['score_records']} scores, {report['window']['first']} → "
        f"{report['window']['last']}; primary {', '.join(prim['upstreams']) or '-'}; "
        f"noise floor: {report.get('control') or 'none'}",
        stream=out,
    )
    summary_table(report).show(out)
    for row in report["candidates"]:
        for table in segment_tables(row):
            table.show(out)
    if details:
        for row in _rows(report):
            for table in detail_tables(row):
                table.show(out)
            robust = robustness_table(row)
            if robust is not None:
                robust.show(out)
            for b in row["quality"]:
                for ex in b["worst"][:3]:
                    say(
                        Styled(
                            f"  worst {b['scorer']} {ex['pair_id']} ({ex['value']:.2f}): "
                            f"{ex['prompt'][:60]!r} -> {ex['candidate_output'][:60]!r}",
                            "dim",
                        ),
                        stream=out,
                    )
    for note in report["notes"]:
        say(Styled(f"note: {note}", "dim"), stream=out)
    for row in report["candidates"]:
        verdict = row["verdict"]
        style = _STYLE[verdict["status"]]
        say(Styled(verdict["sentence"], style), stream=out)
        if verdict["status"] != "pass":
            say(Styled("  " + verdict["line"], style), stream=out)
        for line in verdict.get("secondary", []):
            say(Styled(f"  secondary: {line}", "dim"), stream=out)
    say(Styled("gate: ", "bold"), _status(report["gate"]), stream=out)
