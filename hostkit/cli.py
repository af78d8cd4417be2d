"""`tokenmill-host`: the agent on a GPU host.

    tokenmill-host run [--config PATH]            run the engine and the agent until SIGTERM/SIGINT
    tokenmill-host drain [--timeout S]            drain through the local control API; exit 0 once drained
    tokenmill-host resume                         take new requests again
    tokenmill-host status [--json]                the agent's state
    tokenmill-host check [--model M] [--json]     hardware check (hostkit/check.py); exit 1 if one fails
    tokenmill-host sim-engine --models a,b ...    only the simulated engine (no router, no agent)
    tokenmill-host payout [--threshold X] [--stripe-account acct_...]   this host's payout settings
    tokenmill-host earnings [--days N] [--json]   what this host earned, is owed and was paid (from the router)
    tokenmill-host models [--all] [--json]        catalogue models these GPUs run: price, demand, earnings, licence
    tokenmill-host serve-models M1,M2             serve these models from now on (the agent relaunches engines)

earnings, models and serve-models read router_url and host_token from the agent config, as `run` does.

drain/resume/status find the control API with --control-port, else $TOKENMILL_HOST_CONTROL_PORT,
else control_port in the config file, else 8650. Exit codes: 0 done, 1 failed, 2 bad configuration.

`check` measures decode speed against the running engine: for vLLM the one `tokenmill-host run`
supervises (found through the control API, else at its configured port); for the simulated
engine it starts one of its own with the config's timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import msgspec

from hostkit import __version__
from hostkit.config import ENV_PREFIX, AgentConfig, ConfigError, control_port_hint, load_config
from hostkit.control_api import CONTROL_HOST, AgentStatus, DrainResult
from hostkit.sim.engine import SimTiming


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def _setup_logging(level: str) -> None:
    """Log to stderr (journald keeps it under systemd), with UTC timestamps."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per heartbeat otherwise


def cmd_run(args: argparse.Namespace) -> int:
    from hostkit.agent import run_agent

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tokenmill-host: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    return _run_async(run_agent(config))


# The control API is on loopback: trust_env=False keeps a configured HTTP_PROXY out of the way.
def _control_url(args: argparse.Namespace) -> str:
    port = args.control_port or control_port_hint(args.config, os.environ)
    return f"http://{CONTROL_HOST}:{port}"


def _unreachable(url: str, exc: Exception) -> int:
    print(f"tokenmill-host: no agent answers at {url} ({type(exc).__name__}); is `tokenmill-host run` running?",
          file=sys.stderr)
    return 1


def _refused(resp: httpx.Response) -> int:
    print(f"tokenmill-host: the agent refused: {resp.text}", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    url = _control_url(args)
    try:
        resp = httpx.get(f"{url}/status", timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        return _unreachable(url, exc)
    if args.json:
        print(resp.text)
        return 0
    st = msgspec.json.decode(resp.content, type=AgentStatus)
    rows = [
        ("name", st.name), ("state", st.state), ("host id", st.host_id or "-"),
        ("router", f"{st.router_url} ({'reachable' if st.router_reachable else 'UNREACHABLE'})"),
        ("engine", st.engine),
        ("models", ", ".join(f"{m} at {st.endpoints.get(m, 'N/A')}" for m in st.models)),
        ("in flight", "N/A" if st.in_flight is None else str(st.in_flight)),
        ("outstanding at router", "N/A" if st.router_outstanding is None else str(st.router_outstanding)),
        ("last heartbeat (UTC)", st.last_heartbeat_at or "never"),
        ("agent version", st.agent_version),
    ]
    rows += [(f"engine {m}", line) for m, line in st.engines.items()]
    checked = {c.model: c for c in st.checks}
    rows += [(f"check {m}", f"{'PASS' if c.passed else 'FAIL'} {c.summary}" if (c := checked.get(m)) else "not yet")
             for m in st.models]
    rows += [("engine event", e) for e in st.engine_events]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


# Stand-ins for a check before the operator issued the host's token: the hardware is checked,
# the router is not (no request ever carries these).
_NO_TOKEN, _NO_ROUTER = "tmh-not-issued-yet", "http://router.not-configured.invalid"


def _check_config(path: str | None) -> tuple[AgentConfig, bool]:
    """The config for `check`, and whether it can reach the router. A host checked before it is
    enrolled has no host token (and maybe no router_url) yet: its hardware is still worth checking."""
    try:
        return load_config(path), True
    except ConfigError as first:
        # Only the fields the config lacks or leaves empty get a stand-in; any other error stands.
        stand_ins = {f"{ENV_PREFIX}{field.upper()}": value
                     for field, value in (("host_token", _NO_TOKEN), ("router_url", _NO_ROUTER))
                     if f"field {field}:" in str(first)}
        if not stand_ins:
            raise
        try:
            config = load_config(path, {**os.environ, **stand_ins})
        except ConfigError:
            raise first from None
    tokened = config.host_token.get_secret_value() != _NO_TOKEN and config.router_url != _NO_ROUTER
    return config, tokened


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config, tokened = _check_config(args.config)
    except ConfigError as exc:
        print(f"tokenmill-host: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    args.router = tokened
    models = [args.model] if args.model else list(config.models)
    unknown = [m for m in models if m not in config.models]
    if unknown:
        print(f"tokenmill-host check: {', '.join(unknown)} is not served by this host (its config lists "
              f"{', '.join(config.models)})", file=sys.stderr)
        return 2
    _setup_logging("WARNING")
    return _run_async(_check(config, models, args))


async def _check(config: AgentConfig, models: list[str], args: argparse.Namespace) -> int:
    from hostkit.check import HostChecker
    from hostkit.nvml import NvmlReader
    from hostkit.router_client import RouterClient
    from hostkit.sim.engine import SimEngine, start_sim_engine

    nvml = NvmlReader()
    router = (RouterClient(config.router_url, config.host_token.get_secret_value(), config.router_timeout_s)
              if getattr(args, "router", True) else None)
    sim: SimEngine | None = None
    try:
        if config.engine == "sim":
            key: str | None = config.new_engine_key()
            sim = await start_sim_engine(config.models, timing=config.sim, seed=config.sim_seed, api_key=key)
            urls = dict.fromkeys(config.models, sim.url)
        else:
            urls, key = await _vllm_engines(config, args)
        checker = HostChecker(config, nvml)
        reports = [await checker.setup_report(m, urls.get(m), router, key) for m in models]
    finally:
        if router is not None:
            await router.aclose()
        if sim is not None:
            await sim.stop()
        await asyncio.to_thread(nvml.close)
    if args.json:
        print(json.dumps([{**msgspec.to_builtins(r.result()), "lines": [dataclasses.asdict(line) for line in r.lines]}
                          for r in reports], indent=2))
    else:
        print(f"tokenmill-host check on {config.name}: {config.engine} engine, GPU type {config.gpu_type or 'not set'}")
        for report in reports:
            print()
            print(report.table())
    return 0 if all(r.passed for r in reports) else 1


async def _vllm_engines(config: AgentConfig, args: argparse.Namespace) -> tuple[dict[str, str], str | None]:
    """Where each model's vLLM listens and the key it wants: asked of the running agent, else worked
    out from the config (the key only if the config sets one)."""
    url = _control_url(args)
    key = config.engine_key.get_secret_value() if config.engine_key is not None else None
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            status = msgspec.json.decode((await http.get(f"{url}/status")).content, type=AgentStatus)
            if key is None:  # never printed: the engines want it on the decode-speed request
                with contextlib.suppress(httpx.HTTPError, msgspec.MsgspecError):
                    key = msgspec.json.decode((await http.get(f"{url}/engine-key")).content, type=_EngineKey).engine_key
        if status.local_endpoints:
            return status.local_endpoints, key
    except (httpx.HTTPError, msgspec.MsgspecError):
        pass  # no agent running: its engines are not running either, but try the configured ports
    host = config.local_engine_host
    urls = {}
    for position, spec in enumerate(config.vllm.engines):
        port = spec.port if spec.port is not None else (config.engine_port + position if config.engine_port else 0)
        if port:
            urls[spec.model] = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    return urls, key


class _EngineKey(msgspec.Struct):
    engine_key: str


async def _drain(url: str, timeout_s: float) -> int:
    async with httpx.AsyncClient(timeout=timeout_s + 10.0, trust_env=False) as http:
        request = asyncio.ensure_future(http.post(f"{url}/drain", json={"timeout_s": timeout_s}))
        # Bounded: the agent answers POST /drain after timeout_s at the latest, and httpx gives up after
        # timeout_s + 10 s; meanwhile show progress once a second.
        while not request.done():
            await asyncio.wait({request}, timeout=1.0)
            if request.done():
                break
            try:
                st = msgspec.json.decode((await http.get(f"{url}/status", timeout=2.0)).content, type=AgentStatus)
            except (httpx.HTTPError, msgspec.MsgspecError):
                continue
            in_flight = "N/A" if st.in_flight is None else st.in_flight
            outstanding = "N/A" if st.router_outstanding is None else st.router_outstanding
            print(f"{st.state}: {in_flight} in flight on the engine, {outstanding} outstanding at the router",
                  flush=True)
        try:
            resp = request.result()
        except httpx.HTTPError as exc:
            return _unreachable(url, exc)
    if resp.status_code != 200:
        return _refused(resp)
    result = msgspec.json.decode(resp.content, type=DrainResult)
    if result.drained:
        print("drained", flush=True)
        return 0
    print(f"not drained after {timeout_s:.0f} s (state {result.status.state}); the host keeps draining",
          file=sys.stderr)
    return 1


def cmd_drain(args: argparse.Namespace) -> int:
    return _run_async(_drain(_control_url(args), args.timeout))


def cmd_resume(args: argparse.Namespace) -> int:
    url = _control_url(args)
    try:
        resp = httpx.post(f"{url}/resume", timeout=15.0, trust_env=False)
    except httpx.HTTPError as exc:
        return _unreachable(url, exc)
    if resp.status_code != 200:
        return _refused(resp)
    print(f"resumed (state: {msgspec.json.decode(resp.content, type=AgentStatus).state})")
    return 0


async def _serve_sim_engine(args: argparse.Namespace) -> int:
    from hostkit.sim.engine import start_sim_engine

    timing = SimTiming(**{k: v for k in SimTiming.model_fields if (v := getattr(args, k)) is not None})
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    engine = await start_sim_engine(models, host=args.host, port=args.port, timing=timing, seed=args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"tokenmill-host sim-engine: serving {', '.join(models)} at {engine.url} (speed {timing.speed:g})",
          flush=True)
    try:
        await stop.wait()
    finally:
        await engine.stop()
    return 0


def cmd_sim_engine(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        return _run_async(_serve_sim_engine(args))
    except ValidationError as exc:
        errors = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                           for e in exc.errors(include_url=False))
        print(f"tokenmill-host sim-engine: {errors}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"tokenmill-host sim-engine: {exc}", file=sys.stderr)
        return 1


def _self_config(args: argparse.Namespace) -> AgentConfig | None:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"tokenmill-host: invalid configuration\n{exc}", file=sys.stderr)
        return None


def cmd_earnings(args: argparse.Namespace) -> int:
    from hostkit import self_service as ss

    if (config := _self_config(args)) is None:
        return 2
    try:
        earnings, raw = ss.fetch_earnings(config, args.days)
    except ss.SelfServiceError as exc:
        return ss.fail(exc, "earnings")
    print(raw.decode() if args.json else ss.render_earnings(earnings))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from hostkit import self_service as ss

    if (config := _self_config(args)) is None:
        return 2
    try:
        market = ss.fetch_market(config)
    except ss.SelfServiceError as exc:
        return ss.fail(exc, "models")
    print(msgspec.json.encode(market).decode() if args.json else ss.render_market(market, show_all=args.all))
    return 0


def cmd_serve_models(args: argparse.Namespace) -> int:
    from hostkit import self_service as ss

    if (config := _self_config(args)) is None:
        return 2
    wanted = list(dict.fromkeys(m.strip() for m in args.models.split(",") if m.strip()))
    try:
        status = ss.serve_models(config, _control_url(args), wanted)
    except ss.SelfServiceError as exc:
        return ss.fail(exc, "serve-models")
    print(f"serving {', '.join(status.models)} (state {status.state}); the router routes a new model here once "
          "its hardware check passed (`tokenmill-host status` shows the checks)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenmill-host", description="tokenmill host agent")
    p.add_argument("--version", action="version", version=f"tokenmill-host {__version__}")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the engine and the agent until SIGTERM/SIGINT")
    run.add_argument("--config", help="agent TOML file (default $TOKENMILL_HOST_CONFIG or "
                                      "/etc/tokenmill-host/agent.toml)")
    run.set_defaults(func=cmd_run)

    def control(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--control-port", type=int, help="the agent's local control port")
        c.add_argument("--config", help="read control_port from this agent config")
        return c

    drain = control("drain", "stop taking requests, wait until none is in flight; exit 0 once drained")
    drain.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    drain.set_defaults(func=cmd_drain)
    control("resume", "take requests again after a drain").set_defaults(func=cmd_resume)
    status = control("status", "show the agent's state")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser("check", help="check this host's hardware for its models; exit 1 if a check fails")
    check.add_argument("--model", help="one catalogue model id from the config (default: all of them)")
    check.add_argument("--config", help="agent TOML file (as for run)")
    check.add_argument("--control-port", type=int, help="the running agent's control port (to find its engines)")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.set_defaults(func=cmd_check)

    earnings = sub.add_parser("earnings", help="what this host earned, is owed and was paid out")
    earnings.add_argument("--days", type=_days, default=7, help="UTC days ending today (default 7, at most 366)")
    earnings.add_argument("--config", help="agent TOML file (as for run)")
    earnings.add_argument("--json", action="store_true", help="print the router's JSON")
    earnings.set_defaults(func=cmd_earnings)

    models = sub.add_parser("models", help="catalogue models this host's GPUs run: price, demand, replicas, "
                                           "expected earnings per hour here, licence")
    models.add_argument("--all", action="store_true", help="also the models that do not fit, and why")
    models.add_argument("--config", help="agent TOML file (as for run)")
    models.add_argument("--json", action="store_true", help="print the router's JSON")
    models.set_defaults(func=cmd_models)

    serve = control("serve-models", "serve these models from now on (engines of others stop, new ones start)")
    serve.add_argument("models", help="comma-separated catalogue model ids, e.g. "
                                      "llama-3.1-8b-instruct,qwen2.5-7b-instruct")
    serve.set_defaults(func=cmd_serve_models)

    from hostkit.payout_command import add_command as add_payout

    add_payout(sub)

    sim = sub.add_parser("sim-engine", help="serve only the simulated engine (vLLM's OpenAI-compatible surface)")
    sim.add_argument("--models", required=True, help="comma-separated model ids")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8001, help="0 = any free port (printed)")
    for name, field in SimTiming.model_fields.items():  # one flag per timing field, same defaults
        sim.add_argument(f"--{name.replace('_', '-')}", dest=name, type=field.annotation, default=None,
                         help=f"{field.description} (default {field.default})")
    sim.add_argument("--seed", type=int, default=0, help="seed for requests that give none")
    sim.set_defaults(func=cmd_sim_engine)
    return p


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= 366:
        raise argparse.ArgumentTypeError(f"must be 1..366, got {days}")
    return days


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
