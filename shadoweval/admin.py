"""Optional bearer-token protection of the admin port.

/healthz and /readyz stay open: kubelet probes carry no credentials, and they reveal
nothing but liveness. Everything else (/metrics, and any later debug path) needs
``Authorization: Bearer <admin token>``, compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import AdminListen

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_MIN_TOKEN = 16


def admin_token(cfg: AdminListen, environ: Mapping[str, str] | None = None) -> str | None:
    """The configured token; a ConfigError when token_env names a missing or weak one, so a
    forgotten secret stops the start instead of leaving /metrics open."""
    if cfg.token is not None:
        return cfg.token.get_secret_value()
    if not cfg.token_env:
        return None
    value = (os.environ if environ is None else environ).get(cfg.token_env, "")
    if len(value) < _MIN_TOKEN:
        raise ConfigError(
            f"admin.token_env: ${cfg.token_env} is unset or shorter than {_MIN_TOKEN} characters"
        )
    return value


def bearer_auth(token: str) -> Middleware:
    expected = b"Bearer " + token.encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "a bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="shadoweval-admin"'},
            )
        return await handler(request)

    return auth
