"""The file ``shadoweval report --config`` reads: a whole proxy config, or its report
sections alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError

from shadoweval.config.base import (
    ConfigError,
    EnvOrigins,
    Model,
    apply_env,
    format_errors,
    read_yaml,
)
from shadoweval.config.proxy import Config, Pricing, Redaction, load, load_pricing
from shadoweval.config.report import Report


class ReportSettings(Model):
    """A file for `shadoweval report` alone: the report-related sections of a proxy config."""

    report: Report = Field(default_factory=Report)
    pricing: Pricing = Field(default_factory=Pricing)
    pricing_file: str | None = None
    redaction: Redaction = Field(default_factory=Redaction)


def load_report_settings(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> ReportSettings:
    """A full proxy config (it has ``primary``) or a file with only the report's sections."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw, dict) and "primary" in raw:
        cfg = load(path, environ)
        return ReportSettings(report=cfg.report, pricing=cfg.pricing, redaction=cfg.redaction)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {path}: the top level must be a mapping")
    if raw.get("pricing_file") and "pricing" not in raw:
        raw["pricing"] = load_pricing(path.parent / str(raw["pricing_file"]))
    origins: EnvOrigins = {}
    env = os.environ if environ is None else environ
    raw = apply_env(raw, env, Config.model_fields, origins=origins)
    # Overrides of the proxy's own sections (SHADOWEVAL_PRIMARY__URL, ...) do not apply here.
    ours = ReportSettings.model_fields
    raw = {k: v for k, v in raw.items() if k in ours or k not in Config.model_fields}
    try:
        return ReportSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, str(path), origins)) from None
