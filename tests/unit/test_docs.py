"""The metric reference stays true: every defined metric is documented, and nothing else."""

import re
from pathlib import Path

from shadoweval.metrics import Metrics, ScoreMetrics

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def defined() -> set[str]:
    names = set()
    for cls in (Metrics, ScoreMetrics):
        for family in cls().registry.collect():
            if family.name.startswith("shadoweval_"):
                suffix = "_total" if family.type == "counter" else ""
                names.add(family.name + suffix)
    return names


def test_every_metric_is_in_the_reference_table() -> None:
    rows = set(re.findall(r"^\| `(shadoweval_[a-z_]+)`", DOC.read_text(), flags=re.M))
    assert rows == defined()
