"""Test kit shipped with the package: fake upstreams and a running-stack helper."""

from shadoweval.testing.fake_upstream import FakeUpstream, Latency, Received
from shadoweval.testing.harness import Stack, running_stack

__all__ = ["FakeUpstream", "Latency", "Received", "Stack", "running_stack"]
