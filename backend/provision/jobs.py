"""Provisioning and teardown jobs as the operator follows them: state, phase and a bounded list
of events (api/provision_wire.py's JobOut). Jobs live in memory; what outlives a restart is in
the provision_run and provisioned_host tables."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from backend.provision.run_events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepOutput,
    StepSkipped,
    StepStarted,
)
from backend.runtime.clock import now_us
from backend.wire.provision import HostKeyOut, JobEventOut, JobOut

MAX_EVENTS = 2000  # per job: a vLLM install prints thousands of lines; the end is what matters
MAX_JOBS = 200  # finished jobs beyond this are forgotten, oldest first

JobKind = Literal["provision", "teardown"]
JobState = Literal["running", "waiting_host_key", "succeeded", "failed"]


@dataclass(eq=False)
class Job:
    id: str
    kind: JobKind
    provider: str
    model: str | None = None
    state: JobState = "running"
    phase: str = "starting"
    host_id: str | None = None
    host_name: str | None = None
    instance_id: str | None = None
    address: str | None = None
    started_us: int = field(default_factory=now_us)
    finished_us: int | None = None
    error: str | None = None
    host_key: HostKeyOut | None = None  # the key waiting for the operator, while state is waiting_host_key
    reason: str | None = None  # why it was asked (ProvisionRequest.reason: e.g. the autoscaler's decision)
    events: deque[JobEventOut] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    task: asyncio.Task | None = None
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")

    def add(self, kind: str, text: str, step: str | None = None) -> None:
        self.events.append(JobEventOut(next(self._seq), now_us(), kind, text, step))

    def enter(self, phase: str, text: str | None = None) -> None:
        """A new stage of the job, told as a `phase` event."""
        self.phase = phase
        self.add("phase", text or phase)

    def runner_event(self, event: Event, playbook: str) -> None:
        """A playbook runner's event as job events (their text never holds a secret: the runner masks them)."""
        if isinstance(event, RunStarted):
            self.add("phase", f"{playbook}: run {event.run_id} on {event.address}")
        elif isinstance(event, StepStarted):
            self.add("step_started", f"{event.index}. {event.step}", event.step)
        elif isinstance(event, StepSkipped):
            self.add("step_skipped", f"{event.index}. {event.step}: {event.reason}", event.step)
        elif isinstance(event, StepOutput):
            self.add("output", event.line, event.step)
        elif isinstance(event, StepFinished):
            self.add("step_finished", f"{event.index}. {event.step}: done in {event.seconds:.1f} s", event.step)
        elif isinstance(event, StepFailed):
            # A check's output is not streamed (only its last attempt's is kept): it comes with the failure.
            lines = "".join(f"\n  {line}" for line in event.output)
            self.add("step_failed", f"{event.index}. {event.step}: {event.reason}{lines}", event.step)
        elif isinstance(event, RunFinished):
            where = f" at {event.failed_step!r}" if event.failed_step else ""
            self.add("phase", f"{playbook}: {event.outcome}{where}")

    def succeed(self, text: str) -> None:
        self.state, self.phase, self.host_key = "succeeded", "done", None
        self.finished_us = now_us()
        self.add("done", text)

    def fail(self, error: str) -> None:
        self.state, self.phase, self.host_key = "failed", "failed", None
        self.error = error
        self.finished_us = now_us()
        self.add("error", error)

    def out(self, after: int | None = None) -> JobOut:
        """The job as the API shows it: with the events after `after`, or none when after is None."""
        events = [] if after is None else [e for e in self.events if e.seq > after]
        return JobOut(self.id, self.kind, self.state, self.phase, self.model, self.provider, self.host_id,
                      self.host_name, self.instance_id, self.address, self.started_us, self.finished_us,
                      self.error, events, host_key=self.host_key, reason=self.reason)


class JobBook:
    """The jobs of this backend, newest last; finished ones beyond MAX_JOBS are dropped."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def new(self, kind: JobKind, provider: str, model: str | None = None, *, reason: str | None = None) -> Job:
        job = Job("job_" + secrets.token_hex(5), kind, provider, model, reason=reason)
        if reason:
            job.add("reason", reason)  # the first event: why this job exists
        self._jobs[job.id] = job
        finished = [j.id for j in self._jobs.values() if j.finished]
        for job_id in finished[:max(len(self._jobs) - MAX_JOBS, 0)]:
            del self._jobs[job_id]
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def active_for_host(self, host_id: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.host_id == host_id and not j.finished), None)

    def active_for_address(self, address: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.address == address and not j.finished), None)
