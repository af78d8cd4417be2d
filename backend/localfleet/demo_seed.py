"""A deterministic business day: fixed clients, hosts with GPU telemetry, and a seeded stream of
metered requests through the real ledger, with the clock walked forward so that every timestamp,
balance and figure is known in advance. The console's screenshots (snapshot tests) are taken
against a backend seeded with this; nothing here is used when serving real traffic.

Prices: one model's price moves through the day, as the pricing policy would have moved it from
the loads in PRICE_LOADS (each change a price_change row with its explanation and factors, and the
requests after it quoted at it); another is pinned by the operator; one has replica limits of its
own (a model_scaling row) that the autoscaler is short of."""

from __future__ import annotations

import asyncio
import random

import msgspec
from sqlalchemy import insert

from backend.ledger import chart
from backend.ledger.service import Usage
from backend.metrics.load import ModelLoad
from backend.metrics.restore import restore
from backend.money import parse_usd
from backend.pricing.policy import Prices, hour_of, next_prices
from backend.pricing.quote import Quote
from backend.pricing.tables import PriceChange
from backend.runtime.clock import set_fixed_clock
from backend.wire.autoscaler import SetModelScaling
from backend.wire.pricing import SetModelPricing
from hostkit import protocol

DEMO_NOW_US = 1_795_618_800_000_000  # 2026-11-25 15:00:00 UTC
HOUR_US = 3_600_000_000

CLIENTS = (("demo-acme", "Acme Corp", "40.00"), ("demo-globex", "Globex", "15.00"), ("demo-initech", "Initech", "5.00"))
MODELS = ("qwen2.5-0.5b-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct")


def _gpu(index: int, name: str, total: int, used: int, util: int, temp: int, draw: float,
         limit: float) -> protocol.GpuTelemetry:
    return protocol.GpuTelemetry(index, name, total, used, util, temp, draw, limit)


PRICED = "llama-3.1-8b-instruct"  # priced by the engine through the day
PINNED = "qwen2.5-7b-instruct"  # pinned by the operator half an hour ago
SCALED = "qwen2.5-0.5b-instruct"  # the operator set its min and max replicas
# (hours after midnight UTC, engine utilization, demand tok/s, capacity tok/s): the load each repricing
# of PRICED saw. Quiet in the morning, busy after lunch, easing off in the last half hour.
PRICE_LOADS = ((9.0, 0.30, 8.0, 80.0), (11.0, 0.55, 30.0, 80.0), (13.0, 0.72, 52.0, 80.0),
               (13.5, 0.81, 60.0, 80.0), (14.0, 0.86, 66.0, 80.0), (14.25, 0.90, 70.0, 80.0),
               (14.5, 0.88, 68.0, 80.0), (14.75, 0.52, 30.0, 80.0))

# (id, name, provider, $/h, payout share bps, GPU type, GPUs, models, state)
HOSTS = (
    ("h-rig-a", "rig-a", "runpod", "0.69", 0, "rtx4090",
     [_gpu(0, "NVIDIA GeForce RTX 4090", 24564, 19120, 71, 64, 287.5, 450.0)], MODELS[:2], "active"),
    ("h-rig-b", "rig-b", "lambda", "1.29", 0, "a100-80gb",
     [_gpu(0, "NVIDIA A100-SXM4-80GB", 81920, 60210, 88, 58, 310.0, 400.0),
      _gpu(1, "NVIDIA A100-SXM4-80GB", 81920, 59870, 84, 57, 298.2, 400.0)], MODELS, "active"),
    ("h-garage", "garage-3090", "community", "0", 7000, "rtx3090",
     [_gpu(0, "NVIDIA GeForce RTX 3090", 24576, 17002, None, 70, None, None)], MODELS[2:], "active"),
    ("h-spare", "spare-l4", "vast", "0.40", 0, "l4", [], MODELS[:1], "draining"),
    ("h-gone", "old-a10", "ssh", "0.00", 0, None, [], (), "down"),
)


def _at(us: int) -> None:
    set_fixed_clock(us)


async def seed_demo(services, *, now_us: int = DEMO_NOW_US, seed: int = 1, requests: int = 1500) -> None:
    """Fill a fresh backend with a day up to `now_us`. Leaves the clock fixed at `now_us`; the
    caller puts it back (set_fixed_clock(None)) when done with the backend."""
    rng = random.Random(seed)
    day_start = now_us - now_us % (24 * HOUR_US)
    _at(day_start + 6 * HOUR_US)
    for client_id, name, credit in CLIENTS:
        await services.clients.create_client(name, client_id)
        await services.clients.grant_credit(client_id, parse_usd(credit, what="credit"),
                                            idempotency_key=f"seed-{client_id}", source="payment")
    hosts, beats = {}, {}
    for host_id, name, provider, rate, share, gpu_type, gpus, models, state in HOSTS:
        host, _ = await services.fleet.enroll(name, provider=provider, payout_share_bps=share,
                                              cost_per_hour=parse_usd(rate, what="rate"), host_id=host_id)
        hosts[host_id] = host
        if state == "down":
            continue  # enrolled, never heard from
        address = f"10.0.0.{len(hosts) + 10}"
        served = [protocol.ServedModel(model=m, endpoint=f"http://{address}:{8001 + i}", engine="vllm",
                                       metrics=protocol.EngineMetrics(num_requests_running=i,
                                                                      kv_cache_usage_perc=0.12 + 0.2 * i))
                  for i, m in enumerate(models)]
        checks = [protocol.CheckResult(m, True, day_start + 6 * HOUR_US, "VRAM, driver, disk, router: ok",
                                       decode_tps=40.0 + i) for i, m in enumerate(models)]
        beats[host_id] = protocol.Heartbeat(models=served, gpus=gpus, checks=checks)
        services.fleet.register(host, protocol.Register(name=name, models=served, gpus=gpus, gpu_type=gpu_type,
                                                        agent_version="0.1.0", checks=checks))
    await services.metrics.meter.tick()  # the hosts' GPU time starts at 06:00

    # Requests from 06:00 to now, busier in the last hour so the sparklines have a shape.
    start = day_start + 6 * HOUR_US
    times = sorted(rng.randint(start, now_us - 1) for _ in range(requests * 2 // 3))
    times += sorted(rng.randint(now_us - HOUR_US, now_us - 1) for _ in range(requests // 3))
    times.sort()
    served_by = {m: [h for h in HOSTS if m in h[7] and h[8] == "active"] for m in MODELS}
    repricings = [(day_start + round(h * HOUR_US), ModelLoad(PRICED, 300.0, 5, 2, u, 0.0, d, c))
                  for h, u, d, c in PRICE_LOADS]
    pending, repriced = [], False
    for i, finished in enumerate(times):
        while repricings and repricings[0][0] <= finished:  # a request finished after a repricing pays the new price
            at_us, load = repricings.pop(0)
            repriced = await _reprice(services, at_us, load, not repriced) or repriced
        model = MODELS[rng.randrange(3)]
        host = hosts[rng.choice(served_by[model])[0]]
        client_id = CLIENTS[rng.choice((0, 0, 0, 1, 1, 2))][0]
        quote = services.pricer.quote(services.catalogue.model(model))
        prompt, completion = rng.randint(20, 900), rng.randint(5, 400)
        took = int(rng.lognormvariate(12.3, 0.5))  # ~220 ms median
        ttft = min(int(rng.lognormvariate(10.5, 0.4)), took)  # ~36 ms median
        failed = rng.random() < 0.01
        charged = 0 if failed else quote.cost(prompt, completion)
        share = charged * host.payout_share_bps // 10_000
        _at(finished - took)
        request_id = f"seed-{i:05d}"
        services.ledger.reserve(chart.client_account(client_id), chart.REVENUE, quote.cost(prompt, completion) + 1,
                                code="usage", ref=request_id, key=request_id, lazy=True)
        _at(finished)
        usage = Usage(request_id=request_id, client_id=client_id, model=model, host_id=host.id,
                      prompt_tokens=0 if failed else prompt, completion_tokens=0 if failed else completion,
                      price_prompt_per_mtok=quote.prompt_per_mtok, price_completion_per_mtok=quote.completion_per_mtok,
                      started_us=finished - took, first_byte_us=None if failed else finished - took + ttft,
                      finished_us=finished, status="failed" if failed else "ok")
        _, fut = services.ledger.settle_nowait(request_id, charged=charged, usage=usage, host_share=share,
                                               host_account=host.payable_account if share else None)
        pending.append(fut)
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)

    await services.pricing.load()  # the engine reads the changes written above
    _at(now_us - 30 * 60_000_000)
    await services.pricing.set_pricing(PINNED, SetModelPricing(pinned=True))  # at the price it has
    _at(now_us - 25 * 60_000_000)
    # A floor above what it has: the autoscaler wants one more at once.
    await services.autoscaler.set_scaling(SCALED, SetModelScaling(min_replicas=3, max_replicas=4))
    _at(now_us - 20 * 60_000_000)
    await services.fleet.drain(hosts["h-spare"], by="operator")
    _at(now_us - 5 * 60_000_000)
    await services.models.set_enabled("mistral-7b-instruct-v0.3", False)
    _at(now_us - 1_000_000)  # every host that is up was heard from a second ago
    for host_id, beat in beats.items():
        await services.fleet.heartbeat(hosts[host_id], beat)
    _at(now_us)
    await services.metrics.meter.tick()
    await restore(services.engine, services.metrics.live, now_us)


async def _reprice(services, at_us: int, load: ModelLoad, first: bool) -> bool:
    """What the pricing engine does at a repricing of PRICED, from `load` at `at_us`: a row (the
    `first` preceded by a "start" row holding the list price, as the engine writes it), the new
    quote, an event. False when the price stays as it is (nothing written)."""
    m = services.catalogue.model(PRICED)
    q = services.pricer.quote(m)
    prev = Prices(q.prompt_per_mtok, q.completion_per_mtok)
    prompt, completion = services.pricing.bounds(m)
    d = next_prices(load, hour_utc=hour_of(at_us), prompt=prompt, completion=completion, prev=prev,
                    params=services.settings.pricing)
    if not d.changed(prev):
        return False
    rows = [(prev, "start", "the price before its first recorded change", [])] if first else []
    rows.append((d.prices, "engine", d.explanation, d.factors))
    async with services.engine.begin() as conn:
        for prices, source, explanation, factors in rows:
            await conn.execute(insert(PriceChange.__table__).values(
                model=PRICED, at_us=at_us, prompt_per_mtok=prices.prompt, completion_per_mtok=prices.completion,
                source=source, explanation=explanation, factors=msgspec.json.encode(factors).decode()))
    services.pricer.set(Quote(PRICED, d.prices.prompt, d.prices.completion))
    _at(at_us)
    services.bus.add("price.changed", PRICED, f"{PRICED}: {d.explanation}")
    return True
