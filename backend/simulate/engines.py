"""A simulated engine, minute by minute: the capacity model (backend/catalogue/capacity.py) with a queue.

Each step the replica has `seconds` of time. The requests that arrived and those still queued
need `work_s` each (prompt read plus completion decoded, at full batch); the replica does what fits,
first come first served, and the rest waits. Requests that would wait longer than `max_wait_s`
time out (failed, not charged), as a client gives up on a stalled API. What the engine reports to
the router is what vLLM would: running = utilization x slots, waiting = the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.catalogue.capacity import Capacity

MAX_WAIT_S = 120.0


@dataclass(slots=True)
class Served:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    work_s: float = 0.0  # replica-seconds of full-batch work done
    wait_s: float = 0.0  # mean queueing delay of the requests served
    ttft_s: float = 0.0  # mean time to first token (queue + prefill)
    latency_s: float = 0.0  # mean whole-request time


class SimEngine:
    __slots__ = ("backlog_completion", "backlog_prompt", "backlog_requests", "capacity", "utilization")

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.backlog_requests = 0
        self.backlog_prompt = 0
        self.backlog_completion = 0
        self.utilization = 0.0  # of the last step

    @property
    def backlog_work_s(self) -> float:
        return self.capacity.work_s(self.backlog_prompt, self.backlog_completion)

    def step(self, requests: int, prompt: int, completion: int, seconds: float) -> Served:
        cap = self.capacity
        n = self.backlog_requests + requests
        p = self.backlog_prompt + prompt
        c = self.backlog_completion + completion
        out = Served()
        if n == 0:
            self.utilization = 0.0
            return out
        need = cap.work_s(p, c)
        # Work beyond what the replica can finish within the wait a client tolerates times out.
        limit = seconds + MAX_WAIT_S
        if need > limit:
            keep = limit / need
            kept = int(n * keep)
            out.failed = n - kept
            p, c, n = int(p * keep), int(c * keep), kept
            need = cap.work_s(p, c)
        done = min(need, seconds)
        share = done / need if need > 0 else 1.0
        served = n if share >= 1.0 else int(n * share)
        sp, sc = (p, c) if served == n else (int(p * share), int(c * share))
        self.backlog_requests, self.backlog_prompt, self.backlog_completion = n - served, p - sp, c - sc
        self.utilization = done / seconds
        out.requests, out.prompt_tokens, out.completion_tokens, out.work_s = served, sp, sc, done
        if served:
            # A queue forms only when the step's work exceeds its time; those served then waited, on
            # average, half of what is carried over (a batching engine with free slots queues nothing).
            out.wait_s = min(max(need - done, 0.0) / 2, MAX_WAIT_S)
            ttft, whole = cap.latency_s(self.utilization, sp / served, sc / served)
            out.ttft_s = out.wait_s + ttft
            out.latency_s = out.wait_s + whole
        return out

    def metrics(self) -> tuple[int, int, float]:
        """(running, waiting, kv cache use) as the engine reports them."""
        running = round(min(self.utilization, 1.0) * self.capacity.slots)
        return running, self.backlog_requests, min(self.utilization, 1.0)
