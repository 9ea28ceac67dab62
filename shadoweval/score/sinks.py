"""Where score records go: a Kafka topic (keyed by score_id) or a JSONL file.

``write`` returns only once the records are durable (acknowledged by Kafka, or fsynced):
the runner commits the pairs' offsets after that, never before.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Protocol

import orjson

from shadoweval.config.scorer import FileScoreSink as FileScoreSinkConfig
from shadoweval.config.scorer import KafkaScoreSink as KafkaScoreSinkConfig
from shadoweval.config.scorer import ScoreSinkConfig
from shadoweval.kafka_client import client_options
from shadoweval.score.consumer import require_aiokafka
from shadoweval.types import Json

_HEADERS = [("schema", b"shadoweval.score.v1"), ("content-type", b"application/json")]


class ScoreSink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def write(self, records: list[Json]) -> None:
        """Durably store ``records``; raises on failure (the caller retries)."""

    async def close(self) -> None: ...


class FileScoreSink:
    """Appends JSONL; a re-scored pair appends again with the same score ids (readers keep
    the last record per score_id)."""

    def __init__(self, cfg: FileScoreSinkConfig) -> None:
        self.name = "file"
        self.path = Path(cfg.path)

    async def start(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

    async def write(self, records: list[Json]) -> None:
        if records:
            data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
            await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    async def close(self) -> None:
        return None


class KafkaScoreSink:
    """Produces to the scores topic with the record's score_id as key: on a compacted topic
    (cleanup.policy=compact) Kafka itself keeps only the latest score per id."""

    def __init__(self, cfg: KafkaScoreSinkConfig) -> None:
        self.name = "kafka"
        self._cfg = cfg
        self._producer: Any = None

    async def start(self) -> None:
        aiokafka = require_aiokafka()
        cfg = self._cfg
        self._producer = aiokafka.AIOKafkaProducer(
            **client_options(cfg, "sink"),
            acks=cfg.acks,
            enable_idempotence=cfg.enable_idempotence,
            compression_type=None if cfg.compression == "none" else cfg.compression,
            linger_ms=cfg.linger_ms,
            max_request_size=cfg.max_request_size,
        )
        await self._producer.start()

    async def write(self, records: list[Json]) -> None:
        if not records:
            return
        topic = self._cfg.topic
        futures = []
        for rec in records:
            futures.append(
                await self._producer.send(
                    topic, orjson.dumps(rec), key=rec["score_id"].encode(), headers=_HEADERS
                )
            )
        # Every record acknowledged, or the first error (the whole batch is retried).
        await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build(cfg: ScoreSinkConfig) -> ScoreSink:
    if isinstance(cfg, KafkaScoreSinkConfig):
        return KafkaScoreSink(cfg)
    return FileScoreSink(cfg)
