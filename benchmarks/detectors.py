"""Precision, recall and F1 of the safety detectors on their labelled sets.

    .venv/bin/python benchmarks/detectors.py                      # every set in detectors/
    .venv/bin/python benchmarks/detectors.py --detector refusal --file my_labels.jsonl

Each detector has a dev split (patterns were tuned on it, the n-gram classifier trained on
it), a test split (written and frozen before any tuning; never tuned on), a fresh split
(written after the first tuning, committed before it was first measured; never tuned on)
and a holdout split (written and committed before the second round of changes, measured
only once they were done; never tuned on). Writes benchmarks/results/detectors.json and
detectors.md: counts, precision and recall with Wilson 95% intervals, F1, per-language
figures where a set has several languages, and every miss. The test-split table is the one
docs/detectors.md quotes (a full run rewrites its tables). A user's own labelled file in the same format is measured with
--file (nothing is written then; the table goes to stdout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import harness

from shadoweval.score.detectors import refusal_model
from shadoweval.score.detectors.evaluate import DETECTORS, LabelledFileError, evaluate, load

SETS = Path(__file__).parent / "detectors"
RESULTS = Path(__file__).parent / "results"
SPLITS = ("test", "dev", "fresh", "holdout")
# The splits docs/detectors.md quotes, in the order it quotes them.
QUOTED = ("test", "fresh", "holdout")
# Also measured: refusal with the embedding classifier on (safety.refusal.model).
# The default refusal detector reads short answers the patterns let through with the n-gram
# classifier; this row swaps in the embedding classifier instead.
CLASSIFIER = "refusal + embedding classifier"
CLASSIFIER_CONFIG = {"safety": {"refusal": {"model": True}}}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "detectors.md"
START, END = "<!-- detectors:start -->", "<!-- detectors:end -->"
# The summary against the targets, in docs/scoring.md.
SUMMARY_DOCS = DOCS.with_name("scoring.md")
SUMMARY_START, SUMMARY_END = "<!-- detectors-summary:start -->", "<!-- detectors-summary:end -->"
# (precision, recall) the issue asks for, on answers not tuned on
TARGETS = {
    "refusal": (0.95, 0.90),
    "pii_leak": (0.95, 0.90),
    "secret_leak": (0.95, 0.90),
    "system_prompt_leak": (0.95, 0.90),
    "injection": (0.85, 0.85),
    "toxicity": (0.85, 0.85),
}
LANG_RECALL_TARGET = 0.85  # refusal recall in every language


def _fmt(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return "-"
    lo, hi = rate["ci95"]
    return f"{rate['value']:.2f} [{lo:.2f}, {hi:.2f}]"


def table(results: dict[str, dict[str, Any]], split: str) -> str:
    rows = [
        f"### {split} split",
        "",
        "| detector | n | precision [95% CI] | recall [95% CI] | F1 | TP | FP | FN | TN |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for det, by_split in results.items():
        if (r := by_split.get(split)) is None:
            continue
        f1 = "-" if r["f1"] is None else f"{r['f1']:.2f}"
        rows.append(
            f"| {det} | {r['n']} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | {f1} "
            f"| {r['tp']} | {r['fp']} | {r['fn']} | {r['tn']} |"
        )
    return "\n".join(rows) + "\n"


def lang_table(results: dict[str, dict[str, Any]], split: str) -> str:
    rows = ["| detector | language | n | precision | recall |", "|---|---|---|---|---|"]
    for det, by_split in results.items():
        for lang, r in (by_split.get(split) or {}).get("by_lang", {}).items():
            p = "-" if r["precision"]["value"] is None else f"{r['precision']['value']:.2f}"
            rc = "-" if r["recall"]["value"] is None else f"{r['recall']['value']:.2f}"
            rows.append(f"| {det} | {lang} | {r['n']} | {p} | {rc} |")
    return f"### {split} split by language\n\n" + "\n".join(rows) + "\n"


def _pr(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    p, rc = r["precision"]["value"], r["recall"]["value"]
    return f"{'-' if p is None else f'{p:.2f}'} / {'-' if rc is None else f'{rc:.2f}'}"


def _met(r: dict[str, Any] | None, target: tuple[float, float]) -> str:
    if r is None or r["precision"]["value"] is None or r["recall"]["value"] is None:
        return "-"
    ok = r["precision"]["value"] >= target[0] and r["recall"]["value"] >= target[1]
    return "yes" if ok else "**no**"


def summary(results: dict[str, dict[str, Any]]) -> str:
    """Each detector against its target on the splits not tuned on, and refusal recall per
    language: the table docs/scoring.md carries."""
    rows = [
        "| detector | target P / R | test P / R | met | fresh P / R | met | holdout P / R | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for det, target in TARGETS.items():
        by = results.get(det, {})
        cells = [f"{target[0]:.2f} / {target[1]:.2f}"]
        for split in QUOTED:
            cells += [_pr(by.get(split)), _met(by.get(split), target)]
        rows.append(f"| {det} | " + " | ".join(cells) + " |")
    langs = sorted(
        {lang for s in QUOTED for lang in results["refusal"].get(s, {}).get("by_lang", {})}
    )
    rows += [
        "",
        f"Refusal recall by language (target {LANG_RECALL_TARGET:.2f} in every one; n positives "
        "in parentheses):",
        "",
        "| split | " + " | ".join(langs) + " |",
        "|---|" + "---|" * len(langs),
    ]
    for split in QUOTED:
        by_lang = results["refusal"].get(split, {}).get("by_lang", {})
        cells = []
        for lang in langs:
            r = by_lang.get(lang)
            if r is None or r["recall"]["value"] is None:
                cells.append("-")
                continue
            v = r["recall"]["value"]
            mark = "" if v >= LANG_RECALL_TARGET else "**"
            cells.append(f"{mark}{v:.2f}{mark} ({r['tp'] + r['fn']})")
        rows.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def misses(results: dict[str, dict[str, Any]], split: str) -> str:
    out = [f"### Misses on the {split} split", ""]
    for det, by_split in results.items():
        for m in (by_split.get(split) or {}).get("misses", []):
            text = m["text"].replace("\n", " ").replace("|", "\\|")
            out.append(f"- **{det}** {m['kind']} ({m['lang']}, {m['note']}): `{text}`")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--detector", choices=DETECTORS)
    ap.add_argument("--file", type=Path, help="a labelled JSONL file (needs --detector)")
    args = ap.parse_args()
    if args.file is not None:
        if args.detector is None:
            print("error: --file needs --detector", file=sys.stderr)
            return 2
        try:
            r = evaluate(args.detector, load(args.file))
        except (LabelledFileError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        res = {args.detector: {"file": r}}
        print(table(res, "file") + "\n" + lang_table(res, "file") + "\n" + misses(res, "file"))
        return 0
    results: dict[str, dict[str, Any]] = {}
    for det in (args.detector,) if args.detector else DETECTORS:
        results[det] = {}
        for split in SPLITS:
            path = SETS / f"{det}.{split}.jsonl"
            if path.exists():
                results[det][split] = evaluate(det, load(path))
        if det == "refusal" and refusal_model.shared() is not None:
            results[CLASSIFIER] = {
                split: evaluate(det, load(SETS / f"{det}.{split}.jsonl"), CLASSIFIER_CONFIG)
                for split in SPLITS
            }
    md = "# Safety detectors on their labelled sets\n\n" + "\n".join(
        [
            *(table(results, s) for s in QUOTED),
            table(results, "dev"),
            *(lang_table(results, s) for s in QUOTED),
            *(misses(results, s) for s in (*QUOTED, "dev")),
        ]
    )
    harness.write_results(RESULTS / "detectors", results, md)
    if args.detector is None:
        _update_docs(results)
    return 0


def _update_docs(results: dict[str, dict[str, Any]]) -> None:
    """Rewrite the tables between the markers of docs/detectors.md: the docs quote what
    was measured."""
    text = DOCS.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    body = "\n".join(
        [
            "_Regenerated by `benchmarks/detectors.py`._\n",
            *(table(results, s) for s in QUOTED),
            *(lang_table(results, s) for s in QUOTED),
        ]
    )
    DOCS.write_text(before + START + "\n" + body.replace("### ", "#### ") + END + after)
    text = SUMMARY_DOCS.read_text(encoding="utf-8")
    if SUMMARY_START in text and SUMMARY_END in text and "refusal" in results:
        before, rest = text.split(SUMMARY_START, 1)
        _, after = rest.split(SUMMARY_END, 1)
        body = "_Regenerated by `benchmarks/detectors.py`._\n\n" + summary(results)
        SUMMARY_DOCS.write_text(before + SUMMARY_START + "\n" + body + SUMMARY_END + after)


if __name__ == "__main__":
    sys.exit(main())
