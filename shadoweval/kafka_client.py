"""aiokafka connection options shared by every Kafka user: the proxy's sink, the scorer's
source and sink, and the dataset builder. Reads credential files; errors name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from shadoweval.config.base import ConfigError
from shadoweval.config.kafka import KafkaSecurity


class KafkaConnection(Protocol):
    @property
    def bootstrap_servers(self) -> str | list[str]: ...
    @property
    def client_id(self) -> str: ...
    @property
    def request_timeout_ms(self) -> int: ...
    @property
    def security(self) -> KafkaSecurity: ...


def require_aiokafka(extra: str = "kafka") -> Any:
    """The aiokafka module, or a ConfigError naming the extra that brings it."""
    try:
        import aiokafka
    except ImportError as exc:
        raise ConfigError(f"Kafka needs aiokafka: pip install 'shadoweval[{extra}]'") from exc
    return aiokafka


def client_options(cfg: KafkaConnection, key: str) -> dict[str, Any]:
    """Connection and security keyword arguments for aiokafka clients; ``key`` names the
    config section in errors (``sink``, ``source``, ...)."""
    from aiokafka.helpers import create_ssl_context

    sec = cfg.security
    opts: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "client_id": cfg.client_id,
        "request_timeout_ms": cfg.request_timeout_ms,
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        try:
            opts["ssl_context"] = create_ssl_context(
                cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}.security: cannot load the TLS files: {exc}") from None
    if sec.sasl_mechanism is not None:
        assert sec.sasl_password_file is not None  # enforced by the config model
        where = f"{key}.security.sasl_password_file"
        try:
            password = Path(sec.sasl_password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read {sec.sasl_password_file}: {exc.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"{where}: {sec.sasl_password_file} is empty")
        opts["sasl_mechanism"] = sec.sasl_mechanism
        opts["sasl_plain_username"] = sec.sasl_username
        opts["sasl_plain_password"] = password
    return opts
