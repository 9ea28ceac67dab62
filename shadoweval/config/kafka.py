"""Kafka settings shared by the proxy's pair sink and the scorer's source and sink."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import model_validator

from shadoweval.config.base import Model

# Kafka's own rule for topic names (kafka.common.internals.Topic).
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def split_servers(value: Any) -> Any:
    """``bootstrap_servers`` as a list: a comma-separated string (an environment variable) split."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


def check_servers(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("needs at least one host:port")
    for server in value:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in server:
            raise ValueError(f"{server!r} is not host:port")
    return value


def check_topic(value: str) -> str:
    if not _TOPIC_RE.match(value) or value in (".", ".."):
        raise ValueError("must be 1-249 characters of letters, digits, '.', '_', '-'")
    return value


class KafkaSecurity(Model):
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    # A file, not a value: the secret stays out of config files, env dumps and logs.
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism is required when protocol is {self.protocol}")
        if self.sasl_mechanism is not None:
            if not sasl:
                raise ValueError(
                    f"sasl_mechanism is set but protocol is {self.protocol} "
                    "(use SASL_SSL, or SASL_PLAINTEXT on a trusted network)"
                )
            if not self.sasl_username:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username")
            if not self.sasl_password_file:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_password_file")
        elif self.sasl_username or self.sasl_password_file:
            raise ValueError("sasl_username/sasl_password_file are set but sasl_mechanism is not")
        tls = self.protocol in ("SSL", "SASL_SSL")
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        stray = [name for name, value in files.items() if value]
        if stray and not tls:
            raise ValueError(f"{', '.join(stray)} set but protocol {self.protocol} has no TLS")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        return self
