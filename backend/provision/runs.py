"""The record of playbook runs: one provision_run row per run, one provision_step row per step reached."""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.provision.run_events import Outcome
from backend.provision.tables import ProvisionRun, ProvisionStep
from backend.provision.template import Value
from backend.runtime.clock import now_us

# What is kept of one step's output: its end, where the error usually is.
OUTPUT_LIMIT_BYTES = 64 * 1024

_RUN = ProvisionRun.__table__
_STEP = ProvisionStep.__table__


class OutputTail:
    """The last `limit` bytes of a step's output, in whole lines, and how much was dropped."""

    def __init__(self, limit: int = OUTPUT_LIMIT_BYTES) -> None:
        self._limit = limit
        self._lines: deque[str] = deque()
        self._size = 0
        self.dropped_bytes = 0

    def add(self, line: str) -> None:
        size = len(line.encode()) + 1
        self._lines.append(line)
        self._size += size
        while self._size > self._limit and self._lines:
            gone = len(self._lines.popleft().encode()) + 1
            self._size -= gone
            self.dropped_bytes += gone

    def lines(self, last: int | None = None) -> tuple[str, ...]:
        items = tuple(self._lines)
        return items if last is None else items[-last:]

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self._lines)


@dataclass(frozen=True, slots=True)
class StepRecord:
    position: int
    name: str
    status: str  # ok, skipped, failed
    detail: str | None
    exit_status: int | None
    started_us: int
    finished_us: int
    output: str = ""
    output_dropped_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    host_id: str | None
    address: str
    playbook: str
    variables: dict[str, Value]
    started_us: int
    finished_us: int | None
    outcome: str
    failed_step: str | None
    error: str | None
    steps: tuple[StepRecord, ...] = ()


class RunLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def begin(self, *, playbook: str, address: str, variables: Mapping[str, Value],
                    host_id: str | None = None) -> str:
        """A new run, `running`. `variables` must already have its secrets redacted."""
        run_id = "pr_" + secrets.token_hex(6)
        async with self._engine.begin() as conn:
            await conn.execute(insert(_RUN).values(
                id=run_id, host_id=host_id, address=address, playbook=playbook,
                variables=json.dumps(dict(variables), sort_keys=True), started_us=now_us(), outcome="running"))
        return run_id

    async def add_step(self, run_id: str, step: StepRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(_STEP).values(
                run_id=run_id, position=step.position, name=step.name, status=step.status, detail=step.detail,
                exit_status=step.exit_status, started_us=step.started_us, finished_us=step.finished_us,
                output=step.output, output_dropped_bytes=step.output_dropped_bytes))

    async def finish(self, run_id: str, outcome: Outcome, *, failed_step: str | None = None,
                     error: str | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(_RUN).where(_RUN.c.id == run_id).values(
                outcome=outcome, finished_us=now_us(), failed_step=failed_step, error=error))

    async def interrupt_running(self) -> int:
        """Close the runs a stopped backend left `running` (no runner is behind them any more).
        Returns how many there were."""
        async with self._engine.begin() as conn:
            result = await conn.execute(update(_RUN).where(_RUN.c.outcome == "running").values(
                outcome="cancelled", finished_us=now_us(),
                error="interrupted: the backend stopped while this run was in progress"))
        return result.rowcount or 0

    async def get(self, run_id: str) -> RunRecord:
        """One run with its steps. Raises KeyError for an unknown id."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_RUN).where(_RUN.c.id == run_id))).mappings().first()
            if row is None:
                raise KeyError(f"no provisioning run {run_id!r}")
            steps = (await conn.execute(select(_STEP).where(_STEP.c.run_id == run_id)
                                        .order_by(_STEP.c.position))).mappings().all()
        return _run(row, tuple(StepRecord(s["position"], s["name"], s["status"], s["detail"], s["exit_status"],
                                          s["started_us"], s["finished_us"], s["output"],
                                          s["output_dropped_bytes"]) for s in steps))

    async def recent(self, *, limit: int = 50, host_id: str | None = None) -> list[RunRecord]:
        """The latest runs first, without their steps."""
        query = select(_RUN).order_by(_RUN.c.started_us.desc(), _RUN.c.id).limit(limit)
        if host_id is not None:
            query = query.where(_RUN.c.host_id == host_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_run(r, ()) for r in rows]


def _run(row: Mapping, steps: tuple[StepRecord, ...]) -> RunRecord:
    return RunRecord(row["id"], row["host_id"], row["address"], row["playbook"], json.loads(row["variables"]),
                     row["started_us"], row["finished_us"], row["outcome"], row["failed_step"], row["error"], steps)
