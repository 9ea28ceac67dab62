"""Deployment-artefact tests: Dockerfile, Helm chart, dashboards, alert rules, Prometheus.

They run real tools (hadolint, helm, kubeconform, promtool, prometheus), which
scripts/test.sh installs. Run by hand without a tool, a test that needs it is skipped with
the install hint; under CI (CI set) it fails instead, so it can never be skipped silently.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where scripts/test.sh puts the Go-built tools (helm, kubeconform).
TOOLS_BIN = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str:
    """The path of a tool the test needs; skip (fail under CI) when it is not installed."""
    for candidate in (TOOLS_BIN / name, VENV_BIN / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: run scripts/test.sh, which installs it"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: this test must run, not skip)", pytrace=False)
    pytest.skip(message)


def load_script(relative: str) -> ModuleType:
    """Import a generator script (grafana/generate.py, prometheus/generate.py) by path."""
    path = ROOT / relative
    name = "_" + relative.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
