"""Number formatting shared by the terminal and HTML renderers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Json = dict[str, Any]
Fmt = Callable[[float], str]


def pct(v: float) -> str:
    return f"{v:.1%}"


def signed_pct(v: float) -> str:
    return f"{v * 100:+.1f}%"


def ratio(v: float) -> str:
    return f"{v:.2f}x"


def seconds(v: float) -> str:
    if v < 1:
        return f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"
    return f"{v:.2f} s"


def usd(v: float) -> str:
    if v == 0:
        return "$0"
    if v < 0.01:
        return f"${v:.6f}".rstrip("0")
    return f"${v:,.4f}"


def num(v: float) -> str:
    return f"{v:.3f}"


def signed(v: float) -> str:
    return f"{v:+.3f}"


def value(est: Json | None, fmt: Fmt) -> str:
    if not est or est.get("value") is None:
        return "-"
    return fmt(est["value"])


def ci(est: Json | None, fmt: Fmt) -> str:
    """``value [lo, hi]``, or just the value when the interval is unknown."""
    if not est or est.get("value") is None:
        return "-"
    if est.get("lo") is None or est.get("hi") is None:
        return fmt(est["value"])
    return f"{fmt(est['value'])} [{fmt(est['lo'])}, {fmt(est['hi'])}]"


def p_value(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def headline(row: Json, scorer: str | None) -> Json | None:
    if scorer is None:
        return None
    return next((b for b in row["quality"] if b["scorer"] == scorer), None)


STATUS_WORDS = {"pass": "PASS", "fail": "FAIL", "insufficient": "NOT ENOUGH DATA", None: "—"}


SEGMENT_HEAD = [
    "segment",
    "pairs",
    "quality (relative)",
    "failure",
    "cost ratio",
    "latency ratio",
    "worse",
]


def segment_cells(r: Json) -> list[str]:
    """One segment's row (terminal and HTML): the figures with their intervals."""
    quality = ci(r["relative_difference"], signed_pct)
    if r["relative_difference"] and not r["reliable"]:
        quality += " (unreliable)"
    pairs = f"{r['pairs']}" + (" (few)" if r["small"] else "")
    latency = ci(r.get("latency_ratio"), ratio)
    if r.get("latency_ratio"):
        latency = f"{r['latency_quantile']} {latency}" + ("" if r["latency_reliable"] else " (few)")
    return [
        r["segment"],
        pairs,
        quality,
        ci(r["failure"], pct),
        ci(r["cost_ratio"], ratio),
        latency,
        "yes" if r["worse"] else "-",
    ]
