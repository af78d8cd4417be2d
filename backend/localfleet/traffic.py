"""Synthetic client traffic for the embedded demo: OpenAI-style requests at a steady rate.

Runs as its own process (`python -m backend.localfleet.traffic`) so that the router's event loop
only routes. Keys come in the environment (TOKENMILL_SIM_KEYS, comma-separated), never on the
command line where `ps` would show them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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


async def run(url: str, keys: list[str], rate: float, seed: int) -> None:
    rng = random.Random(seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        served: list[str] = []
        while not stop.is_set():
            if not served:
                served = await models(session, url, keys[0])
                if not served:
                    await pause(stop, 2)
                    continue
            if len(tasks) < 256:  # bounded: a stalled router cannot make this grow forever
                t = asyncio.create_task(one(session, url, rng.choice(keys), rng.choice(served), rng))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            if rng.random() < 0.01:
                served = []  # look again now and then: models come and go
            await pause(stop, rng.expovariate(rate))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="synthetic client traffic for tokenmill's local demo")
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=4.0, help="requests per second (Poisson)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    keys = [k for k in os.environ.get("TOKENMILL_SIM_KEYS", "").split(",") if k]
    if not keys or args.rate <= 0:
        raise SystemExit("no keys in TOKENMILL_SIM_KEYS, or rate <= 0: nothing to do")
    asyncio.run(run(args.url.rstrip("/"), keys, args.rate, args.seed))


if __name__ == "__main__":
    main()
