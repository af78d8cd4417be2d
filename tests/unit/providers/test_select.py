"""cheapest_offer: memory, compute capability, kinds, ties, and what it says when nothing fits."""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.fleet.providers import NoOfferFits, Offer, cheapest_offer, fitting_offers

CAT = load_catalogue()
USD = 10**9


def offer(gpu: str | None, count: int = 1, usd: str = "1", *, provider: str = "runpod", kind: str = "on_demand",
          offer_id: str | None = None, vram: float | None = None) -> Offer:
    card = CAT.gpu_by_id.get(gpu) if gpu else None
    return Offer(provider=provider, offer_id=offer_id or f"{gpu}x{count}-{kind}-{usd}", gpu=gpu,
                 gpu_name=card.name if card else "Mystery GPU", gpu_count=count,
                 vram_gb=vram if vram is not None else float(card.vram_gb if card else 48),
                 price_per_hour=int(float(usd) * 100) * USD // 100, kind=kind)


def test_the_cheapest_card_with_enough_memory_wins():
    offers = [offer("a100-80gb", usd="1.89"), offer("rtx4090", usd="0.34"), offer("rtx3090", usd="0.19"),
              offer("l4", usd="0.15")]
    # llama-3.1-8b at bf16 needs 18.5 GB: the L4 (24 GB) is cheapest of those that hold it
    assert cheapest_offer(offers, "llama-3.1-8b-instruct", CAT).gpu == "l4"
    # qwen2.5-14b at fp8 needs 17 GB, at bf16 34 GB: only the A100 holds the latter
    assert cheapest_offer(offers, "qwen2.5-14b-instruct", CAT, "bf16").gpu == "a100-80gb"


def test_memory_adds_up_across_the_gpus_of_one_machine():
    offers = [offer("rtx4090", 1, "0.34"), offer("rtx4090", 2, "0.68"), offer("a100-80gb", 1, "1.89")]
    best = cheapest_offer(offers, "llama-3.1-70b-instruct", CAT)  # int4: 40.6 GB
    assert (best.gpu, best.gpu_count) == ("rtx4090", 2)


def test_fp8_needs_ampere_or_newer_but_bf16_runs_anywhere():
    old = offer("gtx1050ti", usd="0.05")
    new = offer("rtx3090", usd="0.19")
    assert cheapest_offer([old, new], "qwen2.5-0.5b-instruct", CAT, "bf16").gpu == "gtx1050ti"
    assert cheapest_offer([old, new], "qwen2.5-0.5b-instruct", CAT, "fp8").gpu == "rtx3090"
    assert cheapest_offer([old, new], "qwen2.5-0.5b-instruct", CAT, "int4").gpu == "rtx3090"
    with pytest.raises(NoOfferFits, match=r"at fp8: it needs a GPU of compute capability 8\.0 or newer, and every "
                                          r"offer with 0\.6 GB or more has an older one \(1 offer\)"):
        cheapest_offer([old], "qwen2.5-0.5b-instruct", CAT, "fp8")


def test_cards_the_catalogue_does_not_list_are_never_chosen():
    mystery = offer(None, usd="0.01", vram=80.0)
    assert cheapest_offer([mystery, offer("rtx4090", usd="0.34")], "llama-3.1-8b-instruct", CAT).gpu == "rtx4090"
    with pytest.raises(NoOfferFits, match="none of the 1 offer seen is a GPU the catalogue lists"):
        cheapest_offer([mystery], "llama-3.1-8b-instruct", CAT)


def test_spot_only_when_asked():
    spot = offer("rtx4090", usd="0.20", kind="spot")
    steady = offer("rtx4090", usd="0.34", kind="community")
    assert cheapest_offer([spot, steady], "llama-3.1-8b-instruct", CAT) is steady
    assert cheapest_offer([spot, steady], "llama-3.1-8b-instruct", CAT, kinds=("spot", "community")) is spot
    with pytest.raises(NoOfferFits, match=r"kinds allowed \(community, on_demand\): 1 offer of other kinds would"):
        cheapest_offer([spot], "llama-3.1-8b-instruct", CAT)


def test_ties_go_to_on_demand_then_fewer_gpus_then_more_memory_then_ids():
    community = offer("rtx4090", 2, "0.68", kind="community")
    on_demand = offer("rtx4090", 2, "0.68", kind="on_demand")
    assert cheapest_offer([community, on_demand], "llama-3.1-8b-instruct", CAT) is on_demand
    two_small = offer("rtx4090", 2, "1.00")
    one_big = offer("a100-80gb", 1, "1.00")
    assert cheapest_offer([two_small, one_big], "llama-3.1-8b-instruct", CAT) is one_big
    l4, a4090 = offer("l4", 1, "0.50"), offer("rtx4090", 1, "0.50")  # both 24 GB, 1 GPU
    a40 = offer("a100-40gb", 1, "0.50")
    assert cheapest_offer([l4, a4090, a40], "llama-3.1-8b-instruct", CAT) is a40
    first = offer("l4", 1, "0.50", provider="lambda", offer_id="b")
    second = offer("l4", 1, "0.50", provider="lambda", offer_id="a")
    assert cheapest_offer([first, second], "llama-3.1-8b-instruct", CAT) is second


def test_nothing_fits_names_the_model_its_need_and_the_biggest_offer_seen():
    offers = [offer("h100-80gb", 8, "10.00"), offer("rtx4090", 1, "0.34")]
    with pytest.raises(NoOfferFits) as info:
        cheapest_offer(offers, "glm-5", CAT)
    assert str(info.value) == ("No offer fits glm-5 at fp8: it needs 855.6 GB of GPU memory and the biggest offer "
                               "seen is RunPod NVIDIA H100 80GB SXM x8 with 640 GB ($10.00/h)")
    with pytest.raises(NoOfferFits, match="no offers were seen"):
        cheapest_offer([], "glm-5", CAT)


def test_a_model_entry_or_an_unknown_id():
    entry = CAT.model("phi-4")
    assert cheapest_offer([offer("rtx4090")], entry, CAT).gpu == "rtx4090"  # fp8: 16.9 GB
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        cheapest_offer([offer("rtx4090")], "nope", CAT)


def test_fitting_offers_are_every_offer_cheapest_offer_could_pick_best_first():
    offers = [offer("a100-80gb", usd="1.89"), offer("rtx3090", usd="0.19"), offer("gtx1050ti", usd="0.05"),
              offer("rtx4090", usd="0.34", kind="spot"), offer("l4", usd="0.34"), offer("rtx4090", usd="0.34",
                                                                                        kind="community")]
    ranked = fitting_offers(offers, "llama-3.1-8b-instruct", CAT)
    # the GTX 1050 Ti (4 GB) does not hold it; spot is left out; at equal prices on-demand comes first
    assert [(o.gpu, o.kind) for o in ranked] == [("rtx3090", "on_demand"), ("l4", "on_demand"),
                                                  ("rtx4090", "community"), ("a100-80gb", "on_demand")]
    assert ranked[0] is cheapest_offer(offers, "llama-3.1-8b-instruct", CAT)
    assert fitting_offers([offers[2]], "llama-3.1-8b-instruct", CAT) == []
