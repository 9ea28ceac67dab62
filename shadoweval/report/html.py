"""The report as one self-contained HTML page: tables, verdicts and inline-SVG plots.

Nothing is fetched at view time (no CDN, no script): the page can be attached to a CI run
or mailed. Every value shown comes from the report dict, so a saved JSON report renders the
same page.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from shadoweval.report import fmt, svg
from shadoweval.report.fmt import Json
from shadoweval.report.robustness import headline, ratio_text

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1320px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#667}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f4f8}td:first-child,th:first-child{text-align:left}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.insufficient{background:#ef8f00}
.skipped{background:#889}.verdicts li{margin:4px 0}
.plots{display:flex;flex-wrap:wrap;gap:12px}
svg.plot{border:1px solid #dde;border-radius:4px;background:#fff;max-width:100%;height:auto}
svg.plot text{font-size:11px;fill:#333}svg.plot .ptitle{font-size:13px;font-weight:600}
svg.plot .axis{font-size:12px}svg.plot .grid{stroke:#e6e8ef}svg.plot .pbg{fill:#fcfcfe}
svg.plot .accept{fill:#2e7d32;opacity:.08}
.ex{border:1px solid #dde;border-radius:4px;padding:6px 10px;margin:6px 0;font-size:13px}
.ex code{white-space:pre-wrap}.sig{font-weight:600}
"""


def _badge(status: str | None) -> str:
    return f'<span class="badge {escape(status or "skipped")}">{fmt.STATUS_WORDS[status]}</span>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    out = [f'<table class="{cls}"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _e(text: str) -> str:
    return escape(text)


def _rows(report: Json) -> list[Json]:
    rows = list(report["candidates"])
    if report.get("noise_floor"):
        rows.append(report["noise_floor"])
    return rows


# -- plots --------------------------------------------------------------------------------


def plot_quality_cost(report: Json, colors: svg.Colors | None = None) -> str:
    head = report.get("headline_scorer")
    rules = report["settings"]["rules"]
    points = []
    for row in _rows(report):
        b = fmt.headline(row, head)
        cost = row["operations"]["cost"].get("ratio")
        if b is None or not cost or cost.get("value") is None:
            continue
        rel = b["relative_difference"]
        if rel.get("value") is None:
            continue
        points.append(
            svg.Point(
                row["upstream"],
                cost["value"],
                rel["value"],
                cost.get("lo"),
                cost.get("hi"),
                rel.get("lo"),
                rel.get("hi"),
            )
        )
    max_drop = rules.get("quality_max_drop")
    return svg.scatter(
        "quality_cost",
        f"Cost vs quality ({head or 'no quality scores'})",
        points,
        xlabel="cost per request relative to the primary",
        ylabel=f"{head or 'quality'} vs baseline",
        xfmt=fmt.ratio,
        yfmt=fmt.signed_pct,
        accept=(rules.get("cost_max_ratio"), -max_drop if max_drop is not None else None),
        colors=colors,
    )


def plot_latency(report: Json, colors: svg.Colors | None = None) -> str:
    series = []
    primary: list[float] | None = None
    best = -1
    for row in _rows(report):
        ops = row["operations"]
        cand = ops["latency_percentiles"]["candidate"]
        if cand:
            series.append(svg.Line(row["upstream"], cand, [i / 100 for i in range(101)]))
        if ops["latency_n"] > best and ops["latency_percentiles"]["primary"]:
            best = ops["latency_n"]
            primary = ops["latency_percentiles"]["primary"]
    if primary:
        series.insert(0, svg.Line("primary", primary, [i / 100 for i in range(101)]))
    return svg.lines(
        "latency",
        "Latency distribution (successful calls)",
        series,
        xlabel="latency (log scale)",
        ylabel="share of requests at or below",
        xfmt=fmt.seconds,
        yfmt=lambda v: f"{v:.0%}",
        xlog=True,
        ylim=(0.0, 1.0),
        step=True,
        colors=colors,
    )


def plot_scores(report: Json, colors: svg.Colors | None = None) -> list[str]:
    out = []
    for scorer in report["scorers"]["quality"]:
        groups: list[tuple[str, list[float]]] = []
        base_added = False
        edges: list[float] = []
        for row in _rows(report):
            b = fmt.headline(row, scorer)
            if b is None:
                continue
            edges = b["histogram"]["edges"]
            counts = b["histogram"]["candidate"]
            total = sum(counts) or 1
            groups.append((row["upstream"], [c / total for c in counts]))
            base = b["histogram"]["baseline"]
            if base and b["baseline"] == "primary" and not base_added:
                total = sum(base) or 1
                groups.insert(0, ("primary", [c / total for c in base]))
                base_added = True
        if not groups:
            continue
        cats = [f"{edges[i]:.1f}-{edges[i + 1]:.1f}" for i in range(len(edges) - 1)]
        out.append(
            svg.bars(
                f"scores-{scorer}",
                f"Score distribution: {scorer}",
                cats,
                groups,
                xlabel="score",
                ylabel="share of pairs",
                colors=colors,
            )
        )
    return out


def _time_label(iso: str, bucket_s: int) -> str:
    when = datetime.fromisoformat(iso)
    if bucket_s >= 86400:
        return when.strftime("%m-%d")
    if bucket_s >= 6 * 3600:
        return when.strftime("%m-%d %Hh")
    return when.strftime("%H:%M" if bucket_s >= 60 else "%H:%M:%S")


def plot_over_time(report: Json, colors: svg.Colors | None = None) -> list[str]:
    bucket_s = int(report["window"]["bucket_s"] or 60)
    starts = sorted({b["start"] for row in _rows(report) for b in row["timeline"]})
    if not starts:
        return []
    index = {s: i for i, s in enumerate(starts)}
    every = max(1, len(starts) // 8)
    ticks = [(float(i), _time_label(s, bucket_s)) for i, s in enumerate(starts) if i % every == 0]
    q_series, l_series = [], []
    for row in _rows(report):
        tl = row["timeline"]
        xs = [float(index[b["start"]]) for b in tl]
        q_series.append(svg.Line(row["upstream"], xs, [b["quality"] for b in tl]))
        l_series.append(svg.Line(row["upstream"], xs, [b["latency_p95"] for b in tl]))
    first = _rows(report)[0]["timeline"] if _rows(report) else []
    l_series.insert(
        0,
        svg.Line(
            "primary",
            [float(index[b["start"]]) for b in first],
            [b["primary_latency_p95"] for b in first],
        ),
    )
    head = report.get("headline_scorer")
    out = []
    if head:
        out.append(
            svg.lines(
                "over_time_quality",
                f"Mean {head} over time",
                q_series,
                xlabel=f"time (UTC, {bucket_s} s buckets)",
                ylabel=f"mean {head}",
                xticks=ticks,
                yfmt=lambda v: f"{v:.2f}",
                colors=colors,
            )
        )
    out.append(
        svg.lines(
            "over_time_latency",
            "P95 latency over time",
            l_series,
            xlabel=f"time (UTC, {bucket_s} s buckets)",
            ylabel="P95 latency",
            xticks=ticks,
            yfmt=fmt.seconds,
            colors=colors,
        )
    )
    return out


# -- tables -------------------------------------------------------------------------------


def _summary(report: Json) -> str:
    head = report.get("headline_scorer")
    q = report["settings"]["rules"]["latency_quantile"]
    key = f"p{q * 100:g}"
    rows = []
    for row in _rows(report):
        b = fmt.headline(row, head)
        ops = row["operations"]
        lat = ops["latency"].get(key)
        judge = b.get("judge") if b else None
        verdict = row.get("verdict")
        rows.append(
            [
                _e(row["upstream"]),
                _e(row["role"]),
                str(row["pairs"]),
                _e(fmt.ci(b["relative_difference"], fmt.signed_pct)) if b else "-",
                _e(
                    f"{judge['win']['value']:.0%}/{judge['tie']['value']:.0%}/"
                    f"{judge['loss']['value']:.0%}"
                )
                if judge
                else "-",
                _e(fmt.num(b["tails"]["p5"])) if b and b["tails"]["p5"] is not None else "-",
                _e(fmt.ci(ops["failure"], fmt.pct)),
                _e(fmt.ci(lat["ratio"], fmt.ratio)) if lat else "-",
                _e(fmt.ci(ops["cost"].get("ratio"), fmt.ratio)),
                _badge(verdict["status"]) if verdict else "noise floor",
            ]
        )
    return _table(
        [
            "upstream",
            "role",
            "pairs",
            f"{head or 'quality'} vs baseline",
            "win/tie/loss",
            "P5 score",
            "failure rate",
            f"{key.upper()} latency ratio",
            "cost ratio",
            "verdict",
        ],
        rows,
        "summary",
    )


def _quality_table(row: Json) -> str:
    rows = []
    for b in row["quality"]:
        nf = b.get("noise_floor")
        mc = b.get("mcnemar")
        judge = b.get("judge")
        tails = b["tails"]
        rows.append(
            [
                _e(b["scorer"]),
                _e(f"{b['mode']} vs {b['baseline']}"),
                str(b["n"]),
                _e(fmt.ci(b["candidate_mean"], fmt.num)),
                _e(fmt.ci(b["baseline_mean"], fmt.num)),
                f'<span class="{"sig" if b["significant"] else ""}">'
                + _e(fmt.ci(b["difference"], fmt.signed))
                + "</span>",
                _e(fmt.ci(b["relative_difference"], fmt.signed_pct)),
                _e(fmt.ci(nf["difference"], fmt.signed)) if nf else "-",
                "yes" if b["significant"] else "no",
                _e(f"{fmt.p_value(mc['p_value'])} ({mc['b']}/{mc['c']})") if mc else "-",
                _e(
                    f"{judge['counts']['win']}/{judge['counts']['tie']}/{judge['counts']['loss']}"
                    f" p={fmt.p_value(judge['sign_test_p'])}"
                )
                if judge
                else "-",
                _e("-" if tails["p5"] is None else f"{tails['p5']:.2f} / {tails['p1']:.2f}"),
                _e(fmt.ci(tails["below_floor"], fmt.pct)),
            ]
        )
    if not rows:
        return '<p class="muted">no quality scores</p>'
    return _table(
        [
            "scorer",
            "compared",
            "n",
            "mean",
            "baseline",
            "difference",
            "relative",
            "noise floor (control)",
            "significant",
            "McNemar p (b/c)",
            "W/T/L sign test",
            "P5 / P1",
            "below floor",
        ],
        rows,
    )


def _safety_table(row: Json) -> str:
    rows = []
    for b in row["safety"]:
        mc = b.get("mcnemar")
        rows.append(
            [
                _e(b["scorer"]),
                str(b["n"]),
                _e(fmt.ci(b["rate"], fmt.pct)),
                _e(fmt.ci(b["primary_rate"], fmt.pct)),
                _e(fmt.ci(b["difference"], fmt.signed_pct)),
                _e(fmt.p_value(mc["p_value"])) if mc else "-",
                "yes" if b["worse"] else "no",
            ]
        )
    if not rows:
        return '<p class="muted">no safety scores</p>'
    return _table(
        ["detector", "n", "rate", "primary rate", "difference", "McNemar p", "worse"], rows
    )


def _robustness(row: Json) -> str:
    """The robustness section from probe records; empty when the candidate has none."""
    block = row.get("robustness")
    if not block:
        return ""
    rows = []
    for cat in [{"category": "overall", **block["overall"]}, *block["categories"]]:
        verdict = "worse" if cat["worse"] else "better" if cat["better"] else "no difference"
        rows.append(
            [
                _e(cat["category"]),
                str(cat["clusters"]),
                str(cat["candidate"]["n"]),
                _e(fmt.ci(cat["candidate"], fmt.pct)),
                _e(fmt.ci(cat["baseline"], fmt.pct)),
                _e(fmt.ci(cat["difference"], fmt.signed_pct)),
                _e(ratio_text(cat["ratio"])),
                _e(fmt.p_value(cat["p_value"])),
                f'<span class="sig">{verdict}</span>' if verdict != "no difference" else verdict,
                "yes" if cat["reliable"] else "no",
            ]
        )
    head = ["category", "base probes", "n", "candidate ASR", "baseline ASR", "difference",
            "ratio", "p", "vs baseline", "reliable"]  # fmt: skip
    return (
        "<h3>Robustness (probes)</h3>"
        f"<p>vs {_e(block['baseline'])}: {_e(headline(block))}</p>"
        + _table(head, rows)
        + '<p class="muted">Attack-success rates of red-team probes, 95% intervals clustered '
        "by base probe (variants are not independent); ratio = baseline ASR / candidate ASR "
        "(&gt; 1: fewer successful attacks on the candidate; an open upper limit when the "
        "candidate's successes are too few to bound it).</p>"
    )


def _ops_table(row: Json) -> str:
    ops = row["operations"]
    rows = [
        [
            "failure rate",
            _e(fmt.ci(ops["failure"], fmt.pct)),
            _e(fmt.ci(ops["primary_failure"], fmt.pct)),
            _e(fmt.ci(ops["failure_difference"], fmt.signed_pct)) + " (diff)",
        ],
        [
            "retry rate (attempts > 1)",
            _e(fmt.ci(ops["retry"], fmt.pct)),
            _e(fmt.ci(ops["primary_retry"], fmt.pct)),
            "",
        ],
    ]
    for name, block in (("latency", ops["latency"]), ("TTFT", ops["ttft"])):
        for key, q in block.items():
            note = "" if q["reliable"] else " (few pairs)"
            rows.append(
                [
                    _e(f"{name} {key.upper()}{note}"),
                    _e(fmt.ci(q["candidate"], fmt.seconds)),
                    _e(fmt.ci(q["primary"], fmt.seconds)),
                    _e(fmt.ci(q["ratio"], fmt.ratio)),
                ]
            )
    tc, tp = ops["tokens"]["candidate"], ops["tokens"]["primary"]
    if tc["output"] is not None and tp["output"] is not None:
        rows.append(
            [
                "tokens per request (in / out)",
                _e(f"{tc['input']:.0f} / {tc['output']:.0f}"),
                _e(f"{tp['input']:.0f} / {tp['output']:.0f}"),
                _e(fmt.ratio((tc["input"] + tc["output"]) / ((tp["input"] + tp["output"]) or 1))),
            ]
        )
    cost = ops["cost"]
    if "ratio" in cost:
        rows.append(
            [
                "cost per request",
                _e(fmt.ci(cost["candidate_per_request"], fmt.usd)),
                _e(fmt.ci(cost["primary_per_request"], fmt.usd)),
                _e(fmt.ci(cost["ratio"], fmt.ratio)),
            ]
        )
        rows.append(
            [
                "cost per 1,000 requests",
                _e(fmt.usd(cost["candidate_per_1k"])),
                _e(fmt.usd(cost["primary_per_1k"])),
                "",
            ]
        )
    else:
        models = ", ".join(cost["unpriced_models"]) or "-"
        rows.append(["cost", _e(f"not priced ({models})"), "", ""])
    return _table(["", "candidate", "primary", "ratio"], rows)


def _worst(row: Json) -> str:
    out = []
    for b in row["quality"]:
        if not b["worst"]:
            continue
        out.append(f"<h4>Worst {escape(b['scorer'])} examples</h4>")
        for ex in b["worst"]:
            base = ex["baseline_value"]
            label = f" ({ex['label']})" if ex.get("label") else ""
            out.append(
                '<div class="ex">'
                f"<b>{escape(ex['pair_id'])}</b> — score {ex['value']:.2f}{escape(label)}"
                + (f", baseline {base:.2f}" if base is not None else "")
                + f' <span class="muted">{escape(ex["ts"])}</span><br>'
                f"prompt: <code>{escape(ex['prompt'])}</code><br>"
                f"primary: <code>{escape(ex['primary_output'])}</code><br>"
                f"candidate: <code>{escape(ex['candidate_output'])}</code>"
                + (
                    f"<br>scorer: <code>{escape(ex['explanation'])}</code>"
                    if ex["explanation"]
                    else ""
                )
                + "</div>"
            )
    return "".join(out)


def _details(row: Json, max_drop: float | None = None) -> str:
    verdict = row.get("verdict")
    parts = [
        f'<h2 id="up-{escape(row["upstream"])}">{escape(row["upstream"])} '
        f'<small class="muted">{escape(row["role"])}, {row["pairs"]} pairs, '
        f"models {escape(', '.join(row['models']) or '-')}</small> "
        + (_badge(verdict["status"]) if verdict else "")
        + "</h2>"
    ]
    if verdict:
        parts.append(f'<p class="sentence"><b>{escape(verdict["sentence"])}</b></p>')
        checks = [
            [
                _e(c["rule"]),
                _badge(c["status"]) if c["status"] != "skipped" else "skipped",
                _e(c["detail"]),
                str(c["pairs_needed"] or ""),
            ]
            for c in verdict["checks"]
        ]
        parts.append(_table(["rule", "status", "detail", "pairs needed"], checks))
    parts += [
        "<h3>Quality</h3>",
        _quality_table(row),
        "<h3>Safety</h3>",
        _safety_table(row),
        "<h3>Operations</h3>",
        _ops_table(row),
        _robustness(row),
        _segments(row, max_drop),
        _worst(row),
    ]
    return "".join(parts)


def _segments(row: Json, max_drop: float | None = None) -> str:
    """Per key: the quality change per segment with its interval (a forest plot; worse
    than the primary after Holm in red), then the table of every figure."""
    parts = []
    for key, rows in (row.get("segments") or {}).items():
        scorer = rows[0]["scorer"] if rows else None
        parts.append(
            f'<h3>By {escape(key)} <small class="muted">{escape(scorer or "")}</small></h3>'
        )
        intervals = [
            svg.Interval(
                f"{r['segment']} ({r['pairs']})",
                rel["value"],
                rel["lo"],
                rel["hi"],
                marked=r["worse"],
                note="" if r["reliable"] else "(unreliable)",
            )
            for r in rows
            if (rel := r["relative_difference"]) and rel["value"] is not None
        ]
        parts.append(
            svg.forest(
                f"segments-{row['upstream']}-{key}",
                f"{row['upstream']}: {scorer or 'quality'} change by {key}",
                intervals,
                xlabel=f"{scorer or 'quality'} relative to the baseline",
                xfmt=fmt.signed_pct,
                bound=-max_drop if max_drop else None,
            )
        )
        parts.append(
            _table(fmt.SEGMENT_HEAD, [[escape(c) for c in fmt.segment_cells(r)] for r in rows])
        )
    return "".join(parts)


def render(report: Json) -> str:
    gate = report["gate"]
    window = report["window"]
    prim = report["primary"]
    colors = svg.palette_for([r["upstream"] for r in _rows(report)])
    plots = [
        plot_quality_cost(report, colors),
        plot_latency(report, colors),
        *plot_scores(report, colors),
        *plot_over_time(report, colors),
    ]
    verdicts = "".join(
        f"<li>{_badge(r['verdict']['status'])} <b>{escape(r['verdict']['sentence'])}</b>"
        + (
            f"<br><small>{escape(r['verdict']['line'])}</small>"
            if r["verdict"]["status"] != "pass"
            else ""
        )
        + "</li>"
        for r in report["candidates"]
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report["notes"])
    skipped = report["inputs"]["skipped"]
    if skipped:
        notes += "".join(f"<li>skipped {v}: {escape(k)}</li>" for k, v in skipped.items())
    settings = escape(_settings_text(report["settings"]))
    control = report.get("control")
    body = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>shadoweval report — {escape(gate)}</title><style>{_CSS}</style></head><body>",
        f"<h1>shadoweval report {_badge(gate)}</h1>",
        f'<p class="muted">{report["inputs"]["pair_records"]} pairs, '
        f"{report['inputs']['score_records']} scores; {escape(str(window['first']))} → "
        f"{escape(str(window['last']))}; primary {escape(', '.join(prim['upstreams']))} "
        f"({escape(', '.join(prim['models']) or '-')}); noise floor: "
        f"{escape(control or 'none (no control upstream)')}; "
        f"{report['settings']['confidence']:.0%} confidence intervals. "
        f"Generated {escape(report['generated_at'])}.</p>",
        f'<h2>Verdicts</h2><ul class="verdicts">{verdicts or "<li>no candidates</li>"}</ul>',
        "<h2>Summary</h2>",
        _summary(report),
        '<h2>Plots</h2><div class="plots">',
        *plots,
        "</div>",
        *(_details(r, report["settings"]["rules"].get("quality_max_drop")) for r in _rows(report)),
        f"<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>",
        f"<details><summary>Settings</summary><pre>{settings}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(body)


def _settings_text(settings: Json, indent: str = "") -> str:
    lines = []
    for k, v in settings.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.append(_settings_text(v, indent + "  "))
        else:
            lines.append(f"{indent}{k}: {v}")
    return "\n".join(lines)
