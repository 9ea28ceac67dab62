"""Typed configuration: YAML files + ``SHADOWEVAL_*`` environment overrides, validated once.

Every section is a frozen pydantic model with ``extra="forbid"`` so a typo is an error that
names the key. Each file's shape lives with its owner:

- ``base``: ConfigError, the model base, value checks, env overrides, YAML reading, errors
- ``proxy``: the proxy's file (``Config``, ``parse``, ``load``) and its sections
- ``report``: its ``report`` section; ``report_settings``: the file ``shadoweval report`` reads
- ``probes``: its ``probes`` section
- ``kafka``: Kafka security and topic names, shared by the proxy's and the scorer's clients
- ``scorer``: the file of ``shadoweval score``
- ``review``: the file of ``shadoweval review`` and ``shadoweval dataset``
"""

from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import Config, load, parse
from shadoweval.config.report_settings import load_report_settings
from shadoweval.config.review import ReviewConfig, load_review
from shadoweval.config.scorer import ScorerConfig, load_scorer

__all__ = [
    "Config",
    "ConfigError",
    "ReviewConfig",
    "ScorerConfig",
    "load",
    "load_report_settings",
    "load_review",
    "load_scorer",
    "parse",
]
