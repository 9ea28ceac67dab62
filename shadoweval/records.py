"""The pair record (``shadoweval.pair.v1``): one per (request, candidate), serialised with orjson.

The JSON Schema lives next to this module in ``schemas/pair.v1.schema.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from shadoweval.config.proxy import Config
from shadoweval.redaction import Redactor
from shadoweval.routes import refers_to_state
from shadoweval.types import Json, Outcome

PAIR_SCHEMA = "shadoweval.pair.v1"
# The caller's tag of a request, recorded as the pair's ``task``.
TASK_HEADER = "x-shadoweval-task"


@dataclass(slots=True, frozen=True)
class RequestInfo:
    """What the record keeps about the caller's request (never its credentials)."""

    request_id: str
    received_at: float  # unix time
    route: str
    path: str
    task: str | None
    sampling_key: str | None
    source: str = "traffic"
    trace_id: str | None = None
    # Replay and probes: the reference answer from the input file (absent from live traffic).
    expected: Any = None
    # Azure OpenAI: the deployment the request's path names (it stands for the model).
    deployment: str | None = None
    # The request headers ``record.headers`` names that it carried (None: none are
    # recorded); redacted when the record is built.
    headers: dict[str, str] | None = None


def _redacted_output(side: Outcome, redactor: Redactor) -> Json:
    out = side.as_dict()
    if out["model"]:  # the upstream's text, whatever it sent
        out["model"] = redactor.text(out["model"])
    if out["output_text"]:
        out["output_text"] = redactor.text(out["output_text"])
    if out["error"]:
        out["error"] = redactor.text(out["error"])
    if out["tool_calls"]:
        out["tool_calls"] = redactor.json(out["tool_calls"])
    return out


def utf8(value: str | None) -> str | None:
    """A header value as valid UTF-8: aiohttp maps invalid bytes to lone surrogates, which
    JSON cannot carry (the sink would refuse the whole record)."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def build_pair(
    info: RequestInfo,
    request: Json,
    primary: Outcome,
    candidate: Outcome,
    redactor: Redactor,
    shared: dict[str, Any] | None = None,
    *,
    rebuilt: bool = False,
) -> Json:
    """One record per candidate. Pass the same ``shared`` dict for every candidate of a
    request: the redacted request, the primary side and the timestamp are then computed
    once and shared. ``rebuilt``: the candidate was sent the conversation a stateful
    request continues, rebuilt from the turns the proxy kept."""
    shared = {} if shared is None else shared
    if "request" not in shared:
        try:
            shared["request"] = redactor.json(request)
        except RecursionError:
            # Too deep to walk safely: keep the record, drop the body rather than leak it.
            shared["request"] = {"_unrecorded": "request body nested too deeply to redact"}
        shared["primary"] = _redacted_output(primary, redactor)
        shared["ts"] = datetime.fromtimestamp(info.received_at, UTC).isoformat(
            timespec="milliseconds"
        )
    return {
        "schema": PAIR_SCHEMA,
        "pair_id": f"{info.request_id}:{candidate.upstream}",
        "request_id": info.request_id,
        "ts": shared["ts"],
        "source": info.source,
        "route": info.route,
        "path": info.path,
        **({"deployment": info.deployment} if info.deployment is not None else {}),
        "task": redactor.text(task) if (task := utf8(info.task)) else task,  # caller's text
        **(
            {"headers": {k: redactor.text(v) for k, v in info.headers.items()}}
            if info.headers is not None
            else {}
        ),
        "sampling_key": info.sampling_key,
        "trace_id": info.trace_id,
        "request": shared["request"],
        **({"expected": redactor.json(info.expected)} if info.expected is not None else {}),
        "primary": shared["primary"],
        "candidate": _redacted_output(candidate, redactor),
        # The candidate lacked the stored state the request continues (unlike with unlike),
        # or was sent the conversation rebuilt (like with like, and marked so).
        **(
            {"stateful": "rebuilt" if rebuilt else True}
            if refers_to_state(info.route, request)
            else {}
        ),
    }


# What a cut string ends with, so a reader sees the record was shortened and where.
TRUNCATED_MARK = "…[truncated by shadoweval: record over limits.max_record_bytes]"


def fit(record: Json, max_bytes: int) -> Json:
    """The record, or a copy whose longest strings are shortened until its JSON fits in
    ``max_bytes``, marked ``record_truncated`` with the size it had. A sink never writes a
    record whole over its limit (nor refuses it whole, as Kafka does past
    ``max_request_size``). The common record is returned as it is, after one serialisation."""
    data = orjson.dumps(record)
    if len(data) <= max_bytes:
        return record
    fresh: Json = orjson.loads(data)  # a private copy: shared parts stay untouched
    fresh["record_truncated"] = {"original_bytes": len(data)}
    excess = len(data) - max_bytes + len(TRUNCATED_MARK.encode()) * 8 + 64
    for _ in range(8):
        leaves = sorted(_strings(fresh), key=lambda leaf: -len(leaf[0][leaf[1]]))
        for parent, key in leaves:
            if excess <= 0:
                break
            text: str = parent[key]
            keep = max(0, len(text) - excess)
            parent[key] = text[:keep] + TRUNCATED_MARK
            excess -= len(text.encode()) - len(parent[key].encode())
        size = len(orjson.dumps(fresh))
        if size <= max_bytes or not leaves:
            return fresh
        excess = size - max_bytes + 64  # escapes and multi-byte text: once more
    return fresh


def record_limit(cfg: Config) -> int:
    """The largest record the configured sink takes: limits.max_record_bytes, and for the
    Kafka sink its max_request_size less room for the message's own framing."""
    limit = cfg.limits.max_record_bytes
    if cfg.sink.kind == "kafka":
        size = cfg.sink.max_request_size
        limit = min(limit, max(size - 1024, size // 2))
    return limit


def _strings(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every string longer than the mark, for shortening in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str):
            if len(value) > 2 * len(TRUNCATED_MARK):
                yield node, key
        elif isinstance(value, dict | list):
            yield from _strings(value)


def dumps(record: Json) -> bytes:
    return orjson.dumps(record)


@cache
def pair_schema() -> Json:
    text = resources.files("shadoweval").joinpath("schemas/pair.v1.schema.json").read_text()
    schema: Json = json.loads(text)
    return schema


def iter_jsonl(
    paths: Iterable[str | Path],
    skipped: Counter[str],
    read: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Objects from JSONL record files; bad lines are counted in ``skipped``, not raised.
    ``read`` is told the size of every line read (progress displays)."""
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                if read is not None:
                    read(len(line))
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    skipped["invalid JSON line"] += 1
                    continue
                if isinstance(obj, dict):
                    yield obj
                else:
                    skipped["line is not a JSON object"] += 1
