"""Candidate timings with the shadow worker are the wire's, whatever else runs on the
machine: the worker sends and reads at the normal priority and only its idle child (parse,
pair, redact, sink) waits for CPU. Beside two CPU-burning processes, each record's latency
and time to first token stay close to the candidate's own timing at the median (under
SCHED_IDLE for the whole worker they were 0.2-1.5 s late), and the record says how long the
shadow queued and how long its parsing waited.

The bound here is 25 ms, so that the test holds on a saturated machine; the 5 ms target and
the figures measured against it are benchmarks/worker_timings.py's (docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

from shadoweval.testing.timings import measure

REQUESTS = 60
BOUND_S = 0.025


async def test_candidate_timings_beside_cpu_burners_are_the_wires(tmp_path: Path) -> None:
    t = await measure(tmp_path, requests=REQUESTS, burners=2, delay_s=0.2)
    # Every shadow was sent and answered while the burners ran: the figures are under load.
    assert t.sent_under_load
    assert len(t.latency_error) == REQUESTS
    # Against the candidate's own timing of each answer (its 200 ms plus what the loaded
    # machine added at its end): what is left is the proxy's error.
    latency, ttft = t.wire_error()
    assert -BOUND_S <= latency <= BOUND_S, t.summary()
    assert -BOUND_S <= ttft <= BOUND_S, t.summary()
    # Load is told apart from latency: every candidate side carries both waits.
    assert len(t.queue_wait) == len(t.parse_wait) == REQUESTS
    assert min(t.queue_wait) >= 0 and min(t.parse_wait) >= 0
