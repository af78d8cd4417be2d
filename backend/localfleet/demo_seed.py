"""A deterministic business day: fixed clients, hosts with GPU telemetry, and a seeded stream of
metered requests through the real ledger, with the clock walked forward so that every timestamp,
balance and figure is known in advance. The console's screenshots (snapshot tests) are taken
against a backend seeded with this; nothing here is used when serving real traffic."""

from __future__ import annotations

import asyncio
import random

from backend.ledger import chart
from backend.ledger.service import Usage
from backend.metrics.restore import restore
from backend.money import parse_usd
from backend.runtime.clock import set_fixed_clock
from hostkit import protocol

DEMO_NOW_US = 1_795_618_800_000_000  # 2026-11-25 15:00:00 UTC
HOUR_US = 3_600_000_000

CLIENTS = (("demo-acme", "Acme Corp", "40.00"), ("demo-globex", "Globex", "15.00"), ("demo-initech", "Initech", "5.00"))
MODELS = ("qwen2.5-0.5b-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct")


def _gpu(index: int, name: str, total: int, used: int, util: int, temp: int, draw: float,
         limit: float) -> protocol.GpuTelemetry:
    return protocol.GpuTelemetry(index, name, total, used, util, temp, draw, limit)


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
    pending = []
    for i, finished in enumerate(times):
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
