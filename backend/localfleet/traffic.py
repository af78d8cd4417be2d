"""Synthetic client traffic for the embedded demo: OpenAI-style requests in a wave.

The rate rises and falls within minutes (rate_at: a 7-minute cycle between 0.3x and 3x the base
rate, starting at the base rate and rising), so that `serve --local` shows prices moving and the
autoscaler renting a host at the peak and releasing it in the trough. `--steady` keeps the base rate.

Runs as its own process (`python -m backend.localfleet.traffic`) so that the router's event loop
only routes. Keys come in the environment (TOKENMILL_SIM_KEYS, comma-separated), never on the
command line where `ps` would show them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal

import aiohttp

from backend.runtime.clock import REAL_CLOCK

PROMPTS = [
    "Summarise the plot of Hamlet in three sentences.",
    "Write a haiku about GPUs idling at night.",
    "Explain what a double-entry ledger is to a ten year old.",
    "Translate 'the invoice is overdue' into French, German and Spanish.",
    "List five uses of a hash map.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Draft a polite reminder email about a missed meeting.",
    "Give me a SQL query that finds duplicate emails in a users table.",
]


MODELS_EVERY_S = 10.0  # between looks at /v1/models
WAVE_PERIOD_S = 420.0  # one rise and fall
WAVE_LOW, WAVE_HIGH = 0.3, 3.0  # the trough's and the peak's rate, as multiples of the base rate


def rate_at(t_s: float, base: float, *, period_s: float = WAVE_PERIOD_S, low: float = WAVE_LOW,
            high: float = WAVE_HIGH) -> float:
    """Requests per second `t_s` seconds into the run: between low x base and high x base, one
    cycle per `period_s`, equal to `base` at t=0 and rising (with the defaults: at the peak from
    ~1.5 to ~3 min in, in the trough from ~4.5 to ~6.5 min in). low <= 1 <= high.

    A raised cosine, flattened at both ends (smoothstep), so that the peak and the trough each
    last long enough for an autoscaler to decide on a held condition."""
    # Where in the cycle t=0 falls: the point of the rise where the rate is `base` (smoothstep inverted).
    at_base = (1 - low) / (high - low)
    phase = math.acos(1 - 2 * (0.5 - math.sin(math.asin(1 - 2 * at_base) / 3)))
    s = (1 - math.cos(2 * math.pi * t_s / period_s + phase)) / 2  # 0 at the trough, 1 at the peak
    return base * (low + (high - low) * s * s * (3 - 2 * s))


async def one(session: aiohttp.ClientSession, url: str, key: str, model: str, rng: random.Random) -> str:
    stream = rng.random() < 0.5
    body = {"model": model, "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "max_tokens": rng.choice([16, 32, 64, 128, 256]), "stream": stream, "seed": rng.randrange(1000)}
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {key}"}) as resp:
            async for _ in resp.content.iter_any():
                pass
            return str(resp.status)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__


async def models(session: aiohttp.ClientSession, url: str, key: str) -> list[str]:
    async with session.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}) as resp:
        if resp.status != 200:
            return []
        return [m["id"] for m in json.loads(await resp.read())["data"]]


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await REAL_CLOCK.wait_for(stop.wait(), seconds)  # a client process of its own: real time


async def run(url: str, keys: list[str], rate: float, seed: int, *, steady: bool = False) -> None:
    rng = random.Random(seed)
    started = REAL_CLOCK.monotonic()  # a client process of its own: real time
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        served: list[str] = []
        looked = 0.0
        while not stop.is_set():
            if not served or REAL_CLOCK.monotonic() - looked > MODELS_EVERY_S:
                # Looked at again now and then: models come and go (and hosts join one by one at the start).
                served = await models(session, url, keys[0])
                looked = REAL_CLOCK.monotonic()
                if not served:
                    await pause(stop, 2)
                    continue
            if len(tasks) < 256:  # bounded: a stalled router cannot make this grow forever
                t = asyncio.create_task(one(session, url, rng.choice(keys), rng.choice(served), rng))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            now_rate = rate if steady else rate_at(REAL_CLOCK.monotonic() - started, rate)
            await pause(stop, rng.expovariate(now_rate))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="synthetic client traffic for tokenmill's local demo")
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=4.0, help="requests per second (Poisson)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--steady", action="store_true", help="the base rate throughout, no wave")
    args = ap.parse_args()
    keys = [k for k in os.environ.get("TOKENMILL_SIM_KEYS", "").split(",") if k]
    if not keys or args.rate <= 0:
        raise SystemExit("no keys in TOKENMILL_SIM_KEYS, or rate <= 0: nothing to do")
    asyncio.run(run(args.url.rstrip("/"), keys, args.rate, args.seed, steady=args.steady))


if __name__ == "__main__":
    main()
