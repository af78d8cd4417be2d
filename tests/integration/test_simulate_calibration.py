"""Calibration against seed 001 section 4 ("Scenario: Single RTX 4090 Instance", Llama 3.1 8B):

    cost $0.34/h x 24 h = $8.16/day (+10 % buffer: ~$9.00)
    utilization  10 %: 20M tokens,  $15-20/day     25 %:  50M tokens,  $35-45/day
                 50 %: 100M tokens, $70-90/day     75 %: 150M tokens, $105-135/day
    break-even utilization ~15-20 %

The seed is inconsistent with itself, and the simulator is not bent to hide it (docs/simulate.md):
- its revenue column prices tokens at $0.70-0.90 per million (e.g. $70-90 for 100M tokens), where
  its own Appendix A gives Llama 3.1 8B's market as $0.10-0.20 prompt / $0.20-0.40 completion per
  million, which is what the catalogue lists it at ($0.14 / $0.28). At those prices one RTX 4090 earns
  ~$45 a day at full load, so break-even is ~18 %, inside the seed's 15-20 %; the revenue column is
  reached only at the price it implies, which the test pins ($0.70 per million, both sides);
- its tokens column puts a full card at 200M tokens a day; the catalogue's throughput (38 tok/s single
  stream, 64 sequences, prefill 200x faster) with a 400 + 200 token chat mix gives ~240M: within 20 %.
"""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.settings import Settings
from backend.simulate.plan import SimPlan, parse_fleet
from backend.simulate.run import run_simulation

SEED_ROWS = [  # utilization, tokens a day, revenue a day (USD): seed 001 section 4
    (0.10, 20e6, (15, 20)),
    (0.25, 50e6, (35, 45)),
    (0.50, 100e6, (70, 90)),
    (0.75, 150e6, (105, 135)),
]
USD = 1_000_000_000


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(None)


def _day(tmp_path, catalogue, load: float, **plan):
    # Flat demand and no price elasticity: the utilization is the one asked for, all day.
    p = SimPlan(days=1, fleet=parse_fleet("rtx4090:runpod:1:llama-3.1-8b-instruct", catalogue), demand="flat",
                load=load, elasticity=0.0, autoscale=False, dynamic_pricing=False, seed=11, **plan)
    return run_simulation(p, Settings(data_dir=tmp_path / f"op-{load}"), catalogue)


@pytest.mark.parametrize(("utilization", "seed_tokens", "seed_revenue"), SEED_ROWS)
def test_one_rtx4090_serving_llama_matches_seed_001(tmp_path, catalogue, utilization, seed_tokens, seed_revenue):
    at_list = _day(tmp_path / "list", catalogue, utilization)
    total = at_list.grand_total
    # Cost: $0.34/h all day, within the seed's $8.16-9.00.
    assert 8.16 * USD <= total.gpu_cost_nano <= 9.00 * USD
    # The utilization reached is the one asked for.
    assert total.utilization == pytest.approx(utilization, abs=0.02)
    # Tokens: the catalogue's card serves up to 20 % more than the seed's 200M a day at full load.
    assert seed_tokens <= total.tokens <= seed_tokens * 1.25
    # Break-even at the list price: inside the seed's 15-20 %.
    (be,) = at_list.break_even
    assert 0.15 <= be.break_even <= 0.20
    # At list prices the revenue is far under the seed's column (the seed's price inconsistency)...
    assert total.revenue_nano < seed_revenue[0] * USD * 0.5
    # ...and at the price that column implies, it falls within its range.
    pinned = _day(tmp_path / "pinned", catalogue, utilization, pin=("0.70", "0.70"))
    assert seed_revenue[0] * USD <= pinned.grand_total.revenue_nano <= seed_revenue[1] * USD
    assert pinned.grand_total.profit_nano == pinned.grand_total.revenue_nano - pinned.grand_total.gpu_cost_nano
