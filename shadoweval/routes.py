"""The protocol surfaces shadoweval understands, in one registry.

Every list that names routes is derived from :data:`SURFACES`: the paths the proxy mirrors
(``ROUTES``), the GenAI operation names of spans (``OPERATIONS``), the metric routes, and
(checked by a test, since a type cannot be computed) the ``Route`` literal, the scorer
config's route keys and the pair schema's enum. Adding a surface is one entry here, its
answer parsing (``proxy/openai.py`` or ``proxy/anthropic.py``) and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shadoweval.types import Json, Route

Protocol = Literal["openai", "anthropic"]
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


SURFACES: tuple[Surface, ...] = (
    Surface("chat", "/v1/chat/completions", "openai", "chat", "messages", stream_usage=True),
    Surface(
        "completions", "/v1/completions", "openai", "text_completion", "none", stream_usage=True
    ),
    Surface("embeddings", "/v1/embeddings", "openai", "embeddings", "none", has_end_marker=False),
    # The Responses API is a chat generation.
    Surface("responses", "/v1/responses", "openai", "chat", "instructions"),
    # Anthropic Messages (also served by LiteLLM and vLLM).
    Surface("messages", "/v1/messages", "anthropic", "chat", "system"),
)

ROUTE_NAMES: tuple[Route, ...] = tuple(s.route for s in SURFACES)
ROUTES: dict[str, Route] = {s.path: s.route for s in SURFACES}
BY_ROUTE: dict[Route, Surface] = {s.route: s for s in SURFACES}
OPERATIONS: dict[Route, str] = {s.route: s.operation for s in SURFACES}
# Metric label values of the proxy's routes: every surface, and everything else.
METRIC_ROUTES: tuple[str, ...] = (*ROUTE_NAMES, "other")


def refers_to_state(route: str, request: Json) -> bool:
    """The request continues state stored on the primary (a Responses API
    ``previous_response_id`` or ``conversation``): a candidate does not have it."""
    if route != "responses":
        return False
    return bool(request.get("previous_response_id") or request.get("conversation"))
