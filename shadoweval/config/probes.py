"""The ``probes`` section: red-team probe suites (shadoweval.probes)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from shadoweval.config.base import Model, check_name, check_upstream_headers, check_url

# In probes.suites (or `probe --suite`): the suites shipped with shadoweval (config/probes;
# package data in a wheel), wherever it is installed. A directory of that name: ./builtin.
BUILTIN_SUITES = "builtin"

ProbeTransform = Literal[
    "base64", "rot13", "leetspeak", "casing", "translation", "prefix_injection"
]
PROBE_TRANSFORMS: tuple[ProbeTransform, ...] = get_args(ProbeTransform)


class ProbeBaseline(Model):
    """Where the baseline's probes go: the primary's upstream called directly (or another URL),
    never through the proxy port, so probes are never user traffic."""

    # Unset: primary.url.
    url: str | None = None
    # The proxy holds no caller credentials: the baseline needs its own key when it wants one.
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(120.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    _headers = field_validator("headers")(check_upstream_headers)


class Probes(Model):
    """Red-team probe suites sent to the baseline and the candidates (never to users).

    ``shadoweval probe`` runs them once; with ``enabled`` the proxy also runs them in the
    background at ``rate_per_minute``.
    """

    enabled: bool = False
    # Suite files or directories of *.yaml; relative paths are relative to the config file.
    # "builtin" is the shipped suites (BUILTIN_SUITES).
    suites: list[str] = Field(default_factory=list)
    # Probes started per minute by the background scheduler (each goes to every target).
    rate_per_minute: float = Field(6.0, gt=0, le=6000)
    # Probes in flight at once; a tick that finds them all busy is skipped and counted.
    concurrency: int = Field(4, ge=1, le=256)
    # Candidates probed besides the baseline; unset = every role: candidate.
    targets: list[str] | None = None
    # Only these categories; empty = all.
    categories: list[str] = Field(default_factory=list)
    # Planted secret for extraction probes; unset = a random one per run.
    canary: str | None = Field(None, min_length=8)
    # The production system prompt the attacks run against ({system_prompt} in suites).
    system_prompt: str | None = None
    # The `model` of probe requests (candidates rewrite it as usual); set the production name.
    model: str | None = None
    # Merged into every probe request (e.g. temperature, max_tokens).
    params: dict[str, Any] = Field(default_factory=dict)
    # Variants generated from each base probe (a suite or probe can narrow them).
    transforms: list[ProbeTransform] = Field(default_factory=lambda: list(PROBE_TRANSFORMS))
    # Seed of the variant generator and of the background schedule's order.
    seed: int = 0
    baseline: ProbeBaseline = Field(default_factory=ProbeBaseline)

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: list[str]) -> list[str]:
        return [check_name(v) for v in value]

    @field_validator("canary")
    @classmethod
    def _canary_shape(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in "{}\r\n")):
            raise ValueError("must be one line without braces")
        return value

    @model_validator(mode="after")
    def _suites_when_enabled(self) -> Probes:
        if self.enabled and not self.suites:
            raise ValueError("suites: at least one suite file or directory is needed when enabled")
        return self
