"""Test kit shipped with the package: fake upstreams and a running-stack helper."""

from shadoweval.testing.fake_upstream import FakeUpstream, Latency, Received
from shadoweval.testing.harness import Stack, running_stack
from shadoweval.testing.redteam import RedTeamFake

__all__ = ["FakeUpstream", "Latency", "Received", "RedTeamFake", "Stack", "running_stack"]
