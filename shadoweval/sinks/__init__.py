"""Sinks for pair records. ``build`` picks one from config."""

from __future__ import annotations

from shadoweval.config.proxy import FileSink as FileSinkConfig
from shadoweval.config.proxy import KafkaSink as KafkaSinkConfig
from shadoweval.config.proxy import SinkConfig
from shadoweval.metrics import Metrics
from shadoweval.sinks.base import Sink
from shadoweval.sinks.file import FileSink
from shadoweval.sinks.memory import MemorySink

__all__ = ["FileSink", "MemorySink", "Sink", "build"]


def build(cfg: SinkConfig, metrics: Metrics) -> Sink:
    if isinstance(cfg, FileSinkConfig):
        return FileSink(cfg, metrics)
    if isinstance(cfg, KafkaSinkConfig):
        # Imported here: aiokafka is the optional extra "kafka" (ConfigError if missing).
        from shadoweval.sinks.kafka import KafkaSink

        return KafkaSink(cfg, metrics)
    return MemorySink(cfg.max_records, metrics)
