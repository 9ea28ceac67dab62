"""``shadoweval replay``: send a file of representative inputs through the primary and the
candidates of a proxy config, and write pair records (``source: replay``).

The same record builder, request transforms, credentials, retries, pricing and redaction as
the live proxy are used, so ``shadoweval score`` and ``shadoweval report`` work on the result
before any live traffic exists. Every input goes to the primary and to every candidate (the
sampling settings are for live traffic and do not apply); at most ``concurrency`` inputs are
in flight at once.

Input: JSON Lines, one input per line, either a request body for a route::

    {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}

or a wrapper with the body and optional fields::

    {"request": {...}, "route": "chat", "expected": "Hello", "task": "greeting"}

``route`` is a route name (chat, completions, embeddings, responses) or its path; without it
``messages`` means chat, ``prompt`` completions and ``input`` responses. In a bare body the
keys ``expected``, ``task`` and ``route`` are taken out before it is sent.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from shadoweval.config.proxy import Candidate, Config
from shadoweval.console import Progress
from shadoweval.pricing import PriceTable
from shadoweval.protocols.openai import parse_answer
from shadoweval.proxy.candidate import CandidateClient
from shadoweval.records import RequestInfo, build_pair
from shadoweval.redaction import Redactor
from shadoweval.routes import ROUTES, SURFACES
from shadoweval.types import Json, Outcome, Route

PATHS: dict[Route, str] = {s.route: s.path for s in SURFACES}
_META_KEYS = ("expected", "task", "route")


class InputError(ValueError):
    """A line of the inputs file cannot be replayed; the message names the line."""


@dataclass(frozen=True)
class ReplayInput:
    route: Route
    body: Json
    expected: Any = None
    task: str | None = None

    @property
    def path(self) -> str:
        return PATHS[self.route]


def _route(value: Any, body: Json, where: str) -> Route:
    if value is not None:
        if value in PATHS:
            return value  # type: ignore[no-any-return]
        if value in ROUTES:
            return ROUTES[value]
        raise InputError(f"{where}: unknown route {value!r} (use one of {', '.join(PATHS)})")
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        return "responses"
    raise InputError(f"{where}: cannot tell the route (no messages, prompt or input; set route)")


def parse_input(obj: Any, where: str) -> ReplayInput:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: not a JSON object")
    wrapped = obj.get("request", obj.get("body"))
    body = (
        wrapped
        if isinstance(wrapped, dict)
        else {k: v for k, v in obj.items() if k not in _META_KEYS}
    )
    task = obj.get("task")
    return ReplayInput(
        route=_route(obj.get("route"), body, where),
        body=body,
        expected=obj.get("expected"),
        task=task if isinstance(task, str) else None,
    )


def read_inputs(path: str | Path) -> list[ReplayInput]:
    inputs = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{where}: invalid JSON: {exc}") from None
            inputs.append(parse_input(obj, where))
    return inputs


@dataclass
class Summary:
    inputs: int = 0
    done: int = 0
    pairs: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    out: str = ""


def _primary_as_client(cfg: Config, concurrency: int) -> Candidate:
    # The primary is sent exactly the input (no transform); as a "control" entry it may
    # carry the caller's Authorization (from --primary-key-env) like a control would.
    return Candidate(
        name=cfg.primary.name,
        url=cfg.primary.url,
        role="control",
        forward_caller_auth=True,
        concurrency=concurrency,
        connect_timeout_s=cfg.primary.connect_timeout_s,
        timeout_s=cfg.primary.timeout_s,
        retry=cfg.primary.retry,
    )


async def replay(
    cfg: Config,
    inputs: Iterable[ReplayInput],
    out: BinaryIO,
    *,
    concurrency: int = 8,
    primary_auth: str | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Replay ``inputs``; pair records are written to ``out`` (JSONL) as they complete.

    ``concurrency`` workers each take the next input, send it to the primary and every
    candidate at once, and write its records; a bounded pool, not a task per input.
    """
    items = list(inputs)
    summary = Summary(inputs=len(items), out=getattr(out, "name", ""))
    prices = PriceTable(cfg.pricing)
    redactor = Redactor(cfg.redaction)
    capture_max = cfg.limits.capture_max_bytes
    workers = max(1, min(concurrency, len(items)))
    started = time.perf_counter()
    queue = iter(items)
    primary = CandidateClient(_primary_as_client(cfg, workers), capture_max)
    clients = [CandidateClient(c, capture_max) for c in cfg.candidates]
    try:

        async def work() -> None:
            for item in queue:  # a shared iterator: each input is taken once
                records = await _replay_one(
                    item, cfg, primary, clients, prices, redactor, primary_auth
                )
                # Small buffered writes; the file is flushed when the caller closes it.
                out.write(b"".join(orjson.dumps(rec) + b"\n" for rec in records))
                for rec in records:
                    errors = summary.errors.setdefault(rec["candidate"]["upstream"], Counter())
                    if rec["candidate"]["error_type"]:
                        errors[rec["candidate"]["error_type"]] += 1
                summary.pairs += len(records)
                summary.done += 1
                if progress is not None:
                    progress(summary.done, len(items))

        await asyncio.gather(*(work() for _ in range(workers)))
    finally:
        for client in (primary, *clients):
            await client.close()
    summary.elapsed_s = time.perf_counter() - started
    return summary


async def _replay_one(
    item: ReplayInput,
    cfg: Config,
    primary: CandidateClient,
    clients: list[CandidateClient],
    prices: PriceTable,
    redactor: Redactor,
    primary_auth: str | None,
) -> list[Json]:
    info = RequestInfo(
        request_id=uuid.uuid4().hex,
        received_at=time.time(),
        route=item.route,
        path=item.path,
        task=item.task,
        sampling_key=None,
        source="replay",
        expected=item.expected,
    )
    payloads = [c.transform(item.route, item.body) for c in clients]
    # Sent together, as the proxy does: both sides see the same moment of load.
    auth = (("Authorization", primary_auth),) if primary_auth else ()
    captures = await asyncio.gather(
        primary.send(item.path, item.body, auth),
        *(c.send(item.path, p, auth) for c, p in zip(clients, payloads, strict=True)),
    )
    prim = _outcome(item, item.body, captures[0], cfg.primary.name, "primary", prices)
    records = []
    for client, payload, capture in zip(clients, payloads, captures[1:], strict=True):
        cand = _outcome(item, payload, capture, client.name, client.role, prices)
        records.append(build_pair(info, item.body, prim, cand, redactor))
    return records


def _outcome(
    item: ReplayInput, payload: Json, capture: Any, upstream: str, role: Any, prices: PriceTable
) -> Outcome:
    outcome = parse_answer(item.route, payload, capture, upstream=upstream, role=role)
    return prices.annotate(outcome, payload.get("model"))


def print_summary(summary: Summary, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    print(
        f"replayed {summary.done} inputs in {summary.elapsed_s:.1f}s: {summary.pairs} pair "
        f"records appended to {summary.out}",
        file=out,
    )
    for upstream, errors in sorted(summary.errors.items()):
        detail = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "no errors"
        print(f"  {upstream}: {detail}", file=out)
