"""Every list of routes comes from one registry (shadoweval.routes.SURFACES): a surface
added there and missing anywhere else fails here."""

from __future__ import annotations

import json
from importlib import resources
from typing import get_args

from shadoweval import routes, tracing, types
from shadoweval.config.scorer import ScoreRoute


def test_the_route_type_and_the_scorer_routes_are_the_registry() -> None:
    assert get_args(types.Route) == routes.ROUTE_NAMES
    assert get_args(ScoreRoute) == routes.ROUTE_NAMES


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
    aliases = [a for s in routes.SURFACES for a in s.aliases]
    assert len(set(aliases)) == len(aliases) and not set(aliases) & set(paths)
    assert routes.ROUTES["/v1/messages"] == "messages"


def test_azure_paths_are_the_registrys_surfaces() -> None:
    assert routes.route_of("/openai/deployments/gpt4o/chat/completions") == "chat"
    assert routes.route_of("/openai/deployments/gpt4o/completions") == "completions"
    assert routes.route_of("/openai/deployments/ada/embeddings") == "embeddings"
    assert routes.route_of("/openai/responses") == "responses"
    for surface in routes.SURFACES:
        if surface.protocol == "openai":
            assert routes.route_of("/openai/v1" + surface.path.removeprefix("/v1")) == surface.route
        for alias in surface.aliases:
            assert routes.route_of(alias.replace(routes.DEPLOYMENT, "d-1")) == surface.route
    # One path segment names the deployment; nothing else is a surface.
    for path in (
        "/openai/deployments//chat/completions",
        "/openai/deployments/a/b/chat/completions",
        "/openai/deployments/a/audio/transcriptions",
        "/openai/deployments/a/chat/completions/",
    ):
        assert routes.route_of(path) is None, path


def test_a_deployment_is_read_and_replaced_in_its_segment() -> None:
    path = "/openai/deployments/prod-1/chat/completions"
    assert routes.deployment_of(path) == "prod-1"
    assert routes.with_deployment(path, "cand") == "/openai/deployments/cand/chat/completions"
    assert routes.deployment_of("/openai/responses") is None
    assert routes.with_deployment("/v1/chat/completions", "cand") == "/v1/chat/completions"


def test_each_openai_surface_has_a_path_in_either_form() -> None:
    assert routes.path_in_form("chat", "openai", None) == "/v1/chat/completions"
    assert routes.path_in_form("chat", "azure", "d") == "/openai/deployments/d/chat/completions"
    assert routes.path_in_form("responses", "azure", None) == "/openai/responses"
    assert routes.path_in_form("messages", "azure", "d") is None  # no Azure form
    for surface in routes.SURFACES:
        for form in ("openai", "azure"):
            path = routes.path_in_form(surface.route, form, "d")  # type: ignore[arg-type]
            assert path is None or routes.route_of(path) == surface.route
