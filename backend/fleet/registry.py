"""The fleet as the router sees it: enrolled hosts, their replicas, health and drain state.

Hosts are enrolled by the operator (a row and a token); a host's agent registers and then
heartbeats. All of this lives in memory; only enrolment and state changes touch the database.

A host's engines want its engine key (hostkit/protocol.py Register.engine_key) as a bearer token:
it is kept here only, in memory (never in the database, the admin API, events or logs: the fields
holding it are left out of repr), and each replica carries the headers to forward with, built
once when the key arrives so that the proxy formats nothing per request.

Engines reached off the host's loopback speak TLS with a self-signed certificate whose SHA-256
the agent reports (Register.engine_tls_sha256, hostkit/engine_tls.py): the router accepts exactly
that certificate from the host's engines (aiohttp's Fingerprint, built once like the headers). A
host that reports none is forwarded to as its URLs say: http, or https verified against the CAs.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from backend.field_errors import FieldError, Taken
from backend.fleet.tables import Host
from backend.ledger import chart
from backend.ledger.service import Ledger
from backend.runtime.bus import EventBus
from backend.runtime.clock import REAL_CLOCK, Clock
from backend.runtime.supervisor import Supervisor
from hostkit import protocol

log = logging.getLogger(__name__)
HOST_TOKEN_PREFIX = "tmh-"


class FleetError(LookupError):
    pass


class AgentReplaced(Exception):
    """A call from an agent that no longer holds its host's token (hostkit.protocol.AGENT_INSTANCE_HEADER)."""


# After a start, an enabled model without replicas answers "retry" rather than "not found" until
# every enrolled host was heard from, or this long at most: an agent that found the router gone
# backs off up to 30 s (hostkit's retry_max_s) before it calls again and registers.
STARTUP_GRACE_S = 60.0


# What the router sends an engine with every request it forwards (the body is always JSON). Read-only:
# shared by every replica, and passed to aiohttp as is.
PLAIN_ENGINE_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))


def engine_headers(key: str | None) -> CIMultiDictProxy[str]:
    """The forwarding headers for engines that want `key` (None: an older agent's, which want none)."""
    if not key:
        return PLAIN_ENGINE_HEADERS
    return CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json", "Authorization": f"Bearer {key}"}))


def _plain_headers() -> CIMultiDictProxy[str]:
    return PLAIN_ENGINE_HEADERS


EngineTls = aiohttp.Fingerprint | bool  # aiohttp's `ssl=`: True verifies against the CAs as usual


def engine_tls(pin: str | None) -> EngineTls:
    """What to accept from engines whose certificate has SHA-256 `pin` (None: nothing pinned)."""
    return aiohttp.Fingerprint(bytes.fromhex(pin)) if pin else True


@dataclass(eq=False, slots=True)
class Replica:
    """One model served by one host: what the balancer chooses among."""

    host: HostState
    model: str
    url: str
    engine: str = "vllm"
    ready: bool = True
    metrics: protocol.EngineMetrics | None = None
    # Prompt + completion tokens its engine takes (vLLM's max_model_len); None: not reported.
    max_model_len: int | None = None
    # The host's latest hardware check for this model; the balancer skips the replica unless it passed.
    check: protocol.CheckResult | None = None
    outstanding: int = 0
    failures: int = 0
    ejected_until: float = 0.0  # monotonic time
    # Sent with every forwarded request: the host's engine_headers(), shared by its replicas.
    headers: CIMultiDictProxy[str] = field(default_factory=_plain_headers, repr=False)
    ssl: EngineTls = True  # the host's engine_ssl, shared by its replicas
    _urls: dict[str, URL] = field(default_factory=dict)

    def endpoint(self, path: str) -> URL:
        """The engine's URL for `path`, parsed once (URL parsing is a measurable cost per request)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.url + path)
        return url


@dataclass(eq=False, slots=True)
class HostState:
    id: str
    name: str
    provider: str
    payout_share_bps: int
    cost_per_hour: int
    state: str  # "active", "draining", "removed"; persisted, except a drain the host asked for
    created_us: int
    # Who asked for the current drain: "host" (mirrored from its heartbeats, in memory only: the
    # host's wish lives on the host), else the operator or a job (persisted). None when active.
    drain_by: str | None = None
    saved_state: str = "active"  # what the database holds
    # The operator resumed the host while its agent drained: HeartbeatReply.resume until a heartbeat
    # sent after the agent read it (resume_told) says what the agent made of it.
    resume_pending: bool = False
    resume_told: bool = False
    # The agent holding the token (its AGENT_INSTANCE_HEADER) and when it started; None: unknown (an
    # older agent, or none registered since it left).
    agent_instance: str | None = None
    agent_started_us: int | None = None
    registered: bool = False
    last_seen: float = 0.0  # monotonic time of the last register / heartbeat
    last_heard_us: int | None = None  # the same instant in UTC, for people
    gpu_type: str | None = None
    gpus: list[protocol.GpuTelemetry] = field(default_factory=list)
    agent_version: str = ""
    in_flight: int = 0
    replicas: dict[str, Replica] = field(default_factory=dict)
    was_up: bool = False
    # What its agent said its engines want (in memory only; see the module doc).
    engine_key: str | None = field(default=None, repr=False)
    engine_headers: CIMultiDictProxy[str] = field(default_factory=_plain_headers, repr=False)
    engine_tls_sha256: str | None = None
    engine_ssl: EngineTls = True

    @property
    def outstanding(self) -> int:
        return sum(r.outstanding for r in self.replicas.values())

    @property
    def payable_account(self) -> str | None:
        return chart.host_account(self.id) if self.payout_share_bps else None


class Fleet:
    def __init__(self, engine: AsyncEngine, ledger: Ledger, events: EventBus, *,
                 heartbeat_interval_s: float = protocol.HEARTBEAT_INTERVAL_S,
                 eject_base_s: float = 2.0, eject_max_s: float = 60.0, clock: Clock = REAL_CLOCK,
                 supervisor: Supervisor | None = None) -> None:
        self._engine = engine
        self.clock = clock
        self._mono = clock.monotonic  # bound once: choose() reads it per request
        self._ledger = ledger
        self._events = events
        self.heartbeat_interval_s = heartbeat_interval_s
        self._down_after = heartbeat_interval_s * protocol.MISSED_HEARTBEATS_DOWN
        self._eject_base = eject_base_s
        self._eject_max = eject_max_s
        self._hosts: dict[str, HostState] = {}
        self._by_token: dict[str, HostState] = {}
        self._by_model: dict[str, list[Replica]] = {}
        self._rr: dict[str, int] = {}
        # model -> the largest max_model_len among its replicas, kept as heartbeats change them so
        # that the request path reads one dict; None: a replica did not report one.
        self._max_len: dict[str, int | None] = {}
        self._last_replica_gone: dict[str, float] = {}  # model -> monotonic time its last replica left
        # The health check runs under the backend's supervisor, or one of its own when the fleet
        # runs alone (tests, tools), started and stopped with it.
        self._own_loops = supervisor is None
        self._loops = Supervisor(clock) if supervisor is None else supervisor
        self._loops.every("fleet.health", self.check_health, heartbeat_interval_s)
        # Hosts enrolled before this start and not heard from since (see starting()).
        self._awaited: set[str] = set()
        self._awaited_until = 0.0

    # ---------------------------------------------------------------- lifecycle
    async def load(self) -> None:
        async with self._engine.connect() as conn:
            for r in (await conn.execute(select(Host.__table__))).mappings():
                host = HostState(r["id"], r["name"], r["provider"], r["payout_share_bps"], r["cost_per_hour"],
                                 r["state"], r["created_us"])
                host.saved_state = host.state
                if host.state == "draining":
                    host.drain_by = "operator"
                self._hosts[host.id] = host
                if host.state != "removed":
                    self._by_token[r["token_sha256"]] = host
                    self._awaited.add(host.id)
        self._awaited_until = self._mono() + STARTUP_GRACE_S

    def start(self) -> None:
        if self._own_loops:
            self._loops.start()

    async def close(self) -> None:
        if self._own_loops:
            await self._loops.stop()

    # ---------------------------------------------------------------- reads
    def hosts(self) -> list[HostState]:
        return list(self._hosts.values())

    def host(self, host_id: str) -> HostState:
        try:
            return self._hosts[host_id]
        except KeyError:
            raise FleetError(f"no host {host_id!r}") from None

    def authenticate(self, token: str) -> HostState | None:
        if not token.startswith(HOST_TOKEN_PREFIX):
            return None
        return self._by_token.get(hashlib.sha256(token.encode()).hexdigest())

    def is_up(self, host: HostState, now: float | None = None) -> bool:
        now = self._mono() if now is None else now
        return host.registered and host.state != "removed" and now - host.last_seen <= self._down_after

    def status(self, host: HostState) -> str:
        """What the operator sees: active, quarantined, draining, drained, down, removed.
        Quarantined: up and not drained, but no replica can take traffic, because every one
        failed its hardware check or was ejected after failing requests."""
        if host.state == "removed":
            return "removed"
        if not self.is_up(host):
            return "down"
        if host.state == "draining":
            return "drained" if host.outstanding == 0 else "draining"
        if host.replicas and not any(self._routable(r) for r in host.replicas.values()):
            return "quarantined"
        return "active"

    def _routable(self, r: Replica) -> bool:
        """Still waiting for a first check is not a fault; a failed check or an ejection is."""
        return (r.check is None or r.check.passed) and r.ejected_until <= self._mono()

    def routable_now(self, r: Replica) -> bool:
        """Whether the balancer could choose `r` now (choose()'s test, for load and capacity)."""
        h, now = r.host, self._mono()
        return (h.state == "active" and h.registered and now - h.last_seen <= self._down_after and r.ready
                and r.check is not None and r.check.passed and r.ejected_until <= now)

    def replicas(self, model: str) -> list[Replica]:
        return self._by_model.get(model, [])

    def served_models(self) -> set[str]:
        return {m for m, reps in self._by_model.items() if reps}

    def starting(self) -> bool:
        """Whether this process has yet to hear from a host enrolled before it started (for at
        most STARTUP_GRACE_S): a model without replicas may be one such host's, so clients are
        told to retry, not that it does not exist."""
        if self._awaited and self._mono() >= self._awaited_until:
            self._awaited.clear()
        return bool(self._awaited)

    def max_model_len(self, model: str) -> int | None:
        """The longest request (prompt + completion tokens) some replica of `model` takes; None when
        none serves it or one did not say (an agent from before this was reported)."""
        return self._max_len.get(model)

    def advertised_context(self, model: str) -> int | None:
        """What /v1/models says: the largest max_model_len among the replicas that take traffic
        now, else among all of them; None when that is unknown (the catalogue's context then)."""
        now = self._mono()
        live = [r.max_model_len for r in self._by_model.get(model, ())
                if r.host.state == "active" and self.is_up(r.host, now) and r.ready
                and r.check is not None and r.check.passed and r.ejected_until <= now]
        return _largest(live) if live else self._max_len.get(model)

    def _note_lengths(self, model: str) -> None:
        self._max_len[model] = _largest([r.max_model_len for r in self._by_model.get(model, ())])

    # ---------------------------------------------------------------- the balancer
    def choose(self, model: str, tried: tuple[Replica, ...] = (), need: int = 0) -> Replica | None:
        """A healthy, active, hardware-checked replica of `model` with the fewest outstanding
        requests; round robin among equals. None when there is no capacity right now.
        `need`: prompt + completion tokens; a replica whose engine takes fewer is skipped."""
        reps = self._by_model.get(model)
        if not reps:
            return None
        now = self._mono()
        n = len(reps)
        start = self._rr.get(model, 0) % n
        self._rr[model] = start + 1
        best: Replica | None = None
        down = self._down_after
        for i in range(n):
            r = reps[(start + i) % n]
            h = r.host
            if (h.state != "active" or not h.registered or now - h.last_seen > down or not r.ready
                    or r.check is None or not r.check.passed or r.ejected_until > now or r in tried
                    or (r.max_model_len is not None and r.max_model_len < need)):
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        return best

    def failed(self, replica: Replica, why: str) -> None:
        """Eject a replica that failed, for a backoff that doubles with each failure in a row.

        Requests already in flight when it was ejected may fail too; they do not lengthen the
        ejection (a host that dies takes all its streams with it at once)."""
        if replica.ejected_until > self._mono():
            return
        replica.failures += 1
        backoff = min(self._eject_base * 2 ** (replica.failures - 1), self._eject_max)
        replica.ejected_until = self._mono() + backoff
        self._events.add("replica.ejected", replica.host.id,
                         f"{replica.model} on {replica.host.name} failed ({why}); out for {backoff:.0f}s", "warning")

    @staticmethod
    def succeeded(replica: Replica) -> None:
        if replica.failures:
            replica.failures = 0
            replica.ejected_until = 0.0

    # ---------------------------------------------------------------- enrolment (operator)
    async def enroll(self, name: str, *, provider: str = "ssh", payout_share_bps: int = 0,
                     cost_per_hour: int = 0, host_id: str | None = None) -> tuple[HostState, str]:
        """A new host and its agent token (returned here, never again)."""
        name = name.strip()
        if not name:
            raise FieldError("name", "a host needs a name")
        if not 0 <= payout_share_bps <= 10_000:
            raise FieldError("payout_share_bps", f"must be 0..10000, got {payout_share_bps}")
        if cost_per_hour < 0:
            raise FieldError("cost_per_hour", f"must not be negative, got {cost_per_hour}")
        host_id = host_id or f"h_{secrets.token_hex(5)}"
        if host_id in self._hosts:
            raise Taken("id", f"host id {host_id!r} is taken")
        token = HOST_TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).hexdigest()
        host = HostState(host_id, name, provider, payout_share_bps, cost_per_hour, "active", self.clock.now_us())
        if host.payable_account:
            await self._ledger.open_account(host.payable_account, chart.Kind.HOST_PAYABLE, owner=host_id)
        async with self._engine.begin() as conn:
            await conn.execute(insert(Host.__table__).values(
                id=host.id, name=host.name, token_sha256=digest, provider=provider,
                payout_share_bps=payout_share_bps, cost_per_hour=cost_per_hour, state="active",
                created_us=host.created_us))
        self._hosts[host_id] = host
        self._by_token[digest] = host
        self._events.add("host.enrolled", host_id, f"{name} enrolled ({provider})")
        return host, token

    async def set_cost(self, host: HostState, cost_per_hour: int) -> None:
        """What the host's machine costs per hour (nano-USD), e.g. once the rented offer is known."""
        if cost_per_hour < 0:
            raise FieldError("cost_per_hour", f"must not be negative, got {cost_per_hour}")
        async with self._engine.begin() as conn:
            await conn.execute(update(Host.__table__).where(Host.__table__.c.id == host.id)
                               .values(cost_per_hour=cost_per_hour))
        host.cost_per_hour = cost_per_hour

    async def _set_state(self, host: HostState, state: str, *, save: bool = True) -> None:
        # In memory first: the router stops choosing a draining host at once, and a second call
        # arriving during the write sees the new state.
        before, host.state = host.state, state
        if not save or host.saved_state == state:
            return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(update(Host.__table__).where(Host.__table__.c.id == host.id).values(state=state))
        except BaseException:
            host.state = before
            raise
        host.saved_state = state

    async def drain(self, host: HostState, by: str = "operator") -> None:
        """Out of rotation; requests in flight finish. The latest order, the host's or the
        operator's, stands: `by` "host" is the host's own (see HostState.drain_by)."""
        if host.state == "removed":
            raise FleetError(f"host {host.id!r} was removed")
        host.resume_pending = False
        if host.state != "draining":
            await self._set_state(host, "draining", save=by != "host")
            host.drain_by = by
            self._events.add("host.draining", host.id, f"{host.name} draining (asked by {by}), "
                                                       f"{host.outstanding} requests in flight")
        elif by != "host" and host.drain_by == "host":  # the operator's order outlives the host's
            await self._set_state(host, "draining")
            host.drain_by = by

    async def resume(self, host: HostState, by: str = "operator") -> None:
        if host.state == "removed":
            raise FleetError(f"host {host.id!r} was removed")
        if host.state != "active":
            # Anyone but the host tells its agent, which may be draining of its own accord.
            host.resume_pending, host.resume_told = by != "host", False
            await self._set_state(host, "active")
            host.drain_by = None
            self._events.add("host.resumed", host.id, f"{host.name} back in rotation (asked by {by})")

    async def remove(self, host: HostState) -> None:
        """Out for good: its token stops working; requests in flight finish."""
        await self._set_state(host, "removed")
        for digest, h in list(self._by_token.items()):
            if h is host:
                del self._by_token[digest]
        self._drop_replicas(host)
        host.registered = False
        self._awaited.discard(host.id)
        self._events.add("host.removed", host.id, f"{host.name} removed")

    # ---------------------------------------------------------------- the agent's calls
    def check_agent(self, host: HostState, instance: str | None) -> None:
        """Raise AgentReplaced for a call from an agent other than the one holding the token."""
        if instance and host.agent_instance and instance != host.agent_instance:
            raise AgentReplaced(f"another agent registered with the token of {host.name} and serves it now; "
                                f"this one must stop calling (restart it to take the host back)")

    def _take_token(self, host: HostState, msg: protocol.Register, instance: str | None) -> None:
        """One live agent per token: a newer one replaces the one registered; an older one is refused."""
        held = host.agent_instance
        if instance and held and instance != held and self.is_up(host):
            if (msg.agent_started_us or 0) < (host.agent_started_us or 0):
                raise AgentReplaced(f"a newer agent holds the token of {host.name}; this one must stop calling")
            self._events.add("host.agent_replaced", host.id, f"{host.name}: a newer agent registered with its "
                                                             f"token; the previous one is shut out", "warning")
        host.agent_instance = instance or None
        host.agent_started_us = msg.agent_started_us if instance else None

    def register(self, host: HostState, msg: protocol.Register, instance: str | None = None) -> protocol.RegisterReply:
        """`instance`: the calling agent's id (hostkit.protocol.AGENT_INSTANCE_HEADER); None from an
        older agent. Raises AgentReplaced when a newer agent holds the token."""
        self._take_token(host, msg, instance)
        self._awaited.discard(host.id)
        host.gpu_type = msg.gpu_type
        host.gpus = list(msg.gpus)
        host.agent_version = msg.agent_version
        self._set_engine_key(host, msg.engine_key)  # None too: an older agent's engines want no key
        self._set_engine_tls(host, msg.engine_tls_sha256)  # None too: its engines speak plain HTTP
        self._set_replicas(host, msg.models, msg.checks)
        first = not host.registered
        host.registered = True
        host.last_seen = self._mono()
        host.last_heard_us = self.clock.now_us()
        host.was_up = True
        if host.state == "draining" and host.drain_by == "host":
            # An agent registers only when it is not draining (hostkit/agent.py): the host's own
            # drain ended with the agent that asked for it.
            host.state, host.drain_by = "active", None
        if first:
            models = ", ".join(m.model for m in msg.models) or "no models"
            self._events.add("host.joined", host.id, f"{host.name} joined serving {models}")
        return protocol.RegisterReply(host_id=host.id, heartbeat_interval_s=self.heartbeat_interval_s)

    async def heartbeat(self, host: HostState, msg: protocol.Heartbeat) -> protocol.HeartbeatReply:
        if not host.registered:
            raise FleetError("register before sending heartbeats")
        host.last_seen = self._mono()
        host.last_heard_us = self.clock.now_us()
        if not host.was_up:
            host.was_up = True
            self._events.add("host.back", host.id, f"{host.name} heard from again")
        host.in_flight = msg.in_flight
        host.gpus = list(msg.gpus)
        if msg.engine_key is not None:
            self._set_engine_key(host, msg.engine_key)
        if msg.engine_tls_sha256 is not None:
            self._set_engine_tls(host, msg.engine_tls_sha256)
        self._set_replicas(host, msg.models, msg.checks)
        await self._follow_host_drain(host, msg)
        return protocol.HeartbeatReply(state=self.status(host), outstanding=host.outstanding,
                                       drain=host.state == "draining" and host.drain_by != "host",
                                       resume=host.resume_pending)

    async def _follow_host_drain(self, host: HostState, msg: protocol.Heartbeat) -> None:
        """Mirror the drain the host asks for itself; leave the operator's to the operator."""
        asks = msg.draining and msg.drain_asked_by != "router"
        if host.resume_pending:
            if not host.resume_told:
                # Sent before the agent could read the operator's resume: not an answer to it.
                host.resume_told = True
                return
            host.resume_pending = False  # sent after it read it: what it says now is its answer
        if asks and host.state == "active":
            await self.drain(host, by="host")
        elif not asks and host.state == "draining" and host.drain_by == "host":
            await self.resume(host, by="host")

    def deregister(self, host: HostState) -> None:
        self._drop_replicas(host)
        host.agent_instance = host.agent_started_us = None  # whoever registers next holds the token
        if host.registered:
            host.registered = False
            self._events.add("host.left", host.id, f"{host.name} left the fleet")

    @staticmethod
    def _set_engine_key(host: HostState, key: str | None) -> None:
        if key == host.engine_key:
            return
        host.engine_key = key
        host.engine_headers = engine_headers(key)
        Fleet._reach_engines_anew(host)

    @staticmethod
    def _set_engine_tls(host: HostState, pin: str | None) -> None:
        if pin == host.engine_tls_sha256:
            return
        host.engine_tls_sha256 = pin
        host.engine_ssl = engine_tls(pin)
        Fleet._reach_engines_anew(host)

    @staticmethod
    def _reach_engines_anew(host: HostState) -> None:
        """The host's engines want another key or serve another certificate: its replicas forward
        with the new ones, and a replica refused under the old ones deserves a new try at once."""
        for rep in host.replicas.values():
            rep.headers, rep.ssl = host.engine_headers, host.engine_ssl
            rep.failures = 0
            rep.ejected_until = 0.0

    def _set_replicas(self, host: HostState, served: list[protocol.ServedModel],
                      checks: list[protocol.CheckResult]) -> None:
        wanted = {m.model: m for m in served}
        checked = {c.model: c for c in checks}
        for model in [m for m in host.replicas if m not in wanted]:
            self._unlink(host.replicas.pop(model))
        for model, m in wanted.items():
            rep = host.replicas.get(model)
            if rep is None or rep.url != m.endpoint.rstrip("/"):
                if rep is not None:
                    self._unlink(rep)
                rep = Replica(host, model, m.endpoint.rstrip("/"), m.engine, headers=host.engine_headers,
                              ssl=host.engine_ssl, max_model_len=m.max_model_len)
                host.replicas[model] = rep
                self._by_model.setdefault(model, []).append(rep)
                self._note_lengths(model)
            elif rep.max_model_len != m.max_model_len:
                rep.max_model_len = m.max_model_len
                self._note_lengths(model)
            rep.ready = m.ready
            rep.metrics = m.metrics
            self._note_check(rep, checked.get(model))

    def _note_check(self, rep: Replica, check: protocol.CheckResult | None) -> None:
        before, rep.check = rep.check, check
        if check is None or (before is not None and before.checked_us == check.checked_us):
            return
        if check.passed:
            self._events.add("replica.checked", rep.host.id, f"{rep.model} on {rep.host.name} passed its hardware "
                                                             f"check: {check.summary}")
        else:
            self._events.add("replica.check_failed", rep.host.id, f"{rep.model} on {rep.host.name} failed its "
                                                                  f"hardware check, no traffic: {check.summary}",
                             "warning")

    def _drop_replicas(self, host: HostState) -> None:
        for rep in host.replicas.values():
            self._unlink(rep)
        host.replicas.clear()

    def _unlink(self, rep: Replica) -> None:
        reps = self._by_model.get(rep.model)
        if reps and rep in reps:
            reps.remove(rep)
            self._note_lengths(rep.model)
            if not reps:
                self._last_replica_gone[rep.model] = self._mono()

    def recently_served(self, model: str, within_s: float = 600.0) -> bool:
        """Whether a host served `model` within the last `within_s` seconds though none does now
        (every host restarting for an upgrade, say): clients should retry, not give up."""
        gone = self._last_replica_gone.get(model)
        return gone is not None and self._mono() - gone <= within_s

    # ---------------------------------------------------------------- health
    def check_health(self) -> None:
        """Note hosts that went silent (they already left the rotation by their age). The
        supervisor runs it every heartbeat interval."""
        now = self._mono()
        for host in self._hosts.values():
            if host.was_up and host.registered and not self.is_up(host, now):
                host.was_up = False
                self._events.add("host.lost", host.id, f"{host.name} missed "
                                 f"{protocol.MISSED_HEARTBEATS_DOWN} heartbeats; out of rotation", "warning")


def _largest(lengths: list[int | None]) -> int | None:
    """The largest length; None when there is none or one is unknown (it may be larger)."""
    if not lengths or None in lengths:
        return None
    return max(n for n in lengths if n is not None)
