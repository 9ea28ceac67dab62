"""Linear time of the two parsers that see whole answers and requests: SSE framing and
redaction, on adversarial inputs.

    .venv/bin/python benchmarks/linearity.py        # --repeat 5

For each input shape the same unit is repeated n and 4n times; the figure is the ratio of
the two best-of-``repeat`` CPU times (``time.process_time``). Linear is about 4, quadratic
about 16; the check fails above 8. A timing ratio depends on the machine's load, so it is
measured here and not in the test suite (the suite checks the SSE parser's bytes scanned
instead, tests/fuzz/test_openai_parsers.py). Writes benchmarks/results/linearity.json and
linearity.md.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import write_results
from shadoweval.config.proxy import Redaction
from shadoweval.protocols.openai import parse_answer
from shadoweval.redaction import Redactor
from shadoweval.types import Capture

OUT = Path(__file__).resolve().parent / "results" / "linearity"
LIMIT = 8.0  # 4x the input may cost at most 8x the time (quadratic would be 16x)

# Partial matches repeated: each could start a secret that never completes.
REDACTION_UNITS = ["a" * 70 + "@", "1 ", "12-", "sk-", "x.y@", "Bearer ", "4111 1111 1111 1111 ", "+1 555 "]  # fmt: skip
SSE_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}'


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def sse(sep: bytes, n: int) -> Callable[[], object]:
    body = (SSE_EVENT + sep) * n

    def run() -> object:
        capture = Capture(
            started=0.0, status=200, content_type="text/event-stream", body=bytearray(body)
        )
        return parse_answer("chat", {"stream": True}, capture, upstream="u", role="candidate")

    return run


def redaction(redactor: Redactor, unit: str, n: int) -> Callable[[], object]:
    text = unit * n
    return lambda: redactor.text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs (default 5)")
    args = parser.parse_args()
    redactor = Redactor(Redaction())
    cases: list[tuple[str, int, Callable[[int], Callable[[], object]]]] = []
    for sep in (b"\n\n", b"\r\n\r\n"):
        cases.append((f"sse events, separator {sep!r}", 2_000, functools.partial(sse, sep)))
    for unit in REDACTION_UNITS:
        cases.append(
            (f"redaction of {unit[:12]!r} x n", 500, functools.partial(redaction, redactor, unit))
        )
    rows: list[dict[str, Any]] = []
    for name, n, make in cases:
        small, large = best_of(args.repeat, make(n)), best_of(args.repeat, make(4 * n))
        ratio = large / small if small > 0 else 0.0
        rows.append(
            {
                "case": name,
                "n": n,
                "small_s": small,
                "large_s": large,
                "ratio": ratio,
                "linear": ratio < LIMIT,
            }
        )
    lines = [
        f"Linearity (4x the input; best of {args.repeat}, CPU time; Python {platform.python_version()})",
        "",
        "| case | n | time at n | time at 4n | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n']} | {r['small_s'] * 1e3:.2f} ms | "
            f"{r['large_s'] * 1e3:.2f} ms | {r['ratio']:.1f} |"
        )
    write_results(
        OUT, {"limit": LIMIT, "repeat": args.repeat, "rows": rows}, "\n".join(lines) + "\n"
    )
    return 0 if all(r["linear"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
