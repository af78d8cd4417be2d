"""The pure parts of host self-service: which catalogue models a host's GPUs run and why not, the
earnings window, money shown as dollars and cents, and serve-models' refusals before anything changes."""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.fleet.registry import HostState
from backend.metrics.host_earnings import window
from backend.metrics.host_market import fit
from backend.metrics.report import DAY_US
from hostkit import protocol
from hostkit.self_service import SelfServiceError, dollars, plan

CATALOGUE = load_catalogue()


def host(gpu_type: str | None, gpus: int = 0) -> HostState:
    h = HostState("h_1", "box", "community", 7000, 0, "active", 0, gpu_type=gpu_type)
    h.gpus = [protocol.GpuTelemetry(index=i, name="gpu", memory_total_mib=24_564) for i in range(gpus)]
    return h


def test_fit_counts_every_gpu_and_names_what_is_missing():
    mixtral = CATALOGUE.model("mixtral-8x7b-instruct")  # 26.9 GB at int4
    one = fit(CATALOGUE, mixtral, host("rtx4090", gpus=1))
    assert one.capacity is None and "needs 26.9 GB" in one.why_not and "1 x 24 GB" in one.why_not
    two = fit(CATALOGUE, mixtral, host("rtx4090", gpus=2))
    assert two.why_not == "" and two.spec is not None and two.spec.tensor_parallel_size == 2

    tiny = CATALOGUE.model("qwen2.5-0.5b-instruct")  # 1.2 GB: fits a GTX 1050 Ti's memory, not its compute
    old = fit(CATALOGUE, tiny, host("gtx1050ti"))
    assert old.capacity is None and "compute capability 7.0" in old.why_not and "6.1" in old.why_not
    unknown = fit(CATALOGUE, tiny, host(None))
    assert unknown.capacity is None and "gpu_type" in unknown.why_not


def test_the_window_is_whole_utc_days_ending_now():
    now = 20_000 * DAY_US + 5 * 3_600_000_000
    assert window(now, 1) == (20_000 * DAY_US, now + 1)
    assert window(now, 7) == (19_994 * DAY_US, now + 1)


def test_dollars_and_cents_from_decimal_strings():
    assert dollars("1234.5678") == "$1,234.57"
    assert dollars("0.004") == "$0.00" and dollars("0.005") == "$0.01"
    assert dollars(None) == "N/A"


def _row(model: str, *, fits: bool = True, enabled: bool = True) -> protocol.MarketModel:
    lic = protocol.ModelLicence("MIT", "https://x", "1", "allowed", "", "")
    return protocol.MarketModel(model=model, name=model, fits=fits, why_not="" if fits else "needs 40 GB",
                                enabled=enabled, serving=False, prompt_per_mtok_usd="0.10",
                                completion_per_mtok_usd="0.20", demand_tps=0.0, utilization=None, replicas=0,
                                capacity_tps=None, expected_per_hour_nano=None, expected_per_hour_usd=None,
                                licence=lic)


def test_serve_models_refuses_every_bad_model_at_once():
    market = protocol.HostMarket("h_1", "box", "rtx4090", 1, 7000, 0.6, 400, 200, "",
                                 [_row("a"), _row("big", fits=False), _row("off", enabled=False)])
    assert [r.model for r in plan(market, ["a"])] == ["a"]
    with pytest.raises(SelfServiceError) as caught:
        plan(market, ["a", "big", "off", "nope"])
    text = str(caught.value)
    assert "big: this host's GPUs cannot serve it: needs 40 GB" in text
    assert "off: the operator does not sell it" in text and "nope: not in the catalogue" in text
    assert "a:" not in text
