"""Scorers by name: a dict of built-in factories plus the ``shadoweval.scorers`` entry points.

A third-party package registers a factory in its ``pyproject.toml``::

    [project.entry-points."shadoweval.scorers"]
    my_scorer = "my_package.scoring:my_scorer"

where ``my_scorer(ctx, **options)`` returns a :class:`~shadoweval.score.base.Scorer`.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar

from shadoweval.config.base import ConfigError
from shadoweval.config.scorer import ScorerConfig, ScorerSpec
from shadoweval.score.base import Scorer, ScorerContext, ScorerFactory
from shadoweval.types import Json

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "shadoweval.scorers"
_BUILTIN_MODULES = ("match", "lexical", "structured", "safety", "semantic", "judge")

F = TypeVar("F", bound=ScorerFactory)

Kind = Literal["quality", "safety"]
# What a ``side: pair`` score measures. agreement: similarity to the primary (the primary
# against itself scores 1, so only a control can tell nondeterminism from regression);
# preference: win/tie/loss (0.5 = a tie); flag: a harm flag the comparison raises (e.g. the
# candidate refused what the primary answered), its reverse counted by ``reverse_label``.
PairMeaning = Literal["agreement", "preference", "flag"]


@dataclass(frozen=True, slots=True)
class ScorerInfo:
    """What a scorer is, declared once where it is registered and carried by every score
    record, so the report and the alarm classify a plugin (or a relabelled) scorer as its
    author meant, not from a list of names."""

    kind: Kind = "quality"
    pair: PairMeaning = "agreement"
    # Quality: a higher value is better. Safety values are flags (1 = raised).
    higher_is_better: bool = True
    # Safety: a raised flag is harm. Not for refusal: refusing a harmful probe is right.
    harm: bool = False
    # A pair flag's label for the opposite discordance (the primary did what the flag
    # blames the candidate for): the other half of a paired test.
    reverse_label: str | None = None

    def as_dict(self) -> Json:
        out: Json = {"kind": self.kind, "pair": self.pair}
        out["higher_is_better"] = self.higher_is_better
        out["harm"] = self.harm
        if self.reverse_label is not None:
            out["reverse_label"] = self.reverse_label
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ScorerInfo:
        """From a score record's ``scorer_info``; anything malformed reads as the default."""
        if not isinstance(data, dict):
            return DEFAULT_INFO
        kind = data.get("kind")
        pair = data.get("pair")
        reverse = data.get("reverse_label")
        return cls(
            kind=kind if kind in ("quality", "safety") else "quality",
            pair=pair if pair in ("agreement", "preference", "flag") else "agreement",
            higher_is_better=data.get("higher_is_better") is not False,
            harm=data.get("harm") is True,
            reverse_label=reverse if isinstance(reverse, str) else None,
        )


DEFAULT_INFO = ScorerInfo()
# Which quality scorer leads when a rule or the alarm names none: the most semantic first
# (registered names). The report's headline and decisive metric and the alarm's monitored
# scorer both read this order; unranked scorers follow.
QUALITY_PREFERENCE = (
    "judge_pairwise",
    "judge_single",
    "semantic",
    "rouge_l",
    "token_f1",
    "chrf",
    "normalized",
    "exact",
    "tool_calls",
    "json_schema",
    "json_valid",
)
SAFETY_FLAG = ScorerInfo(kind="safety", harm=True, higher_is_better=False)
PREFERENCE = ScorerInfo(pair="preference")


@dataclass(frozen=True, slots=True)
class Registered:
    factory: ScorerFactory
    origin: str  # "builtin" or the entry point's value
    # The family's default sampling rate (judge, semantic); None = 1.
    default_rate: Callable[[ScorerConfig], float] | None = None
    # Config section whose credentials it needs ("judge", "semantic").
    family: str | None = None
    info: ScorerInfo = field(default=DEFAULT_INFO)


_REGISTRY: dict[str, Registered] = {}
_builtins_loaded = False


def scorer(
    name: str,
    *,
    default_rate: Callable[[ScorerConfig], float] | None = None,
    family: str | None = None,
    info: ScorerInfo = DEFAULT_INFO,
) -> Callable[[F], F]:
    """Register a built-in factory under ``name`` (a decorator)."""

    def register(factory: F) -> F:
        _REGISTRY[name] = Registered(factory, "builtin", default_rate, family, info)
        return factory

    return register


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"shadoweval.score.scorers.{module}")
        _builtins_loaded = True


def available() -> dict[str, str]:
    """Every scorer name that a config may use, with where it comes from."""
    _load_builtins()
    names = {name: reg.origin for name, reg in _REGISTRY.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return dict(sorted(names.items()))


def lookup(name: str) -> Registered:
    """The factory registered as ``name``: a built-in, else an entry point (loaded now)."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin is a config problem, named as such
            raise ConfigError(f"scorer {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
        if not callable(factory):
            raise ConfigError(f"scorer {name!r} ({ep.value}) is not callable")
        # A plugin declares what it is with a ``scorer_info`` attribute on its factory.
        declared = getattr(factory, "scorer_info", None)
        if not isinstance(declared, ScorerInfo):
            declared = ScorerInfo.from_dict(declared) if declared is not None else DEFAULT_INFO
        reg = Registered(factory, ep.value, info=declared)
        _REGISTRY[name] = reg
        return reg
    known = ", ".join(available())
    raise ConfigError(f"unknown scorer {name!r} (available: {known})")


def info_of(name: str) -> ScorerInfo:
    """What ``name`` is when a score record does not say (records written before scorers
    declared it): the built-in's declaration, else the default (a quality scorer)."""
    _load_builtins()
    reg = _REGISTRY.get(name)
    if reg is not None:
        return reg.info
    if name.startswith("human_pairwise"):
        return PREFERENCE
    return SAFETY_FLAG if name == "human_safety" else DEFAULT_INFO


@dataclass(frozen=True, slots=True)
class BuiltScorer:
    """A configured scorer instance, as the runner calls it."""

    name: str
    fn: Scorer
    sample_rate: float
    family: str | None
    info: ScorerInfo = DEFAULT_INFO

    def sampled(self, pair_id: str) -> bool:
        """A stable decision per (pair, scorer): a re-delivered pair gets the same scorers,
        so its score ids are the same and the re-score replaces the first one."""
        if self.sample_rate >= 1.0:
            return True
        if self.sample_rate <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.name}\0{pair_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.sample_rate * 2**64


def build(spec: ScorerSpec, ctx: ScorerContext, where: str) -> BuiltScorer:
    """Instantiate ``spec``; every problem is a ConfigError naming ``where`` (its config key)."""
    try:
        reg = lookup(spec.use)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        fn = reg.factory(ctx, **spec.options)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.options: {exc}") from None
    rate = spec.sample_rate
    if rate is None:
        rate = reg.default_rate(ctx.config) if reg.default_rate else 1.0
    return BuiltScorer(spec.label, fn, rate, reg.family, reg.info)
