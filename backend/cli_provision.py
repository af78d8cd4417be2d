"""`tokenmill offers | provision | teardown | host-keys`: provisioning from the command line.

These commands talk to the running backend's admin API (settings admin_host/admin_port, or
--url; the token from TOKENMILL_ADMIN_TOKEN, the settings or the data directory's token file),
as the console does: the backend does the work and keeps the records, the command shows it live.
Provider credentials live in the backend's settings and never pass through here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from backend.cli_admin import AdminApi, CliError, add_url, admin_api, guarded
from backend.money import format_usd
from backend.runtime.clock import REAL_CLOCK, Clock
from backend.wire.provision import HostKeyOut, JobEventOut, JobOut, OfferOut, OffersOut

POLL_S = 0.5
TERMINAL = ("succeeded", "failed")
_MARKS = {"phase": "==", "step_started": "->", "step_skipped": "  skip", "output": "   |", "step_finished": "  ok",
          "step_failed": "!!", "host_key": "??", "done": "OK", "error": "ERROR"}


def _confirm(question: str, ask: Callable[[str], str]) -> bool:
    try:
        return ask(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _usd(nano: int | None) -> str:
    return "N/A" if nano is None else format_usd(nano, places=2)


# ---------------------------------------------------------------------------------------- offers
def print_offers(out: OffersOut) -> None:
    print(f"{out.model} at {out.quantization}: needs {out.vram_needed_gb:g} GB of GPU memory")
    rows = [("provider", "offer", "gpu", "memory", "$/h", "kind", "region", "profit/h")]
    for o in out.offers:
        rows.append((o.provider, o.offer_id, f"{o.gpu_name} x{o.gpu_count}", f"{o.vram_gb * o.gpu_count:g} GB",
                     _usd(o.price_per_hour_nano), o.kind, o.region or "", _usd(o.expected_profit_per_h_nano)))
    if len(rows) == 1:
        print("no offer fits")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for line in out.unavailable:
        print(f"unavailable: {line}")


def cmd_offers(settings: Any, args: argparse.Namespace) -> int:
    admin = admin_api(settings, args)
    try:
        print_offers(admin.run(admin.api.offers(args.model, gpu=args.gpu or None, provider=args.provider or None)))
        return 0
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------- jobs
def print_event(e: JobEventOut) -> None:
    mark = _MARKS.get(e.kind, e.kind)
    print(f"{mark} {e.text}", flush=True)


def _same_fingerprint(a: str, b: str) -> bool:
    return a.strip().removeprefix("SHA256:") == b.strip().removeprefix("SHA256:")


def follow(admin: AdminApi, job: JobOut, *, accept_key: str | None, ask: Callable[[str], str] | None,
           clock: Clock = REAL_CLOCK) -> int:
    """Print the job's events as they come until it ends; 0 if it succeeded. A host key waiting for
    confirmation is confirmed when it matches --accept-host-key, or when the operator says so
    (`ask`; None when nobody can be asked). A key refused here cancels the job."""
    after = 0
    handled: set[str] = set()
    print(f"job {job.id} ({job.kind}) started", flush=True)
    while True:
        job = admin.run(admin.api.job(job.id, after=after))
        for event in job.events:
            print_event(event)
            after = event.seq
        key = job.host_key
        if job.state == "waiting_host_key" and key and key.fingerprint not in handled:
            handled.add(key.fingerprint)
            _host_key(admin, job, key, accept_key, ask)
        if job.state in TERMINAL:
            if job.state == "succeeded":
                return 0
            print(f"tokenmill: job {job.id} failed", file=sys.stderr)
            return 1
        admin.run(clock.sleep(POLL_S))


def _host_key(admin: AdminApi, job: JobOut, key: HostKeyOut, accept_key: str | None,
              ask: Callable[[str], str] | None) -> None:
    where, fp = f"{key.host}:{key.port}", key.fingerprint
    if accept_key is not None:
        if _same_fingerprint(accept_key, fp):
            admin.run(admin.api.confirm_host_key(key.host, key.port, fp))
            print(f"?? confirmed {key.key_type} {fp} for {where} (--accept-host-key)", flush=True)
            return
        print(f"tokenmill: {where} presented {key.key_type} {fp}, not the {accept_key} given with "
              "--accept-host-key: refusing it and cancelling the job", file=sys.stderr, flush=True)
        admin.run(admin.api.cancel_job(job.id))
        return
    if ask is None:
        print(f"?? waiting for someone to confirm {fp} for {where}: `tokenmill host-keys confirm {key.host} "
              f"{key.port} {fp}`, the console, or --accept-host-key next time", flush=True)
        return
    print(f"?? {where} presented the host key {key.key_type} {fp}.\n"
          "   Compare it with the machine's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it, or the "
          "provider's console).", flush=True)
    if _confirm("   Trust this key?", ask):
        admin.run(admin.api.confirm_host_key(key.host, key.port, fp))
    else:
        print("not trusted: cancelling the job (it removes what it set up)", flush=True)
        admin.run(admin.api.cancel_job(job.id))


def _asker(args: argparse.Namespace) -> Callable[[str], str] | None:
    # Nobody to ask when stdin is not a terminal (a script, CI): the key is confirmed elsewhere or the job times out.
    return input if sys.stdin.isatty() else None


def _follow_or_detach(admin: AdminApi, job: JobOut, args: argparse.Namespace) -> int:
    try:
        return follow(admin, job, accept_key=getattr(args, "accept_host_key", None), ask=_asker(args))
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job.id} goes on in the backend (the console's Provision view shows "
              f"it; POST /admin/jobs/{job.id}/cancel stops it)", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------- provision
def cmd_provision(settings: Any, args: argparse.Namespace) -> int:
    admin = admin_api(settings, args)
    try:
        request: dict[str, Any] = {"model": args.model, "provider": args.provider, "engine": args.engine,
                                   "gpu": args.gpu or None, "name": args.name or None}
        if args.provider == "ssh":
            if not args.ssh_host:
                raise CliError("--provider ssh needs --ssh-host (and --ssh-port, --ssh-user if not 22 and root)")
            request.update(ssh_host=args.ssh_host, ssh_port=args.ssh_port, ssh_user=args.ssh_user,
                           gpu_count=args.gpu_count)
            print(f"{args.ssh_user}@{args.ssh_host}:{args.ssh_port}: your machine, nothing is rented; it will serve "
                  f"{args.model} with engine {args.engine}")
        else:
            offer = _choose_offer(admin, args)
            request["offer_id"] = offer.offer_id
            print(f"{offer.provider} offer {offer.offer_id}: {offer.gpu_name} x{offer.gpu_count}, "
                  f"{format_usd(offer.price_per_hour_nano)}/h ({offer.kind}"
                  f"{', ' + offer.region if offer.region else ''}); expected profit "
                  f"{_usd(offer.expected_profit_per_h_nano)}/h at current demand")
        if not args.yes and not _confirm("Go ahead?" if args.provider == "ssh" else "Rent it?", input):
            print("nothing done")
            return 1
        job = admin.run(admin.api.provision(**request))
        return _follow_or_detach(admin, job, args)
    finally:
        admin.close()


def _choose_offer(admin: AdminApi, args: argparse.Namespace) -> OfferOut:
    out = admin.run(admin.api.offers(args.model, gpu=args.gpu or None, provider=args.provider))
    offers = out.offers
    if args.offer:
        chosen = next((o for o in offers if o.offer_id == args.offer), None)
        if chosen is None:
            raise CliError(f"offer {args.offer} is not among the {len(offers)} offers of {args.provider} that fit "
                           f"{args.model} now (`tokenmill offers --model {args.model}` lists them)")
        return chosen
    if not offers:
        why = "; ".join(out.unavailable)
        raise CliError(f"no {args.provider} offer fits {args.model} (needs {out.vram_needed_gb:g} GB)"
                       + (f": {why}" if why else ""))
    return offers[0]


# ---------------------------------------------------------------------------------------- teardown
def cmd_teardown(settings: Any, args: argparse.Namespace) -> int:
    admin = admin_api(settings, args)
    try:
        hosts = admin.run(admin.api.hosts())
        matches = [h for h in hosts if h.id == args.host] or [h for h in hosts if h.name == args.host
                                                              and h.status != "removed"]
        if not matches:
            raise CliError(f"no host with id or name {args.host!r} (`tokenmill` console, Fleet view, lists them)")
        if len(matches) > 1:
            ids = ", ".join(h.id for h in matches)
            raise CliError(f"several hosts are called {args.host!r} ({ids}): give the id")
        host = matches[0]
        print(f"{host.name} ({host.id}, {host.provider}, {host.status}, "
              f"{host.outstanding} requests in flight): drain it, remove its agent, destroy its rented "
              "instance and remove it from the fleet")
        if not args.yes and not _confirm("Tear it down?", input):
            print("nothing done")
            return 1
        job = admin.run(admin.api.teardown(host.id))
        return _follow_or_detach(admin, job, args)
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------- host keys
def cmd_host_keys(settings: Any, args: argparse.Namespace) -> int:
    admin = admin_api(settings, args)
    try:
        if args.action == "confirm":
            if not (args.host and args.port and args.fingerprint):
                raise CliError("usage: tokenmill host-keys confirm HOST PORT FINGERPRINT")
            try:
                port = int(args.port)
            except ValueError:
                raise CliError(f"PORT must be a number, got {args.port!r}") from None
            key = admin.run(admin.api.confirm_host_key(args.host, port, args.fingerprint))
            print(f"trusted {key.key_type} {key.fingerprint} for {key.host}:{key.port}")
            return 0
        pending = admin.run(admin.api.pending_host_keys())
        if not pending:
            print("no host key waits for confirmation")
        for k in pending:
            print(f"{k.host}:{k.port}  {k.key_type}  {k.fingerprint}")
        return 0
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------- parser
def add_commands(sub: argparse._SubParsersAction) -> None:
    offers = add_url(sub.add_parser("offers", help="what the GPU clouds would rent now for a model, cheapest first"))
    offers.add_argument("--model", required=True, help="catalogue model id")
    offers.add_argument("--gpu", help="only this catalogue GPU id")
    offers.add_argument("--provider", help="only this provider")
    offers.set_defaults(func=guarded(cmd_offers))

    prov = add_url(sub.add_parser("provision", help="turn a machine into a serving host (rented, or yours over SSH)"))
    prov.add_argument("--provider", required=True, choices=("runpod", "vast", "lambda", "ssh"))
    prov.add_argument("--model", required=True, help="catalogue model id the host serves")
    prov.add_argument("--gpu", help="catalogue GPU id: restrict the offers to it (ssh + vllm: the machine's card)")
    prov.add_argument("--gpu-count", type=int, default=1, help="ssh + vllm: how many of those cards the machine has")
    prov.add_argument("--offer", help="rent this offer (an id from `tokenmill offers`) instead of the cheapest")
    prov.add_argument("--name", help="the host's name (default: provider, GPU and a short id)")
    prov.add_argument("--engine", choices=("vllm", "sim"), default="vllm",
                      help="sim: the simulated engine, for a machine without a GPU")
    prov.add_argument("--ssh-host", help="provider ssh: your machine's address")
    prov.add_argument("--ssh-port", type=int, default=22)
    prov.add_argument("--ssh-user", default="root")
    prov.add_argument("--yes", action="store_true", help="do not ask before renting (host keys are still checked)")
    prov.add_argument("--accept-host-key", metavar="SHA256:...",
                      help="trust the machine's host key if, and only if, it has this fingerprint")
    prov.set_defaults(func=guarded(cmd_provision))

    down = add_url(sub.add_parser("teardown", help="drain a provisioned host, remove its agent, destroy its instance"))
    down.add_argument("host", help="the host's id or name")
    down.add_argument("--yes", action="store_true", help="do not ask first")
    down.add_argument("--accept-host-key", metavar="SHA256:...",
                      help="trust the machine's host key if, and only if, it has this fingerprint")
    down.set_defaults(func=guarded(cmd_teardown))

    keys = add_url(sub.add_parser("host-keys", help="host keys waiting for confirmation; confirm one"))
    keys.add_argument("action", nargs="?", choices=("list", "confirm"), default="list")
    keys.add_argument("host", nargs="?")
    keys.add_argument("port", nargs="?")
    keys.add_argument("fingerprint", nargs="?", help="SHA256:... as ssh-keygen -l prints it")
    keys.set_defaults(func=guarded(cmd_host_keys))
