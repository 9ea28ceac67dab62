"""Audit the pinned dependencies (constraints.txt) with pip-audit, without faking a result.

    .venv/bin/python scripts/audit.py

- Known vulnerabilities: listed, exit 1.
- Dependencies pip-audit could not check because its vulnerability service (the PyPI JSON
  API) is unreachable -- as on build machines that only see a package index mirror: a loud
  "NOT AUDITED" report, exit 0; set SHADOWEVAL_AUDIT_REQUIRED=1 to make that fail (CI with
  internet access should).
- Every dependency checked and clean: exit 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
UNREACHABLE = ("not found on PyPI", "could not be audited", "Connection", "resolve", "timed out")


def verdict(data: dict[str, Any] | None, error: str, required: bool) -> tuple[int, list[str]]:
    """(exit code, report lines) for pip-audit's JSON report (None: it wrote none)."""
    if data is None:  # pip-audit gave up before writing a report (e.g. the service is down)
        unreachable = any(word in error for word in UNREACHABLE)
        code = 1 if required or not unreachable else 0
        return code, [f"pip-audit: NOT AUDITED, no report: {error}"]
    deps = data.get("dependencies", [])
    lines = [
        f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} "
        f"(fixed in {', '.join(vuln.get('fix_versions') or ()) or 'no fix yet'})"
        for dep in deps
        for vuln in dep.get("vulns") or ()
    ]
    if lines:
        return 1, lines
    skipped = [d for d in deps if "skip_reason" in d]
    if skipped:
        unreachable = all(any(w in d["skip_reason"] for w in UNREACHABLE) for d in skipped)
        why = "vulnerability service unreachable" if unreachable else "see the first reason"
        lines.append(
            f"pip-audit: {len(skipped)} of {len(deps)} pinned dependencies NOT AUDITED ({why}); "
            f"first: {skipped[0]['skip_reason']}"
        )
        if required or not unreachable:
            return 1, lines
        return 0, [*lines, "pip-audit: tolerated (SHADOWEVAL_AUDIT_REQUIRED=1 makes this an error)"]
    return 0, [f"pip-audit: {len(deps)} pinned dependencies audited, no known vulnerabilities"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [
                sys.executable, "-m", "pip_audit", "-r", str(CONSTRAINTS), "--no-deps",
                "--disable-pip", "--progress-spinner", "off", "-f", "json", "-o", str(report),
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        data = json.loads(report.read_text()) if report.exists() and report.stat().st_size else None
    error = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
    code, lines = verdict(data, error, os.environ.get("SHADOWEVAL_AUDIT_REQUIRED") == "1")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
