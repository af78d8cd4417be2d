"""What a playbook run tells its caller, in order, as it happens.

RunStarted, then for each step either StepSkipped, or StepStarted, StepOutput lines, and
StepFinished or StepFailed; RunFinished last (also after a refused connection, with no steps).
Output lines never contain a secret variable's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    playbook: str
    address: str  # user@host:port


@dataclass(frozen=True, slots=True)
class StepStarted:
    index: int
    step: str
    kind: str  # run, check, upload, template


@dataclass(frozen=True, slots=True)
class StepSkipped:
    index: int
    step: str
    reason: str  # "already done (guard succeeded)", "not applicable (only_if failed)", "up to date"


@dataclass(frozen=True, slots=True)
class StepOutput:
    index: int
    step: str
    line: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    index: int
    step: str
    exit_status: int | None  # None for uploads and templates
    seconds: float


@dataclass(frozen=True, slots=True)
class StepFailed:
    index: int
    step: str
    reason: str
    exit_status: int | None  # None when it timed out, the connection dropped, or it was a file step
    output: tuple[str, ...]  # the step's last output lines


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    outcome: Outcome
    failed_step: str | None
    error: str | None


Event = RunStarted | StepStarted | StepSkipped | StepOutput | StepFinished | StepFailed | RunFinished
