"""One candidate upstream: how its request is built (model rewrite, parameter overrides,
system prompt, its own credentials) and sent, with a bounded read of the answer: reading
stops at ``limits.capture_max_bytes`` and the connection is closed, so a candidate that
sends a gigabyte costs what a megabyte costs (nobody waits for the rest of its answer)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Candidate
from shadoweval.headers import header_line
from shadoweval.protocols.openai import error_type_for_status
from shadoweval.proxy.forward import classify
from shadoweval.proxy.upstream import UpstreamPool
from shadoweval.retry import RetryPolicy
from shadoweval.routes import (
    BY_ROUTE,
    deployment_of,
    path_in_form,
    route_of,
    with_deployment,
)
from shadoweval.tls import client_context
from shadoweval.types import Capture, Json, Route

# The caller's credential headers a control forwards (routes.credential_headers), as sent.
CallerAuth = tuple[tuple[str, str], ...]

# Called after every attempt: (client, attempt number, capture, will_retry).
AttemptHook = Callable[["CandidateClient", int, Capture, bool], None]


class _CaptureFull(Exception):
    """The answer outgrew the capture limit: stop reading it."""


# Anthropic's API wants its version on every request; official clients send this one.
ANTHROPIC_VERSION = "2023-06-01"

# Query parameters that carry a caller's credentials on some APIs (keys, SAS signatures,
# tokens): never passed on to a candidate, which has credentials of its own.
CALLER_SECRET_PARAMS = frozenset(
    ("api-key", "api_key", "apikey", "key", "code", "sig", "token", "access_token")
)


def merged_query(caller: str, own: str) -> str:
    """The caller's query string with the candidate URL's parameters: a name the candidate
    sets replaces every caller parameter of that name; caller credentials are left out.
    Both stay as encoded as they came."""
    own_pairs = [p for p in own.split("&") if p]
    own_names = {_param_name(p) for p in own_pairs}
    kept = [
        p
        for p in caller.split("&")
        if p and (name := _param_name(p)) not in own_names and name not in CALLER_SECRET_PARAMS
    ]
    return "&".join([*kept, *own_pairs])


def _param_name(pair: str) -> str:
    return pair.partition("=")[0].lower()


def _with_system_prompt(route: Route, request: Json, prompt: str, mode: str) -> None:
    slot = BY_ROUTE[route].system
    if slot == "system":  # Anthropic Messages: a top-level string or list of text blocks
        current = request.get("system")
        if mode == "prepend" and isinstance(current, list) and current:
            request["system"] = [{"type": "text", "text": prompt}, *current]
        elif mode == "prepend" and isinstance(current, str) and current:
            request["system"] = f"{prompt}\n\n{current}"
        else:
            request["system"] = prompt
        return
    if route == "responses":
        current = request.get("instructions")
        joined = f"{prompt}\n\n{current}" if mode == "prepend" and current else prompt
        request["instructions"] = joined
        return
    messages = request.get("messages")
    if route != "chat" or not isinstance(messages, list):
        return
    system = [
        m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")
    ]
    rest = [
        m
        for m in messages
        if not (isinstance(m, dict) and m.get("role") in ("system", "developer"))
    ]
    if mode == "prepend":
        request["messages"] = [{"role": "system", "content": prompt}, *system, *rest]
    else:
        request["messages"] = [{"role": "system", "content": prompt}, *rest]


class CandidateClient:
    def __init__(
        self,
        cfg: Candidate,
        capture_max: int,
        on_attempt: AttemptHook | None = None,
        *,
        hop: tuple[bytes, bytes] | None = None,
        on_stale: Callable[[bool], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._retry = RetryPolicy(cfg.retry)
        self._on_attempt = on_attempt
        self.name = cfg.name
        self.role = cfg.role
        self._query = cfg.url.partition("?")[2]  # the URL's own parameters
        # Its own pool: a slow candidate can only exhaust its own connections.
        self.pool = UpstreamPool(
            cfg.url,
            limit=cfg.concurrency,
            connect_timeout_s=cfg.connect_timeout_s,
            ssl_context=client_context(cfg.tls, cfg.url, f"candidates[{cfg.name}]"),
            on_stale=on_stale,
        )
        self._capture_max = capture_max
        self._timeout = cfg.timeout_s
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        headers.update(cfg.headers)
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "")
            if cfg.api_key_header == "authorization":
                headers["Authorization"] = f"Bearer {key}"
            else:  # Anthropic's x-api-key, Azure OpenAI's api-key: the key as it is
                headers[cfg.api_key_header] = key
        self._headers = headers
        try:  # config headers are checked at load; the key comes from the environment
            self._raw_headers = _raw(headers)
        except ValueError as exc:
            raise ConfigError(f"candidates[{cfg.name}]: {exc}") from None
        self._hop = [hop] if hop is not None else []  # the loop marker (proxy/loops.py)
        self._raw_headers += self._hop
        # Anthropic Messages requests also carry anthropic-version unless configured.
        versioned = any(k.lower() == "anthropic-version" for k in cfg.headers)
        self._messages_extra = (
            [] if versioned else [(b"anthropic-version", ANTHROPIC_VERSION.encode())]
        )

    async def close(self) -> None:
        await self.pool.close()

    def transform(self, route: Route, request: Json) -> Json:
        """The candidate's version of the caller's request; the original stays untouched."""
        out: dict[str, Any] = copy.deepcopy(request) if self.cfg.system_prompt else dict(request)
        if self.cfg.model:
            out["model"] = self.cfg.model
        out.update(self.cfg.params)
        if self.cfg.system_prompt is not None:
            _with_system_prompt(route, out, self.cfg.system_prompt, self.cfg.system_prompt_mode)
        if route == "responses" and "store" not in self.cfg.params:
            # Responses are stored by default: a shadow must leave nothing behind.
            out["store"] = False
        if out.get("stream") is True and BY_ROUTE[route].stream_usage:
            # Ask for the final usage chunk so token counts are measured, not estimated.
            opts = out.get("stream_options")
            out["stream_options"] = {
                **(opts if isinstance(opts, dict) else {}),
                "include_usage": True,
            }
        return out

    def headers_for(self, caller_auth: CallerAuth = ()) -> dict[str, str]:
        if self.cfg.forward_caller_auth and caller_auth:
            return {**self._headers, **dict(caller_auth)}
        return self._headers

    def _raw_headers_for(self, caller_auth: CallerAuth = ()) -> list[tuple[bytes, bytes]]:
        if self.cfg.forward_caller_auth and caller_auth:
            # The caller's values passed the proxy's HTTP parser; checked again here because
            # they are written into a request of ours (one that is not clean stays behind).
            forwarded = []
            for name, value in caller_auth:
                with contextlib.suppress(ValueError):
                    forwarded.append(header_line(name, _as_latin1(value)))
            names = _names(forwarded)
            return [line for line in self._raw_headers if line[0].lower() not in names] + forwarded
        return self._raw_headers

    def target(self, path: str, query: str = "") -> str:
        """The candidate's request target for the caller's path and query: in the form its
        ``paths`` asks for (a request translated from the other form drops the caller's
        query, which belongs to that form); an Azure OpenAI deployment path names the candidate's
        ``model`` as its deployment; the query is merged with the URL's (``merged_query``)."""
        form = self.cfg.paths
        if form != "caller" and (route := route_of(path)) is not None:
            translated = path_in_form(route, form, self.cfg.model)
            caller_form = "openai" if path == BY_ROUTE[route].path else "azure"
            if translated is not None and form != caller_form:
                path, query = translated, ""
        if self.cfg.model and deployment_of(path) is not None:
            path = with_deployment(path, self.cfg.model)
        params = merged_query(query, self._query) if query or self._query else ""
        return f"{path}?{params}" if params else path

    async def send(
        self, path: str, payload: Json, caller_auth: CallerAuth = (), query: str = ""
    ) -> Capture:
        """Send with the retry policy and read the whole answer (bounded copy); never raises.

        The returned capture is the last attempt's, with ``attempts`` set.
        """
        data = orjson.dumps(payload)
        headers = self._raw_headers_for(caller_auth)
        if route_of(path) == "messages":
            headers = headers + self._messages_extra
        target = self.target(path, query)
        attempt = 1
        while True:
            cap, retry_after = await self._attempt(target, data, headers)
            cap.attempts = attempt
            delay = self._retry.delay(attempt, cap.error_type, retry_after)
            if self._on_attempt is not None:
                self._on_attempt(self, attempt, cap, delay is not None)
            if delay is None:
                return cap
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(
        self, path: str, data: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Capture, str | None]:
        cap = Capture(started=time.perf_counter(), limit=self._capture_max)
        retry_after = None
        ended: float | None = None

        def keep(chunk: bytes) -> None:
            cap.keep(chunk)
            if cap.body_truncated:
                raise _CaptureFull

        try:
            with _Deadline(self._timeout):
                resp = await self.pool.request("POST", path, headers, data)
                try:
                    cap.status = resp.status
                    cap.content_type = resp.header(b"content-type") or ""
                    cap.content_encoding = resp.header(b"content-encoding") or ""
                    retry_after = resp.header(b"retry-after")
                    # At the limit release() closes the connection: the exchange is unfinished.
                    with contextlib.suppress(_CaptureFull):
                        await resp.relay_to(keep)
                        ended = resp.completed_at
                finally:
                    resp.release()
            cap.error_type = error_type_for_status(resp.status or 0)
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
        # A whole answer ends with its last byte; a cut or failed one when it was given up.
        cap.latency_s = (ended if ended is not None else time.perf_counter()) - cap.started
        return cap, retry_after


class _Deadline:
    """``asyncio.timeout`` as a plain ``with`` block, for a third of its CPU on every shadow
    attempt: a loop timer that cancels the task, and on the way out the same test, telling
    that cancellation (TimeoutError) from any other (re-raised), without a coroutine each
    way and a reschedule."""

    __slots__ = ("_cancelling", "_delay", "_expired", "_handle", "_task")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = asyncio.get_running_loop().call_later(self._delay, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._handle.cancel()
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Raw header lines; ValueError if one could break the request (line breaks, controls)."""
    return [header_line(k, v) for k, v in headers.items()]


def _names(lines: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {name.lower() for name, _ in lines}


def _as_latin1(value: str) -> str:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: recover the bytes sent.
    return value.encode("utf-8", "surrogateescape").decode("latin-1")
