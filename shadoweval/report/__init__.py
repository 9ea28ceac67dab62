"""``shadoweval report``: pairs + scores -> tables, CIs, tails, noise floor, cost, verdicts.

``load`` reads the records, ``build_report`` aggregates them into a JSON-able dict
(``shadoweval.report.v1``), and the renderers turn that dict into a terminal table, JSON or
a self-contained HTML page.
"""

from __future__ import annotations

from shadoweval.report.aggregate import REPORT_SCHEMA, build_report
from shadoweval.report.load import Dataset, Filters, load, parse_time

__all__ = ["REPORT_SCHEMA", "Dataset", "Filters", "build_report", "load", "parse_time"]
