"""A stand-in for the `vllm` executable: `fake_vllm.py serve <checkpoint> --served-model-name M
--host H --port P ...` serves the simulated engine (vLLM's HTTP surface) for M on H:P.

Like vLLM, it takes its key from VLLM_API_KEY (the simulated engine then wants it on everything but
/health, as vLLM with the agent's guard does), and it imports each `--middleware
module.Name` the way vLLM does (from its PYTHONPATH), building it as vLLM's app.add_middleware would
(`Name(app)`), so a guard that cannot load fails the launch here too. It cannot run an ASGI
middleware over its aiohttp server; the guard's own behaviour is tested under uvicorn.

Tests steer it through files in $FAKE_VLLM_DIR, so behaviour can change between launches:
- launches.jsonl: every launch appends {"argv": [...], "pid": N, "env": {...}} (env: the variables the
  agent sets, VLLM_API_KEY included: this is a test's record, not a log);
- crash_starts: an integer N > 0 makes the next N launches exit at once with code 3;
- start_delay_s: seconds before it listens (a model still loading: /health refuses meanwhile);
- ignore_sigterm: when present, SIGTERM is ignored, so only SIGKILL stops it;
- decode_tps: the simulated decode speed (default: never sleeps).
SIGTERM otherwise stops it cleanly with exit code 0, as vLLM does.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import ssl
import sys
from pathlib import Path

from hostkit.sim.engine import SimTiming, start_sim_engine


def _take_crash(state: Path) -> bool:
    crash = state / "crash_starts"
    left = int(crash.read_text()) if crash.exists() else 0
    if left > 0:
        crash.write_text(str(left - 1))
    return left > 0


async def _serve(args: argparse.Namespace, state: Path) -> int:
    delay = state / "start_delay_s"
    if delay.exists():
        await asyncio.sleep(float(delay.read_text()))
    tps = state / "decode_tps"
    timing = SimTiming(decode_tps=float(tps.read_text()), ttft_base_s=0) if tps.exists() else SimTiming(speed=0)
    if args.max_model_len:  # as vLLM, it then reports it in /v1/models and refuses longer requests
        timing = timing.model_copy(update={"max_model_len": args.max_model_len})
    tls = None
    if args.ssl_certfile:  # as vLLM hands them to uvicorn
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
    engine = await start_sim_engine([args.served_model_name], host=args.host, port=args.port, timing=timing,
                                    api_key=os.environ.get("VLLM_API_KEY") or None, ssl_context=tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if (state / "ignore_sigterm").exists():
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"fake vllm: serving {args.served_model_name} on {args.host}:{args.port}", flush=True)
    await stop.wait()
    await engine.stop()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="vllm")
    p.add_argument("command", choices=["serve"])
    p.add_argument("checkpoint")
    p.add_argument("--served-model-name", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--middleware", action="append", default=[])
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--ssl-certfile")
    p.add_argument("--ssl-keyfile")
    args, _rest = p.parse_known_args()
    state = Path(os.environ["FAKE_VLLM_DIR"])
    with open(state / "launches.jsonl", "a") as out:
        env = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "HF_HUB_CACHE", "VLLM_API_KEY", "PYTHONPATH")
               if k in os.environ}
        out.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "env": env}) + "\n")
    if _take_crash(state):
        print("fake vllm: crashing at start as asked", file=sys.stderr, flush=True)
        return 3
    for path in args.middleware:  # as vLLM's build_app does
        module, name = path.rsplit(".", 1)
        getattr(importlib.import_module(module), name)(app=_NoApp())
    return asyncio.run(_serve(args, state))


class _NoApp:
    """Stands for the ASGI app a middleware wraps (only built here, never called)."""


if __name__ == "__main__":
    raise SystemExit(main())
