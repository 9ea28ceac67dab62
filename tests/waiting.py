"""Waiting on state, the one way tests wait.

A test that sleeps a fixed time and then asserts passes on an idle machine and fails on a
busy one. These helpers poll the state itself instead, with a timeout generous enough for a
loaded machine; the timeout only bounds a test that would fail anyway, so it says what was
awaited and, when given, what the state was at the end.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Long enough for two CPU hogs beside the suite on two cores; a passing test never waits it out.
DEFAULT_TIMEOUT_S = 30.0
_INTERVAL_S = 0.02

Predicate = Callable[[], bool | Awaitable[bool]]


async def wait_for(
    predicate: Predicate,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "the condition",
    state: Callable[[], object] | None = None,
) -> None:
    """Return as soon as ``predicate()`` (plain or async) is true; AssertionError after
    ``timeout`` seconds naming ``what`` and showing ``state()`` when given."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(_INTERVAL_S)
    except TimeoutError:
        detail = f"; last state: {state()!r}" if state is not None else ""
        raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}") from None


def wait_for_sync(
    predicate: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "the condition",
    state: Callable[[], object] | None = None,
) -> None:
    """``wait_for`` for tests without an event loop (subprocesses, threads)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"; last state: {state()!r}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(_INTERVAL_S)
