"""Dependencies are pinned (constraints.txt covers every runtime and dev requirement) and
the audit step fails on a known vulnerability but never reports "clean" for what it could
not check (scripts/audit.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_constraints_pin_every_requirement_exactly() -> None:
    pins = {
        line.split("==")[0]: line.split("==")[1]
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert all(version for version in pins.values())
    needed = load("constraints").closure("shadoweval", {"dev"})
    missing = sorted(set(needed) - set(pins))
    assert not missing, f"not in constraints.txt (run scripts/constraints.py): {missing}"
    assert "pip" not in pins


@pytest.fixture(scope="module")
def verdict() -> object:
    return load("audit").verdict


def test_a_known_vulnerability_fails_the_audit(verdict: object) -> None:
    data = {
        "dependencies": [
            {
                "name": "aiohttp",
                "version": "3.9.0",
                "vulns": [{"id": "GHSA-x", "fix_versions": ["3.9.2"]}],
            }
        ]
    }
    code, lines = verdict(data, "", False)  # type: ignore[operator]
    assert code == 1 and lines == ["VULNERABLE aiohttp 3.9.0: GHSA-x (fixed in 3.9.2)"]


def test_unaudited_dependencies_are_never_reported_clean(verdict: object) -> None:
    skipped = {
        "dependencies": [
            {
                "name": "aiohttp",
                "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp (3.9.0)",
            }
        ]
    }
    code, lines = verdict(skipped, "", False)  # type: ignore[operator]
    assert code == 0 and "NOT AUDITED" in lines[0] and "tolerated" in lines[1]
    assert verdict(skipped, "", True)[0] == 1  # type: ignore[operator]
    assert verdict(None, "ConnectionError: cannot resolve pypi.org", False)[0] == 0  # type: ignore[operator]
    assert verdict(None, "some other crash", False)[0] == 1  # type: ignore[operator]
    clean = {"dependencies": [{"name": "aiohttp", "version": "3.14.5", "vulns": []}]}
    assert verdict(clean, "", False) == (
        0,
        ["pip-audit: 1 pinned dependencies audited, no known vulnerabilities"],
    )  # type: ignore[operator]
