"""Every list of routes comes from one registry (shadoweval.routes.SURFACES): a surface
added there and missing anywhere else fails here."""

from __future__ import annotations

import json
from importlib import resources
from typing import get_args

from shadoweval import config, routes, tracing, types


def test_the_route_type_and_the_scorer_routes_are_the_registry() -> None:
    assert get_args(types.Route) == routes.ROUTE_NAMES
    assert get_args(config.ScoreRoute) == routes.ROUTE_NAMES


def test_the_pair_schema_enumerates_the_registry() -> None:
    text = resources.files("shadoweval").joinpath("schemas/pair.v1.schema.json").read_text()
    assert tuple(json.loads(text)["properties"]["route"]["enum"]) == routes.ROUTE_NAMES


def test_spans_and_metrics_name_every_route() -> None:
    # A route missing from the span names used to fail every traced request to it.
    assert tracing.OPERATIONS is routes.OPERATIONS
    assert set(routes.OPERATIONS) == set(routes.ROUTE_NAMES)
    assert (*routes.ROUTE_NAMES, "other") == routes.METRIC_ROUTES


def test_paths_are_unique_and_versioned() -> None:
    paths = [s.path for s in routes.SURFACES]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith("/v1/") for p in paths)
    assert routes.ROUTES["/v1/messages"] == "messages"
