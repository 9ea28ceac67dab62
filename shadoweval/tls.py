"""TLS to the upstreams: one ``ssl.SSLContext`` per upstream, built from its ``tls`` section."""

from __future__ import annotations

import logging
import ssl

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import UpstreamTLS

log = logging.getLogger(__name__)


def client_context(tls: UpstreamTLS, url: str, where: str) -> ssl.SSLContext | None:
    """The context for ``url`` (None for http://); a ConfigError naming ``where`` when a
    file cannot be loaded, so a bad certificate stops the start before any port is bound."""
    if not url.startswith("https://"):
        return None
    try:
        # Verifies the chain and the host name (TLS 1.2+), like any HTTPS client.
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.client_cert:
            ctx.load_cert_chain(tls.client_cert, tls.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}.tls: cannot load certificates: {exc}") from None
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.warning("%s.tls.verify is false: the upstream's certificate is not checked", where)
    return ctx
