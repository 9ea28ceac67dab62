"""OpenTelemetry tracing: a SERVER span per caller request (a child of the caller's W3C
``traceparent``), a CLIENT child span for the primary call, and one CLIENT span per shadow call
in its own trace, linked to the request's SERVER span. Attributes follow the OpenTelemetry
GenAI semantic conventions; no prompt or answer text is ever put on a span.

Imported only when ``tracing.enabled`` is true (server.py), so with tracing off the process
never loads OpenTelemetry and the hot path pays one ``is None`` check per step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from yarl import URL

from shadoweval import __version__
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Candidate, Config, Primary
from shadoweval.config.proxy import Tracing as TracingConfig
from shadoweval.pricing import PriceTable
from shadoweval.protocols.openai import InvalidRequest, error_type_for_status
from shadoweval.routes import OPERATIONS
from shadoweval.telemetry import PrimaryAnswer
from shadoweval.types import Capture, Json, Outcome, Route

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import Attributes
except ImportError as exc:  # the optional extra "tracing"
    raise ConfigError(
        "tracing.enabled is true but the OpenTelemetry SDK is not installed: "
        "pip install 'shadoweval[tracing]'"
    ) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from shadoweval.proxy.http import Request
    from shadoweval.proxy.shadow import ParsedOnce

log = logging.getLogger(__name__)


class FollowLinkSampler(Sampler):
    """Parent-based ratio sampling, except that a root span with links (a shadow call) takes
    the decision of the request it links to: a sampled request always has its shadow spans,
    an unsampled one has none."""

    def __init__(self, ratio: float) -> None:
        self._default = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and links:
            if links[0].context.trace_flags.sampled:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return SamplingResult(Decision.DROP)
        return self._default.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"FollowLink{{{self._default.get_description()}}}"  # type: ignore[no-untyped-call]


def _otlp_endpoint(url: str) -> str:
    return url if URL(url).path not in ("", "/") else url + "/v1/traces"


def build_provider(cfg: TracingConfig, processor: SpanProcessor | None = None) -> TracerProvider:
    """The process's provider; ``processor`` replaces the OTLP batch exporter (tests)."""
    provider = TracerProvider(
        sampler=FollowLinkSampler(cfg.sample_ratio),
        resource=Resource.create(
            {"service.name": cfg.service_name, "service.version": __version__}
        ),
        shutdown_on_exit=False,  # ProxyServer.stop shuts it down after the shadows drained
    )
    if processor is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "tracing.enabled is true but the OTLP exporter is not installed: "
                "pip install 'shadoweval[tracing]'"
            ) from exc
        endpoint = _otlp_endpoint(cfg.otlp_endpoint) if cfg.otlp_endpoint else None
        # Empty headers -> None so OTEL_EXPORTER_OTLP_HEADERS still applies (secrets via env).
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(cfg.headers) or None)
        processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def _server_attrs(url: str) -> dict[str, str | int]:
    u = URL(url)
    return {"server.address": u.host or "", "server.port": u.port or 0}


def _at(anchor: tuple[int, float], perf: float) -> int:
    """Wall-clock ns of a ``time.perf_counter()`` instant, from a (time_ns, perf) pair taken
    together: captures time with perf_counter, spans want wall-clock nanoseconds."""
    return anchor[0] + int((perf - anchor[1]) * 1e9)


def _now() -> tuple[int, float]:
    return time.time_ns(), time.perf_counter()


def _model(request: Json) -> str | None:
    model = request.get("model")
    return model if isinstance(model, str) else None


def _describe(span: Span, outcome: Outcome) -> None:
    """Set the attributes of one upstream call that come from its parsed answer."""
    if outcome.model:
        span.set_attribute("gen_ai.response.model", outcome.model)
    usage = outcome.usage
    if usage is not None:
        if usage.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        if usage.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        if usage.estimated:
            span.set_attribute("shadoweval.usage.estimated", True)
    if outcome.finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [outcome.finish_reason])
    if outcome.status is not None:
        span.set_attribute("http.response.status_code", outcome.status)
    if outcome.cost_usd is not None:
        span.set_attribute("shadoweval.cost_usd", outcome.cost_usd)
    if outcome.attempts > 1:
        span.set_attribute("shadoweval.attempts", outcome.attempts)
    if outcome.error_type:
        # The closed ErrorType set: low cardinality, and no upstream text (it can hold secrets).
        span.set_attribute("error.type", outcome.error_type)
        span.set_status(Status(StatusCode.ERROR))


class Tracer:
    """Starts the spans of each request. One per process, built by :meth:`build`."""

    def __init__(
        self,
        provider: trace.TracerProvider,
        primary: Primary,
        prices: PriceTable,
        owned: TracerProvider | None = None,
    ) -> None:
        self.tracer = provider.get_tracer("shadoweval", __version__)
        self.prices = prices
        self.propagator = TraceContextTextMapPropagator()
        self.primary_name = primary.name
        self.primary_attrs: dict[str, str | int] = {
            **_server_attrs(primary.url),
            "shadoweval.upstream": primary.name,
            "shadoweval.role": "primary",
        }
        self._owned = owned

    @classmethod
    def build(
        cls, cfg: Config, prices: PriceTable, provider: trace.TracerProvider | None = None
    ) -> Tracer:
        """From config; a given ``provider`` (tests) is used as is and not shut down here."""
        if provider is not None:
            return cls(provider, cfg.primary, prices)
        own = build_provider(cfg.tracing)
        return cls(own, cfg.primary, prices, owned=own)

    def start(self, request: Request, route: Route | None, entered: float) -> RequestTrace:
        """The SERVER span, a child of the caller's traceparent/tracestate if valid; it starts
        when the handler was entered (``entered``: perf_counter) so it covers the body read.
        Attributes are set in ``finish``, off the caller's path (they cost as much as a span)."""
        parent = self.propagator.extract(request.headers)
        name = request.method if route is None else f"{request.method} {request.path}"
        span = self.tracer.start_span(
            name, parent, SpanKind.SERVER, start_time=_at(_now(), entered)
        )
        return RequestTrace(self, span, request.method, request.path, route)

    async def close(self) -> None:
        """Flush and stop the exporter (a blocking call, so off the loop)."""
        if self._owned is not None:
            await asyncio.to_thread(self._owned.shutdown)


class TraceLink:
    """What the shadow side needs of a request's trace: its id, and shadow spans linked to
    its SERVER span. A :class:`RequestTrace` in one process; a :class:`LinkedTrace` in
    the shadow worker, rebuilt from the span context the proxy sent."""

    __slots__ = ()
    _tracer: Tracer
    _route: Route | None

    @property
    def context(self) -> trace.SpanContext:
        raise NotImplementedError

    @property
    def trace_id(self) -> str:
        """Hex trace id of the SERVER span (the caller's trace when it sent traceparent)."""
        return trace.format_trace_id(self.context.trace_id)

    def shadow(
        self, cand: Candidate, request_id: str, payload: Json, started: float | None = None
    ) -> ShadowSpan:
        """A CLIENT span for one shadow call: a new trace (the shadow outlives the caller's
        request and is not part of what the caller waited for), linked to the SERVER span.
        ``started``: the ``time.perf_counter()`` it was sent at, when the span is made after
        the call (the shadow worker's idle child); default now."""
        operation = OPERATIONS[self._route or "chat"]  # only understood routes are mirrored
        attrs: dict[str, str | int] = {
            **_server_attrs(cand.url),
            "gen_ai.operation.name": operation,
            "shadoweval.upstream": cand.name,
            "shadoweval.role": cand.role,
            "shadoweval.request_id": request_id,
        }
        model = _model(payload)
        if model is not None:
            attrs["gen_ai.request.model"] = model
        anchor = _now()
        span = self._tracer.tracer.start_span(
            operation if model is None else f"{operation} {model}",
            Context(),  # a root: never a child of whatever context the worker task holds
            SpanKind.CLIENT,
            attrs,
            links=[Link(self.context)],
            start_time=anchor[0] if started is None else _at(anchor, started),
        )
        return ShadowSpan(span, anchor)


class LinkedTrace(TraceLink):
    """A request's trace as the shadow worker knows it: the SERVER span's context only."""

    __slots__ = ("_context", "_route", "_tracer")

    def __init__(self, tracer: Tracer, link: tuple[int, int, int], route: Route) -> None:
        self._tracer = tracer
        self._route = route
        trace_id, span_id, flags = link
        self._context = trace.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags)
        )

    @property
    def context(self) -> trace.SpanContext:
        return self._context


class RequestTrace(TraceLink):
    """The spans of one caller request; created on the hot path only when tracing is on."""

    __slots__ = ("_client", "_client_anchor", "_method", "_path", "_route", "_server", "_tracer")

    def __init__(
        self, tracer: Tracer, server: Span, method: str, path: str, route: Route | None
    ) -> None:
        self._tracer = tracer
        self._server = server
        self._method = method
        self._path = path
        self._route = route
        self._client: Span | None = None
        self._client_anchor = (0, 0.0)

    @property
    def context(self) -> trace.SpanContext:
        return self._server.get_span_context()

    def link(self) -> tuple[int, int, int]:
        """The SERVER span's context as plain numbers, for the shadow worker."""
        ctx = self.context
        return ctx.trace_id, ctx.span_id, int(ctx.trace_flags)

    def primary_call(self) -> dict[str, str]:
        """Start the primary's CLIENT span; returns its traceparent (and the caller's
        tracestate, if any) to put on the primary request in place of the caller's."""
        t = self._tracer
        # Named "{operation}" until the request model is known (finish renames it).
        name = self._method if self._route is None else OPERATIONS[self._route]
        self._client_anchor = _now()
        server_ctx = trace.set_span_in_context(self._server)
        self._client = t.tracer.start_span(
            name, server_ctx, SpanKind.CLIENT, start_time=self._client_anchor[0]
        )
        carrier: dict[str, str] = {}
        t.propagator.inject(carrier, trace.set_span_in_context(self._client))
        return carrier

    def finish(self, capture: Capture, body: bytes, parsed: ParsedOnce | None, status: int) -> None:
        """End both spans, scheduled after the answer was handed over. The primary's answer
        is read from ``parsed`` (one parse shared with the metrics and, when mirrored, the
        shadow side) so its CLIENT span carries the gen_ai.* attributes; its end time is
        when the (last attempt's) answer ended."""
        now = time.time_ns()
        client, server = self._client, self._server
        try:
            if client is not None and client.is_recording():
                self._describe_primary(client, capture, body, parsed)
            if server.is_recording():
                server.set_attributes(self._http_attrs())
                if self._route is not None:
                    server.set_attribute("http.route", self._path)
                server.set_attribute("http.response.status_code", status)
                error = capture.error_type or ("http_5xx" if status >= 500 else None)
                if error is not None:
                    server.set_attribute("error.type", error)
                    server.set_status(Status(StatusCode.ERROR))
        except Exception:  # a tracing bug must not lose the spans or reach anything else
            log.exception("tracing: describing the primary call failed")
        finally:
            if client is not None:
                client.end(_at(self._client_anchor, capture.started + capture.latency_s))
            server.end(now)

    def _http_attrs(self) -> dict[str, str]:
        attrs = {"http.request.method": self._method, "url.path": self._path}
        if self._route is not None:
            attrs["gen_ai.operation.name"] = OPERATIONS[self._route]
        return attrs

    def _describe_primary(
        self, span: Span, capture: Capture, body: bytes, parsed: ParsedOnce | None
    ) -> None:
        t, route = self._tracer, self._route
        span.set_attributes(t.primary_attrs)
        span.set_attribute("http.request.method", self._method)
        if route is not None:
            span.set_attribute("gen_ai.operation.name", OPERATIONS[route])
        try:
            if route is None:
                raise InvalidRequest("passed through, not parsed")
            if parsed is None:
                parsed = PrimaryAnswer(route, body, capture)
            request, outcome = parsed.request(), parsed.primary_outcome(t.primary_name, t.prices)
        except InvalidRequest:  # not a model call we understand: HTTP attributes only
            if capture.status is not None:
                span.set_attribute("http.response.status_code", capture.status)
            error = capture.error_type or (
                error_type_for_status(capture.status) if capture.status else None
            )
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR))
            return
        model = _model(request)
        if model is not None:
            span.set_attribute("gen_ai.request.model", model)
            span.update_name(f"{OPERATIONS[route]} {model}")
        _describe(span, outcome)


class ShadowSpan:
    """One shadow call's span; ended with the parsed outcome by the candidate worker."""

    __slots__ = ("_anchor", "_span")

    def __init__(self, span: Span, anchor: tuple[int, float]) -> None:
        self._span = span
        self._anchor = anchor

    def finish(self, capture: Capture, outcome: Outcome) -> None:
        """Ends when the last attempt's answer ended; retries are inside the span."""
        try:
            if self._span.is_recording():
                _describe(self._span, outcome)
        except Exception:
            log.exception("tracing: describing a shadow call failed")
        finally:
            self._span.end(_at(self._anchor, capture.started + capture.latency_s))
