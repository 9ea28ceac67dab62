"""The protocol surfaces shadoweval understands, in one registry.

Every list that names routes is derived from :data:`SURFACES`: the paths the proxy mirrors
(``ROUTES``), the GenAI operation names of spans (``OPERATIONS``), the metric routes, and
(checked by a test, since a type cannot be computed) the ``Route`` literal, the scorer
config's route keys and the pair schema's enum. Adding a surface is one entry here, its
answer parsing (``protocols/openai.py`` or ``protocols/anthropic.py``) and tests.

A surface may be reached by several paths: OpenAI's, and Azure OpenAI's forms of the same
API (under ``/openai/v1``, or a deployment's ``/openai/deployments/{deployment}/...``, where
the deployment names the model; the ``api-version`` query is the caller's and goes on to
candidates with the rest of the query string).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shadoweval.types import Json, Route

Protocol = Literal["openai", "anthropic"]
# The API forms a candidate can be sent a request in (candidates[].paths, besides "caller").
PathForm = Literal["openai", "azure"]
# Where a candidate's system prompt goes: the chat messages, the Responses API's
# instructions, Anthropic's top-level system, or nowhere (no conversation to steer).
SystemSlot = Literal["messages", "instructions", "system", "none"]


@dataclass(frozen=True, slots=True)
class Surface:
    route: Route
    path: str
    protocol: Protocol
    # gen_ai.operation.name (OpenTelemetry GenAI semantic conventions).
    operation: str
    system: SystemSlot
    # The candidate asks for a final usage event on streams (OpenAI's
    # stream_options.include_usage); Anthropic streams always carry usage.
    stream_usage: bool = False
    # A stream that ends without this event was cut short (None: no end marker, e.g.
    # embeddings are never streamed).
    has_end_marker: bool = True
    # Other paths of the same surface (Azure OpenAI's); ``{deployment}`` stands for one
    # path segment, the deployment's name.
    aliases: tuple[str, ...] = ()


DEPLOYMENT = "{deployment}"


def _azure(suffix: str, deployment: bool = True) -> tuple[str, ...]:
    """Azure OpenAI's paths of an OpenAI surface: the v1 form, and the deployment's (or,
    for Responses, the resource's: its model is in the body)."""
    scoped = f"/openai/deployments/{DEPLOYMENT}{suffix}" if deployment else f"/openai{suffix}"
    return (f"/openai/v1{suffix}", scoped)


SURFACES: tuple[Surface, ...] = (
    Surface(
        "chat",
        "/v1/chat/completions",
        "openai",
        "chat",
        "messages",
        stream_usage=True,
        aliases=_azure("/chat/completions"),
    ),
    Surface(
        "completions",
        "/v1/completions",
        "openai",
        "text_completion",
        "none",
        stream_usage=True,
        aliases=_azure("/completions"),
    ),
    Surface(
        "embeddings",
        "/v1/embeddings",
        "openai",
        "embeddings",
        "none",
        has_end_marker=False,
        aliases=_azure("/embeddings"),
    ),
    # The Responses API is a chat generation.
    Surface(
        "responses",
        "/v1/responses",
        "openai",
        "chat",
        "instructions",
        aliases=_azure("/responses", deployment=False),
    ),
    # Anthropic Messages (also served by LiteLLM and vLLM).
    Surface("messages", "/v1/messages", "anthropic", "chat", "system"),
)

ROUTE_NAMES: tuple[Route, ...] = tuple(s.route for s in SURFACES)
# Fixed paths -> route; paths with a deployment segment -> (prefix, suffix, route).
ROUTES: dict[str, Route] = {
    p: s.route for s in SURFACES for p in (s.path, *s.aliases) if DEPLOYMENT not in p
}
_TEMPLATES: tuple[tuple[str, str, Route], ...] = tuple(
    (p.partition(DEPLOYMENT)[0], p.partition(DEPLOYMENT)[2], s.route)
    for s in SURFACES
    for p in s.aliases
    if DEPLOYMENT in p
)
_TEMPLATE_START = "/openai/deployments/"
BY_ROUTE: dict[Route, Surface] = {s.route: s for s in SURFACES}
OPERATIONS: dict[Route, str] = {s.route: s.operation for s in SURFACES}
# Metric label values of the proxy's routes: every surface, and everything else.
METRIC_ROUTES: tuple[str, ...] = (*ROUTE_NAMES, "other")


def route_of(path: str) -> Route | None:
    """The surface a request path (without its query) belongs to, or None (passed through)."""
    route = ROUTES.get(path)
    if route is None and path.startswith(_TEMPLATE_START):  # the common path never gets here
        for prefix, suffix, candidate in _TEMPLATES:
            if _segment(path, prefix, suffix):
                return candidate
    return route


def deployment_of(path: str) -> str | None:
    """The Azure OpenAI deployment a path names (``/openai/deployments/{name}/...``)."""
    if path.startswith(_TEMPLATE_START):
        for prefix, suffix, _ in _TEMPLATES:
            if name := _segment(path, prefix, suffix):
                return name
    return None


def with_deployment(path: str, name: str) -> str:
    """The same path naming deployment ``name`` instead (unchanged if it names none)."""
    if path.startswith(_TEMPLATE_START):
        for prefix, suffix, _ in _TEMPLATES:
            if _segment(path, prefix, suffix):
                return f"{prefix}{name}{suffix}"
    return path


def path_in_form(route: Route, form: PathForm, deployment: str | None) -> str | None:
    """A surface's path in another API's form: OpenAI's own, or Azure OpenAI's versioned
    one (a deployment's, naming ``deployment``, or the resource's); None if it has none."""
    surface = BY_ROUTE[route]
    if form == "openai":
        return surface.path
    for alias in surface.aliases:
        if alias.startswith("/openai/v1/"):
            continue
        if DEPLOYMENT not in alias:
            return alias
        return alias.replace(DEPLOYMENT, deployment) if deployment else None
    return None


def _segment(path: str, prefix: str, suffix: str) -> str | None:
    """The one path segment between ``prefix`` and ``suffix``, if the path is that."""
    if len(path) <= len(prefix) + len(suffix):
        return None
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return None
    middle = path[len(prefix) : len(path) - len(suffix)]
    return middle if "/" not in middle else None


def refers_to_state(route: str, request: Json) -> bool:
    """The request continues state stored on the primary (a Responses API
    ``previous_response_id`` or ``conversation``): a candidate does not have it."""
    if route != "responses":
        return False
    return bool(request.get("previous_response_id") or request.get("conversation"))
