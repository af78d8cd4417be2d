"""The embedded default fleet of `tokenmill serve --local`: simulated hosts (real host agents
running the simulated engine, as child processes) and synthetic client traffic, on loopback.

Everything a newcomer sees is real except the GPU: agents register and heartbeat through the
host API, requests go through the router and are metered into the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.app import Services
from backend.private_files import open_private, private_dir
from backend.settings import Settings

log = logging.getLogger(__name__)

# (name, GPU from the catalogue, provider, payout share for community hosts in basis points)
HOST_SHAPES = [
    ("local-4090", "rtx4090", "runpod", 0),
    ("local-community", "rtx3090", "community", 7000),
    ("local-a100", "a100-80gb", "lambda", 0),
]
DEMO_CLIENTS = [("demo-acme", "Acme Robotics"), ("demo-globex", "Globex"), ("demo-initech", "Initech")]
DEMO_CREDIT_NANO = 25 * 10**9
TOPUP_BELOW_NANO = 5 * 10**9
TOPUP_LOOP = "localfleet.topup"


@dataclass
class _Child:
    name: str
    proc: asyncio.subprocess.Process


class LocalFleet:
    def __init__(self, settings: Settings, services: Services, router_url: str) -> None:
        self.settings, self.services, self.router_url = settings, services, router_url
        self.dir = settings.data_dir / "local"
        self._children: list[_Child] = []
        self._topping_up = False

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tokens = self._load_tokens()
        models = [m.id for m in self.services.catalogue.default_models()]
        for i in range(self.settings.local_hosts):
            name, gpu, provider, share = HOST_SHAPES[i % len(HOST_SHAPES)]
            if i >= len(HOST_SHAPES):
                name = f"{name}-{i // len(HOST_SHAPES) + 1}"
            host_id, token = await self._host(name, gpu, provider, share, tokens)
            tokens[host_id] = token
            served = models if len(models) < 3 else [m for j, m in enumerate(models) if j != i % len(models)]
            await self._spawn_agent(name, host_id, token, gpu, served)
        self._save_tokens(tokens)
        keys = await self._demo_clients()
        if self.settings.local_traffic_rps > 0:
            await self._spawn([sys.executable, "-m", "backend.localfleet.traffic", "--url", self.router_url,
                               "--rate", str(self.settings.local_traffic_rps)], "traffic",
                              {"TOKENMILL_SIM_KEYS": ",".join(keys)})
        self.services.supervisor.every(TOPUP_LOOP, self._top_up_demo_clients, 30, first_run_s=0)
        self._topping_up = True

    async def stop(self) -> None:
        if not self._children and not self._topping_up:
            return
        if self._topping_up:
            await self.services.supervisor.remove(TOPUP_LOOP)
        # Traffic first, then the agents: they drain and deregister on SIGTERM.
        for child in sorted(self._children, key=lambda c: c.name != "traffic"):
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                await asyncio.wait_for(child.proc.wait(), 15)  # real I/O: a child process
            except TimeoutError:
                log.warning("%s did not stop in time; killing it", child.name)
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        self._children.clear()
        self._topping_up = False

    # ---------------------------------------------------------------- hosts
    def _tokens_file(self) -> Path:
        return self.dir / "host-tokens.json"

    def _load_tokens(self) -> dict[str, str]:
        try:
            return json.loads(self._tokens_file().read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def _save_tokens(self, tokens: dict[str, str]) -> None:
        path = self._tokens_file()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(tokens, fh)

    async def _host(self, name: str, gpu: str, provider: str, share: int,
                    tokens: dict[str, str]) -> tuple[str, str]:
        """The local host of that name, enrolled once and reused across runs."""
        fleet = self.services.fleet
        existing = [h for h in fleet.hosts() if h.name == name and h.state != "removed"]
        for h in existing:
            if h.id in tokens:
                if h.state != "active":
                    await fleet.resume(h, by="local fleet")
                return h.id, tokens[h.id]
            await fleet.remove(h)  # its token is lost: replace it
        # A rented host's cost: the cheapest catalogue offer for one such GPU.
        per_gpu = [o.price_per_hour // o.gpu_count for o in self.services.catalogue.offers if o.gpu == gpu]
        cost = 0 if share else min(per_gpu, default=0)
        host, token = await fleet.enroll(name, provider=provider, payout_share_bps=share, cost_per_hour=cost)
        return host.id, token

    async def _spawn_agent(self, name: str, host_id: str, token: str, gpu: str, models: list[str]) -> None:
        cat = self.services.catalogue
        classes = [cat.model(m).size_class for m in models]
        tps = cat.gpu_by_id[gpu].decode_tps
        decode = min(tps.get(c, 10) for c in classes)
        config = self.dir / f"{host_id}.toml"
        with open_private(config, "w", encoding="utf-8") as fh:  # names and addresses: 0600
            fh.write(
                f'router_url = "{self.router_url}"\nname = "{name}"\nengine = "sim"\n'
                f"models = {json.dumps(models)}\ngpu_type = \"{gpu}\"\nengine_port = 0\ncontrol_port = 0\n"
                f"heartbeat_interval_s = {self.settings.heartbeat_interval_s}\ndrain_timeout_s = 20\n"
                f"[sim]\ndecode_tps = {decode}\nprefill_tps = {decode * 60}\nttft_base_s = 0.08\n")
        await self._spawn([sys.executable, "-m", "hostkit.cli", "run", "--config", str(config)], name,
                          {"TOKENMILL_HOST_HOST_TOKEN": token})

    async def _spawn(self, argv: list[str], name: str, env: dict[str, str]) -> None:
        out = _open_log(self.settings.log_path.parent / f"local-{name}.log")
        try:
            # Its own session, so that a Ctrl-C reaches only this process, which stops the children
            # in order; killed with this process however it ends (kill -9 included), never orphaned.
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **env}, start_new_session=True, preexec_fn=_dies_with(os.getpid()))
        finally:
            out.close()
        self._children.append(_Child(name, proc))

    # ---------------------------------------------------------------- demo clients
    async def _demo_clients(self) -> list[str]:
        """Demo clients with credit, and fresh keys for this run's traffic (last run's revoked)."""
        clients = self.services.clients
        keys = []
        for client_id, name in DEMO_CLIENTS:
            try:
                clients.client(client_id)
            except LookupError:
                await clients.create_client(name, client_id)
                await clients.grant_credit(client_id, DEMO_CREDIT_NANO, idempotency_key=f"local-demo-{client_id}")
            for old in clients.keys(client_id):
                if old.name == "local traffic" and not old.revoked:
                    await clients.revoke_key(old.id)
            _, secret = await clients.issue_key(client_id, "local traffic")
            keys.append(secret)
        return keys

    async def _top_up_demo_clients(self) -> None:
        """Keep the demo clients able to pay for the synthetic traffic (every 30 s, supervised)."""
        for client_id, _ in DEMO_CLIENTS:
            acc = self.services.ledger.account(f"client:{client_id}")
            if acc.available < TOPUP_BELOW_NANO:
                key = f"local-topup-{client_id}-{self.services.clock.now_us()}"
                await self.services.clients.grant_credit(client_id, DEMO_CREDIT_NANO, idempotency_key=key)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _dies_with(parent: int):
    """A preexec_fn: the child gets SIGKILL when `parent` dies. An agent left behind would keep its
    host token and fight the next run's agent for it; nothing it could do on the way out (drain,
    deregister) has a router left to tell. None where Linux's prctl is missing."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child runs only the call

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the call above
            os._exit(1)

    return preexec


def _open_log(path: Path):
    """A child's log file, opened for the child to inherit (closed here once it has)."""
    private_dir(path.parent)
    return open_private(path, "ab")
