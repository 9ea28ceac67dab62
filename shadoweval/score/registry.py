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
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TypeVar

from shadoweval.config import ConfigError, ScorerConfig, ScorerSpec
from shadoweval.score.base import Scorer, ScorerContext, ScorerFactory

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "shadoweval.scorers"
_BUILTIN_MODULES = ("match", "lexical", "structured", "safety", "semantic", "judge")

F = TypeVar("F", bound=ScorerFactory)


@dataclass(frozen=True, slots=True)
class Registered:
    factory: ScorerFactory
    origin: str  # "builtin" or the entry point's value
    # The family's default sampling rate (judge, semantic); None = 1.
    default_rate: Callable[[ScorerConfig], float] | None = None
    # Config section whose credentials it needs ("judge", "semantic").
    family: str | None = None


_REGISTRY: dict[str, Registered] = {}
_builtins_loaded = False


def scorer(
    name: str,
    *,
    default_rate: Callable[[ScorerConfig], float] | None = None,
    family: str | None = None,
) -> Callable[[F], F]:
    """Register a built-in factory under ``name`` (a decorator)."""

    def register(factory: F) -> F:
        _REGISTRY[name] = Registered(factory, "builtin", default_rate, family)
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
        reg = Registered(factory, ep.value)
        _REGISTRY[name] = reg
        return reg
    known = ", ".join(available())
    raise ConfigError(f"unknown scorer {name!r} (available: {known})")


@dataclass(frozen=True, slots=True)
class BuiltScorer:
    """A configured scorer instance, as the runner calls it."""

    name: str
    fn: Scorer
    sample_rate: float
    family: str | None

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
    return BuiltScorer(spec.label, fn, rate, reg.family)
