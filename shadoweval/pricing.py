"""Cost of a request in USD from the pricing table (config ``pricing`` / ``pricing_file``)."""

from __future__ import annotations

from functools import lru_cache

from shadoweval.config.proxy import ModelPrice, Pricing
from shadoweval.types import Outcome, Usage

_PER_TOKEN = 1e-6


class PriceTable:
    def __init__(self, cfg: Pricing) -> None:
        self._models = dict(cfg.models)
        # Longest keys first, so "gpt-4o-mini" wins over "gpt-4o" for "gpt-4o-mini-2024".
        self._prefixes = sorted(self._models, key=len, reverse=True)
        self.hourly = {name: u.per_hour for name, u in cfg.upstreams.items()}
        self.lookup = lru_cache(maxsize=1024)(self._lookup)

    def _lookup(self, model: str) -> ModelPrice | None:
        price = self._models.get(model)
        if price is not None:
            return price
        for key in self._prefixes:
            if model.startswith(key):
                return self._models[key]
        return None

    def cost(self, model: str | None, usage: Usage | None) -> float | None:
        """USD for one call, or None when the model is not priced or usage is unknown."""
        if not model or usage is None:
            return None
        price = self.lookup(model)
        if price is None:
            return None
        cached = usage.cached_input_tokens or 0
        written = usage.cache_write_input_tokens or 0
        fresh = max((usage.input_tokens or 0) - cached - written, 0)
        cached_price = (
            price.cached_input_per_mtok
            if price.cached_input_per_mtok is not None
            else price.input_per_mtok
        )
        write_price = (
            price.cache_write_input_per_mtok
            if price.cache_write_input_per_mtok is not None
            else price.input_per_mtok
        )
        return _PER_TOKEN * (
            fresh * price.input_per_mtok
            + cached * cached_price
            + written * write_price
            + (usage.output_tokens or 0) * price.output_per_mtok
        )

    def annotate(self, outcome: Outcome, requested_model: object) -> Outcome:
        """Set ``outcome.cost_usd``; the answer's model wins over the requested one."""
        model = outcome.model or (requested_model if isinstance(requested_model, str) else None)
        outcome.cost_usd = self.cost(model, outcome.usage)
        return outcome
