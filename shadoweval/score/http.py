"""A small JSON-over-HTTP client for the judge and embedding endpoints: timeouts, retries
with exponential backoff (or the endpoint's Retry-After) on 429, 5xx and network errors."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import aiohttp
import orjson

from shadoweval.retry import parse_retry_after
from shadoweval.types import Json

_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0


class EndpointError(Exception):
    """The endpoint did not give a usable answer (after retries where retrying made sense)."""


class Endpoint:
    """POSTs JSON to one URL with its own credentials; one aiohttp session per endpoint."""

    def __init__(
        self,
        url: str,
        *,
        api_key_env: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        concurrency: int = 8,
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key_env and os.environ.get(api_key_env):
            self._headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_retries = max_retries
        self._limit = concurrency
        self._session: aiohttp.ClientSession | None = None
        self.attempts = 0  # every HTTP attempt, retries included (tests and details)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit), timeout=self._timeout
            )
        return self._session

    async def post(self, body: Json) -> Json:
        payload = orjson.dumps(body)
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            retry_after: str | None = None
            try:
                async with self._client().post(self.url, data=payload, headers=self._headers) as r:
                    raw = await r.read()
                    if r.status == 429 or r.status >= 500:
                        error = f"HTTP {r.status}"
                        retry_after = r.headers.get("Retry-After")
                    elif r.status >= 400:
                        raise EndpointError(
                            f"HTTP {r.status}: {raw[:200].decode(errors='replace')}"
                        )
                    else:
                        try:
                            data: Any = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            raise EndpointError("the answer is not JSON") from None
                        if not isinstance(data, dict):
                            raise EndpointError("the answer is not a JSON object")
                        return data
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt > self._max_retries:
                raise EndpointError(f"{error} (after {attempt} attempts)")
            after = parse_retry_after(retry_after)
            if after is None or after > _MAX_RETRY_AFTER_S:
                after = random.uniform(0, min(_MAX_BACKOFF_S, _BACKOFF_S * 2 ** (attempt - 1)))
            await asyncio.sleep(after)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
