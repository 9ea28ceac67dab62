"""One candidate upstream: how its request is built (model rewrite, parameter overrides,
system prompt, its own credentials) and sent, with a bounded read of the answer."""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from shadoweval.config import Candidate
from shadoweval.proxy.forward import classify
from shadoweval.proxy.openai import error_type_for_status
from shadoweval.retry import RetryPolicy
from shadoweval.types import Capture, Json, Route

MAX_CHUNK_TIMES = 4096

# Called after every attempt: (client, attempt number, capture, will_retry).
AttemptHook = Callable[["CandidateClient", int, Capture, bool], None]


def _with_system_prompt(route: Route, request: Json, prompt: str, mode: str) -> None:
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
        session: aiohttp.ClientSession,
        capture_max: int,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self.cfg = cfg
        self._retry = RetryPolicy(cfg.retry)
        self._on_attempt = on_attempt
        self.name = cfg.name
        self.role = cfg.role
        self._session = session
        self._capture_max = capture_max
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, connect=cfg.connect_timeout_s)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        headers.update(cfg.headers)
        if cfg.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(cfg.api_key_env, '')}"
        self._headers = headers

    def transform(self, route: Route, request: Json) -> Json:
        """The candidate's version of the caller's request; the original stays untouched."""
        out: dict[str, Any] = copy.deepcopy(request) if self.cfg.system_prompt else dict(request)
        if self.cfg.model:
            out["model"] = self.cfg.model
        out.update(self.cfg.params)
        if self.cfg.system_prompt is not None:
            _with_system_prompt(route, out, self.cfg.system_prompt, self.cfg.system_prompt_mode)
        if out.get("stream") is True and route in ("chat", "completions"):
            # Ask for the final usage chunk so token counts are measured, not estimated.
            opts = out.get("stream_options")
            out["stream_options"] = {
                **(opts if isinstance(opts, dict) else {}),
                "include_usage": True,
            }
        return out

    def headers_for(self, caller_auth: str | None) -> dict[str, str]:
        if self.cfg.forward_caller_auth and caller_auth:
            return {**self._headers, "Authorization": caller_auth}
        return self._headers

    async def send(self, path: str, payload: Json, caller_auth: str | None = None) -> Capture:
        """Send with the retry policy and read the whole answer (bounded copy); never raises.

        The returned capture is the last attempt's, with ``attempts`` set.
        """
        data = orjson.dumps(payload)
        headers = self.headers_for(caller_auth)
        attempt = 1
        while True:
            cap, retry_after = await self._attempt(path, data, headers)
            cap.attempts = attempt
            delay = self._retry.delay(attempt, cap.error_type, retry_after)
            if self._on_attempt is not None:
                self._on_attempt(self, attempt, cap, delay is not None)
            if delay is None:
                return cap
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(
        self, path: str, data: bytes, headers: dict[str, str]
    ) -> tuple[Capture, str | None]:
        cap = Capture(started=time.perf_counter())
        retry_after = None
        try:
            async with self._session.post(
                self.cfg.url + path,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                cap.status = resp.status
                cap.content_type = resp.headers.get("Content-Type", "")
                retry_after = resp.headers.get("Retry-After")
                # This session decompresses, so the captured body is already plain.
                received = 0
                async for chunk in resp.content.iter_any():
                    received += len(chunk)
                    if len(cap.chunk_times) < MAX_CHUNK_TIMES:
                        cap.chunk_times.append((received, time.perf_counter() - cap.started))
                    room = self._capture_max - len(cap.body)
                    if room > 0:
                        cap.body += chunk[:room]
                    if len(chunk) > room:
                        cap.body_truncated = True
                cap.error_type = error_type_for_status(resp.status)
        except Exception as exc:
            cap.error_type, cap.error = classify(exc)
        cap.latency_s = time.perf_counter() - cap.started
        return cap, retry_after
