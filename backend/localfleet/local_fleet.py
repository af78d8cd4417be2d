"""The embedded default fleet of `tokenmill serve --local`: simulated hosts (real host agents
running the simulated engine, as child processes) and synthetic client traffic, on loopback.

Everything a newcomer sees is real except the GPU: agents register and heartbeat through the
host API, requests go through the router and are metered into the ledger.

It is also provider "local" of the Provisioner (backend/provision/local_hosts.py): the autoscaler
rents a local host, and a provisioning job asks this fleet to start its agent (one model per host);
a teardown asks it to stop it. Those hosts' tokens are not kept: their agents die with this process
(SIGTERM at stop(), SIGKILL if it is killed), and the next start() tears down whatever hosts of
provider local the last run left (real teardown jobs: the host is removed, its record "removed").

Demo sizing: each simulated engine runs at most DEMO_SLOTS requests at once (more wait, as in
vLLM) and decodes DEMO_DECODE_TPS tokens/s per stream, so that the synthetic traffic's wave
(traffic.py) saturates the three initial hosts at its peak and leaves them mostly idle at its trough.
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
from backend.provision.service import RequestError
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
# The simulated engines' size (see the module doc; calibrated against traffic.py's wave).
DEMO_SLOTS = 4
DEMO_DECODE_TPS = 45.0
STOP_TIMEOUT_S = 30.0  # an agent drains (drain_timeout_s 20) and deregisters; then it is killed
LEFTOVER_STATES = ("provisioning", "serving", "interrupted", "failed", "tearing_down")


@dataclass
class _Child:
    name: str
    proc: asyncio.subprocess.Process


class LocalFleet:
    def __init__(self, settings: Settings, services: Services, router_url: str) -> None:
        self.settings, self.services, self.router_url = settings, services, router_url
        self.dir = settings.data_dir / "local"
        self._children: list[_Child] = []
        self._rented: dict[str, _Child] = {}  # host id -> agent of a host provisioned on provider local
        self._topping_up = False
        self._stopping = False  # a provisioning job still running must not start an agent now

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self.attach()
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
        self._stopping = True
        if self.services.provisioner.local_hosts is self:
            self.services.provisioner.local_hosts = None  # no new local hosts once stopping
        if not self._children and not self._topping_up and not self._rented:
            return
        if self._topping_up:
            await self.services.supervisor.remove(TOPUP_LOOP)
        # Traffic first, then the agents (the provisioned ones too): they drain and deregister on SIGTERM.
        children = [*sorted(self._children, key=lambda c: c.name != "traffic"), *self._rented.values()]
        for child in children:
            _terminate(child)
        await asyncio.gather(*(_reap(child, 15) for child in children))
        for host_id in self._rented:  # their tokens are not kept: the next start() tears these hosts down
            (self.dir / f"{host_id}.toml").unlink(missing_ok=True)
        self._children.clear()
        self._rented.clear()
        self._topping_up = False

    # ---------------------------------------------------------------- provider local (LocalHosts)
    async def attach(self) -> None:
        """Become provider local of the Provisioner (the first part of start(); alone: no demo
        hosts nor traffic), after tearing down the local hosts the last run left."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stopping = False
        self.services.provisioner.local_hosts = self
        await self._tear_down_leftovers()

    async def start_host(self, host_id: str, token: str, name: str, model: str, gpu: str) -> None:
        """A provisioned local host's agent: the simulated engine serving `model` as a `gpu` would."""
        if self._stopping:
            raise ValueError("the local fleet is stopping: no new local host")
        if host_id in self._rented:
            raise ValueError(f"an agent already runs for host {host_id}")
        # Shielded: a job cancelled meanwhile must still find the process to stop (stop_host).
        spawning = asyncio.ensure_future(self._spawn_agent(name, host_id, token, gpu, [model], keep=False))
        try:
            self._rented[host_id] = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            self._rented[host_id] = await spawning
            raise

    async def stop_host(self, host_id: str) -> None:
        child = self._rented.pop(host_id, None)
        if child is None:
            return
        _terminate(child)
        await _reap(child, STOP_TIMEOUT_S)
        (self.dir / f"{host_id}.toml").unlink(missing_ok=True)

    async def _tear_down_leftovers(self) -> None:
        """Hosts the last run provisioned on provider local: their agents died with it. Torn down
        by real teardown jobs (drained, removed from the fleet, their records "removed")."""
        provisioner = self.services.provisioner
        for record in await provisioner.records.in_state(*LEFTOVER_STATES):
            if record.provider != "local":
                continue
            try:
                await provisioner.teardown(record.host_id, reason="its agent ended with the last run of the local "
                                                                  "fleet")
            except RequestError as exc:
                if exc.code == "host_not_found":
                    await provisioner.records.update(record.host_id, state="removed")
                else:
                    log.warning("local host %s left by the last run: %s", record.host_id, exc.message)

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

    async def _spawn_agent(self, name: str, host_id: str, token: str, gpu: str, models: list[str], *,
                           keep: bool = True) -> _Child:
        # Every demo engine alike (DEMO_SLOTS, DEMO_DECODE_TPS): the wave, not the GPU, makes the load.
        decode = DEMO_DECODE_TPS
        config = self.dir / f"{host_id}.toml"
        with open_private(config, "w", encoding="utf-8") as fh:  # names and addresses: 0600
            fh.write(
                f'router_url = "{self.router_url}"\nname = "{name}"\nengine = "sim"\n'
                f"models = {json.dumps(models)}\ngpu_type = \"{gpu}\"\nengine_port = 0\ncontrol_port = 0\n"
                f"heartbeat_interval_s = {self.settings.heartbeat_interval_s}\ndrain_timeout_s = 20\n"
                f"[sim]\ndecode_tps = {decode}\nprefill_tps = {decode * 60}\nttft_base_s = 0.08\n"
                f"max_concurrency = {DEMO_SLOTS}\n")
        return await self._spawn([sys.executable, "-m", "hostkit.cli", "run", "--config", str(config)], name,
                                 {"TOKENMILL_HOST_HOST_TOKEN": token}, keep=keep)

    async def _spawn(self, argv: list[str], name: str, env: dict[str, str], *, keep: bool = True) -> _Child:
        out = _open_log(self.settings.log_path.parent / f"local-{name}.log")
        try:
            # Its own session, so that a Ctrl-C reaches only this process, which stops the children
            # in order; killed with this process however it ends (kill -9 included), never orphaned.
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **env}, start_new_session=True, preexec_fn=_dies_with(os.getpid()))
        finally:
            out.close()
        child = _Child(name, proc)
        if keep:
            self._children.append(child)
        return child

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
            if self.services.licences is not None:  # the synthetic traffic asks for every default model
                await self.services.licences.accept_all(client_id)  # as the operator, and once per version
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


def _terminate(child: _Child) -> None:
    if child.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)


async def _reap(child: _Child, timeout_s: float) -> None:
    """Wait for a child told to stop; killed if it has not within timeout_s."""
    try:
        await asyncio.wait_for(child.proc.wait(), timeout_s)  # real I/O: a child process
    except TimeoutError:
        log.warning("%s did not stop in time; killing it", child.name)
        with contextlib.suppress(ProcessLookupError):
            child.proc.kill()
        await child.proc.wait()


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
