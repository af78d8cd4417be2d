"""Clients' demand in a simulation: how many requests arrive each minute, and how long they are.

- Arrivals are Poisson, at a rate that follows the profile's day (UTC hours) and week, normalised so
  that its mean over a week is 1: `rate_rps` is the mean over a week at the market's middle price.
- Demand is elastic to our price: rate x (our price / the market's middle price) ** -elasticity, both
  priced on the mean request (prompt and completion tokens), so a cheaper provider draws more traffic
  and dynamic pricing has something to trade against.
- Prompt and completion lengths are log-normal per request (means 400 and 200 tokens, a chat mix);
  a minute's sum over n requests is drawn from the normal with the sum's mean and variance.

Deterministic for a seed: one random.Random drives every draw, in a fixed order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from backend.catalogue.schema import ModelEntry

MEAN_PROMPT = 400.0
MEAN_COMPLETION = 200.0
CV_PROMPT = 1.2  # coefficient of variation: chat prompts vary a lot (a greeting to a pasted page)
CV_COMPLETION = 0.9

# Hourly shape of a day (UTC), before normalising: quiet at night, busy in the working day of
# Europe and the Americas, which overlap in the afternoon UTC.
_BUSINESS_DAY = (0.35, 0.3, 0.28, 0.28, 0.3, 0.38, 0.55, 0.8, 1.05, 1.25, 1.35, 1.4,
                 1.45, 1.55, 1.65, 1.7, 1.65, 1.5, 1.3, 1.1, 0.9, 0.7, 0.55, 0.42)
_FLAT_DAY = (1.0,) * 24
# Monday .. Sunday
_BUSINESS_WEEK = (1.08, 1.1, 1.1, 1.08, 1.02, 0.8, 0.82)
_WEEKEND_WEEK = (0.88, 0.88, 0.9, 0.92, 1.0, 1.22, 1.2)
_FLAT_WEEK = (1.0,) * 7
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "business": (_BUSINESS_DAY, _BUSINESS_WEEK),
    "flat": (_FLAT_DAY, _FLAT_WEEK),
    "weekend": (_BUSINESS_DAY, _WEEKEND_WEEK),
}


@dataclass(frozen=True, slots=True)
class Arrivals:
    requests: int
    prompt_tokens: int
    completion_tokens: int


class Demand:
    def __init__(self, profile: str, *, seed: int, elasticity: float = 1.0) -> None:
        if profile not in PROFILES:
            raise ValueError(f"demand: unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
        day, week = PROFILES[profile]
        mean = sum(d * w for d in day for w in week) / (24 * 7)
        self._shape = [[d * w / mean for d in day] for w in week]  # [weekday][hour], mean 1
        self.elasticity = elasticity
        self._rng = random.Random(seed)

    def shape(self, us: int) -> float:
        """The profile's multiplier at that instant (UTC): mean 1 over a week."""
        hours = us // 3_600_000_000
        weekday = (hours // 24 + 3) % 7  # 1970-01-01 was a Thursday
        return self._shape[weekday][hours % 24]

    @staticmethod
    def market_middle(model: ModelEntry) -> float:
        """The market's middle price of a mean request, nano-USD."""
        m = model.market
        return (MEAN_PROMPT * (m.prompt_min + m.prompt_max) / 2
                + MEAN_COMPLETION * (m.completion_min + m.completion_max) / 2) / 1_000_000

    def price_factor(self, model: ModelEntry, prompt_per_mtok: int, completion_per_mtok: int) -> float:
        ours = (MEAN_PROMPT * prompt_per_mtok + MEAN_COMPLETION * completion_per_mtok) / 1_000_000
        middle = self.market_middle(model)
        if ours <= 0 or middle <= 0 or self.elasticity == 0:
            return 1.0
        return (ours / middle) ** -self.elasticity

    def draw(self, rate_per_s: float, seconds: float) -> Arrivals:
        n = self._poisson(rate_per_s * seconds)
        if n == 0:
            return Arrivals(0, 0, 0)
        return Arrivals(n, self._sum(n, MEAN_PROMPT, CV_PROMPT), self._sum(n, MEAN_COMPLETION, CV_COMPLETION))

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 50:  # the normal approximation is within a fraction of a percent here
            return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1

    def _sum(self, n: int, mean: float, cv: float) -> int:
        """The sum of n log-normal lengths with that mean and coefficient of variation."""
        sd = mean * cv * math.sqrt(n)
        return max(n, round(self._rng.gauss(n * mean, sd)))
