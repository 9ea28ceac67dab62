"""``shadoweval dataset build``: a representative eval set of real inputs from captured pairs.

``build`` reads pair records (and optionally score records), removes near-duplicate inputs,
samples the rest stratified by route, task and input length, adds edge cases (failures,
primary/candidate disagreements, safety flags, longest inputs) and writes JSON Lines that
``shadoweval replay`` reads, with a slot for the expected answer and the scoring rule.
"""

from __future__ import annotations

from shadoweval.dataset.build import BuildResult, build, read_requests, write_items

__all__ = ["BuildResult", "build", "read_requests", "write_items"]
