"""Tracing configuration and the sampler, without a running proxy."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Link, SpanContext, TraceFlags

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import parse
from shadoweval.tracing import FollowLinkSampler, _otlp_endpoint

BASE = {"primary": {"url": "http://x"}}


@pytest.mark.parametrize(
    ("tracing", "expected"),
    [
        ({"enable": True}, "tracing.enable: unknown key"),
        ({"enabled": "sometimes"}, "tracing.enabled: Input should be a valid boolean"),
        ({"sample_ratio": 1.5}, "tracing.sample_ratio: Input should be less than or equal to 1"),
        (
            {"otlp_endpoint": "collector:4318"},
            "tracing.otlp_endpoint: must be an absolute http(s) URL",
        ),
        ({"service_name": ""}, "tracing.service_name: String should have at least 1 character"),
        (
            {"headers": {"x-key": "a\r\nb"}},
            "tracing.headers: header 'x-key' has a line break",
        ),
    ],
)
def test_bad_tracing_config_names_the_key(tracing: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "tracing": tracing}, environ={})
    assert expected in str(err.value)


def test_defaults_and_environment_override() -> None:
    cfg = parse(BASE, environ={})
    assert cfg.tracing.enabled is False
    assert cfg.tracing.service_name == "shadoweval" and cfg.tracing.sample_ratio == 1.0
    env = {
        "SHADOWEVAL_TRACING__ENABLED": "true",
        "SHADOWEVAL_TRACING__OTLP_ENDPOINT": "http://collector:4318/",
        "SHADOWEVAL_TRACING__SAMPLE_RATIO": "0.25",
    }
    cfg = parse(BASE, environ=env)
    assert cfg.tracing.enabled is True
    assert cfg.tracing.otlp_endpoint == "http://collector:4318"
    assert cfg.tracing.sample_ratio == 0.25


def test_otlp_endpoint_gets_the_traces_path_only_when_bare() -> None:
    assert _otlp_endpoint("http://collector:4318") == "http://collector:4318/v1/traces"
    assert (
        _otlp_endpoint("https://otel.example/custom/traces") == "https://otel.example/custom/traces"
    )


def _link(sampled: bool) -> Link:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return Link(SpanContext(1, 2, is_remote=False, trace_flags=flags))


def test_sampler_roots_with_a_link_follow_the_linked_request() -> None:
    sampler = FollowLinkSampler(0.0)
    # A plain root at ratio 0 is dropped; a linked root (a shadow call) follows its request.
    assert sampler.should_sample(None, 5, "root").decision == Decision.DROP
    assert sampler.should_sample(None, 5, "x", links=[_link(True)]).decision.is_sampled()
    assert sampler.should_sample(None, 5, "x", links=[_link(False)]).decision == Decision.DROP
    assert FollowLinkSampler(1.0).should_sample(None, 5, "root").decision.is_sampled()
