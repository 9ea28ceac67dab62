"""Logging set-up shared by every process: one format, third-party loggers kept out of debug.

Libraries log what they handle: at debug, aiokafka's producer logs every record it sends
(``Sending (key=... value=...)``), so a record body would reach stderr. Their loggers are
capped at INFO whatever ``log_level`` says, and a filter on the handlers drops their debug
records even when someone lowers a library logger's own level.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

# Logger namespaces of libraries that may log request or record contents at debug.
THIRD_PARTY = ("aiokafka", "kafka", "opentelemetry", "urllib3", "grpc")


def _third_party(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in THIRD_PARTY)


class ThirdPartyDebugFilter(logging.Filter):
    """Lets a library's record through only at INFO or above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or not _third_party(record.name)


def configure(level: str, fmt: str, *, force: bool = False, stream: TextIO | None = None) -> None:
    logging.basicConfig(level=level.upper(), format=fmt, stream=stream or sys.stderr, force=force)
    cap = max(logging.INFO, logging.getLevelName(level.upper()))
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(cap)
    flt = ThirdPartyDebugFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ThirdPartyDebugFilter) for f in handler.filters):
            handler.addFilter(flt)
