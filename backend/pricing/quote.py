"""The price of a model right now, snapshotted for one request.

A model's quote is its catalogue list price until the pricing engine (engine.py) sets another. The
hot path is one dict lookup: the engine replaces a model's Quote (a new frozen object, one dict
assignment), so a request that snapshotted the old one keeps it to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from backend.catalogue import ModelEntry
from backend.money import cost_of_tokens


@dataclass(frozen=True, slots=True)
class Quote:
    model: str
    prompt_per_mtok: int  # nano-USD per million prompt tokens
    completion_per_mtok: int

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        return cost_of_tokens(prompt_tokens, self.prompt_per_mtok) + cost_of_tokens(
            completion_tokens, self.completion_per_mtok
        )


class Pricer:
    def __init__(self) -> None:
        self._cache: dict[str, Quote] = {}

    def quote(self, model: ModelEntry) -> Quote:
        q = self._cache.get(model.id)
        if q is None:
            q = self._cache[model.id] = Quote(model.id, model.price.prompt, model.price.completion)
        return q

    def set(self, quote: Quote) -> None:
        """The model's price from now on (the pricing engine's)."""
        self._cache[quote.model] = quote


def usd_per_token(nano_per_mtok: int) -> str:
    """A price per million tokens in nano-USD as USD per token, a decimal string (OpenRouter's
    `pricing` fields): 140_000_000 -> "0.00000014". Exact: nano-USD per 1M tokens is 1e-15 USD per token."""
    return format(Decimal(nano_per_mtok).scaleb(-15).normalize(), "f")
