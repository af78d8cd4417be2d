"""The price of a model right now, snapshotted for one request.

Until the pricing engine exists, a model's price is its catalogue list price.
"""

from __future__ import annotations

from dataclasses import dataclass

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
