"""Probe records (``source: probe``) -> the robustness section: attack-success rates per
candidate against the baseline, clustered by base probe."""

from __future__ import annotations

from collections.abc import Sequence

from shadoweval.config import Report
from shadoweval.report.load import PairRow
from shadoweval.types import Json


def robustness(pairs: Sequence[PairRow], cfg: Report) -> dict[str, Json]:
    """One block per candidate upstream with probe records (none yet)."""
    return {}
