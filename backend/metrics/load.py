"""Each model's load over a window: what dynamic pricing and the autoscaler decide from.

A supervised loop samples the fleet every heartbeat interval: per model, its routable replicas
(those the balancer would choose: active, up, ready, checked, not ejected) and, from their
engines' metrics, each replica's utilization = max(KV-cache use, (running + waiting) / slots),
slots being the engine's max_num_seqs (vLLM's default, 256, when it does not say), and requests
waiting per replica. Demand is the completion tokens/s clients were served over the window (the
live metrics, so it agrees with the ledger); capacity is what the routable replicas could decode
together now: single-stream decode tokens/s (the host's measured check, else the catalogue's
figure for its GPU and the model's size class) times the batch gain, at most their slots.

Memory is bounded: a sample per model per interval, kept for the longest window asked for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from backend.catalogue import Catalogue
from backend.fleet.registry import Fleet, Replica
from backend.metrics.live import MINUTE_US, LiveMetrics
from backend.runtime.supervisor import Supervisor

DEFAULT_SLOTS = 256  # vLLM's default max_num_seqs
BATCH_GAIN = 16  # a batching engine's throughput over one stream's, at most (capped by its slots)
LOAD_LOOP = "metrics.load"


@dataclass(frozen=True, slots=True)
class LoadSample:
    at_us: int
    replicas: int  # routable now
    utilization: float | None  # mean over routable replicas reporting metrics; None: none did
    waiting_per_replica: float | None  # None: no routable replica


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """One model's load over the last `window_s` seconds (means of the samples in it)."""

    model: str
    window_s: float
    samples: int
    replicas: int  # routable now
    utilization: float | None  # mean engine utilization (0..1, may exceed 1 when queues build); None: unknown
    waiting_per_replica: float
    demand_tps: float  # completion tokens/s served over the window
    capacity_tps: float | None  # decode tokens/s the routable replicas could give together now; None: unknown

    @property
    def demand_ratio(self) -> float | None:
        """Demand against capacity; None when capacity is unknown. No capacity with demand: 2.0
        (as saturated as the signal goes)."""
        if self.capacity_tps is None:
            return None
        if self.capacity_tps <= 0:
            return 2.0 if self.demand_tps > 0 else 0.0
        return min(self.demand_tps / self.capacity_tps, 2.0)

    def combined(self, utilization_weight: float) -> float:
        """utilization_weight x utilization + the rest x demand ratio; either alone when the other is unknown."""
        u, d = self.utilization, self.demand_ratio
        if u is None and d is None:
            return 0.0
        if u is None:
            return d or 0.0
        if d is None:
            return u
        return utilization_weight * u + (1 - utilization_weight) * d


def replica_slots(r: Replica) -> int:
    m = r.metrics
    return (m.max_num_seqs if m is not None and m.max_num_seqs else None) or DEFAULT_SLOTS


def replica_utilization(r: Replica) -> float | None:
    m = r.metrics
    if m is None:
        return None
    return max(m.kv_cache_usage_perc, (m.num_requests_running + m.num_requests_waiting) / replica_slots(r))


class LoadTracker:
    def __init__(self, fleet: Fleet, live: LiveMetrics, catalogue: Catalogue, *, sample_s: float,
                 keep_s: float, supervisor: Supervisor | None = None) -> None:
        self.fleet, self.live, self.catalogue = fleet, live, catalogue
        self.clock = fleet.clock
        self.sample_s = sample_s
        self._keep = max(2, int(keep_s / sample_s) + 2)
        self._samples: dict[str, deque[LoadSample]] = {}
        if supervisor is not None:
            supervisor.every(LOAD_LOOP, self.sample, sample_s, first_run_s=0,
                             describe="samples each model's replicas and engine load")

    def routable(self, model: str) -> list[Replica]:
        return [r for r in self.fleet.replicas(model) if self.fleet.routable_now(r)]

    def sample(self) -> None:
        now = self.clock.now_us()
        for model in {m.id for m in self.catalogue.models} | self.fleet.served_models():
            reps = self.routable(model)
            utils = [u for u in (replica_utilization(r) for r in reps) if u is not None]
            waiting = sum(r.metrics.num_requests_waiting for r in reps if r.metrics is not None)
            s = LoadSample(now, len(reps), sum(utils) / len(utils) if utils else None,
                           waiting / len(reps) if reps else None)
            q = self._samples.get(model)
            if q is None:
                q = self._samples[model] = deque(maxlen=self._keep)
            q.append(s)

    def single_stream_tps(self, r: Replica) -> float | None:
        if r.check is not None and r.check.decode_tps:
            return r.check.decode_tps
        gpu = self.catalogue.gpu_by_id.get(r.host.gpu_type or "")
        entry = self.catalogue.model_by_id.get(r.model)
        if gpu is None or entry is None:
            return None
        tps = gpu.decode_tps.get(entry.size_class)
        return float(tps) if tps else None

    def replica_capacity_tps(self, r: Replica) -> float | None:
        one = self.single_stream_tps(r)
        return None if one is None else one * min(replica_slots(r), BATCH_GAIN)

    def load(self, model: str, window_s: float) -> ModelLoad:
        now = self.clock.now_us()
        since = now - round(window_s * 1_000_000)
        samples = [s for s in self._samples.get(model, ()) if s.at_us > since]
        utils = [s.utilization for s in samples if s.utilization is not None]
        waits = [s.waiting_per_replica for s in samples if s.waiting_per_replica is not None]
        reps = self.routable(model)
        caps = [self.replica_capacity_tps(r) for r in reps]
        capacity = None if any(c is None for c in caps) else float(sum(c for c in caps if c is not None))
        counts = self.live.window(since, now, model)
        # The live counters are per minute: the window's counts are those of every minute it
        # touches, so the rate divides by the time from the first such minute's start.
        observed_from = max(since - since % MINUTE_US, self.live.first_us or now)
        seconds = max((now - observed_from) / 1_000_000, self.sample_s)
        return ModelLoad(model, window_s, len(samples), len(reps), sum(utils) / len(utils) if utils else None,
                         sum(waits) / len(waits) if waits else 0.0,
                         counts.completion_tokens / seconds, capacity)
