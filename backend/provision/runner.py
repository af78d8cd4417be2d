"""Run a playbook against one machine over SSH, step by step, streaming what happens.

    runner = PlaybookRunner(engine, KnownHosts.in_data_dir(settings.data_dir))
    result = await runner.run(load_named("bootstrap"), target, variables, on_event=show)
    # or: async with contextlib.aclosing(runner.stream(playbook, target, variables)) as events:
    #         async for event in events: ...

The variables are checked before anything happens (VariableError). Then the run is recorded,
the connection opened (an unknown or changed host key ends the run here), and each step runs
in order: skipped when its only_if fails or its guard succeeds, otherwise executed within its
timeout. The first failure stops the run. Every run ends recorded as succeeded, failed or
cancelled, with each reached step's bounded output.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import paramiko
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.logs import redact
from backend.provision.known_hosts import HostKeyError, KnownHosts
from backend.provision.playbook import CheckStep, Playbook, RunStep, Step, TemplateStep, UploadStep
from backend.provision.run_events import (
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepOutput,
    StepSkipped,
    StepStarted,
)
from backend.provision.runs import OutputTail, RunLog, StepRecord
from backend.provision.ssh import CommandResult, SshConnection, SshError, SshTarget
from backend.provision.template import Template, Value
from backend.runtime.clock import now_us

log = logging.getLogger(__name__)

EventSink = Callable[[Event], Awaitable[None] | None]
FAILED_OUTPUT_LINES = 40  # how much of a failed step's output its StepFailed event carries
_NOT_APPLICABLE, _DONE = 90, 91  # a probe's verdicts (see _skip_reason)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    outcome: Outcome
    failed_step: str | None = None
    error: str | None = None
    exit_status: int | None = None


class PlaybookRunner:
    def __init__(self, engine: AsyncEngine, known_hosts: KnownHosts) -> None:
        self.runs = RunLog(engine)
        self.known_hosts = known_hosts

    async def run(self, playbook: Playbook, target: SshTarget, variables: Mapping[str, object], *,
                  on_event: EventSink | None = None, host_id: str | None = None) -> RunResult:
        """Run `playbook` on `target`. Raises VariableError (nothing recorded) for bad variables;
        everything after that ends in the returned, recorded result. Cancelling the task stops
        the remote command and records the run as cancelled."""
        values = playbook.resolve(variables)
        masker = _Masker([str(values[name]) for name in playbook.secrets if values.get(name)])
        run_id = await self.runs.begin(playbook=playbook.name, address=target.address,
                                       variables=playbook.redacted(values), host_id=host_id)
        log.info("provision %s: %s on %s started", run_id, playbook.name, target.address)
        run = _Run(self, playbook, target, values, run_id, _as_async(on_event), masker)
        try:
            await run.emit(RunStarted(run_id, playbook.name, target.address))
            result = await run.execute()
        except asyncio.CancelledError:
            await asyncio.shield(self.runs.finish(run_id, "cancelled", failed_step=run.current,
                                                  error="cancelled before the run finished"))
            log.info("provision %s: cancelled during %s", run_id, run.current or "connect")
            raise
        except BaseException as exc:
            # A bug or a failing database: still leave the run recorded as failed, not running.
            await asyncio.shield(self.runs.finish(run_id, "failed", failed_step=run.current,
                                                  error=masker(f"internal error: {exc!r}")))
            raise
        await self.runs.finish(run_id, result.outcome, failed_step=result.failed_step, error=result.error)
        log.info("provision %s: %s%s", run_id, result.outcome,
                 f" at {result.failed_step}" if result.failed_step else "")
        await run.emit(RunFinished(run_id, result.outcome, result.failed_step, result.error))
        return result

    async def stream(self, playbook: Playbook, target: SshTarget, variables: Mapping[str, object], *,
                     host_id: str | None = None) -> AsyncIterator[Event]:
        """The same run as an async iterator of events. Leaving it early cancels the run: iterate
        inside `async with contextlib.aclosing(runner.stream(...)) as events:` so that this happens
        at once (an abandoned async generator is closed only when the garbage collector gets to it)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1024)
        task = asyncio.create_task(self.run(playbook, target, variables, on_event=queue.put, host_id=host_id))
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()  # the run ended; what it queued is still taken on the next turns
            task.result()  # a VariableError (or a bug) reaches the caller
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class _Masker:
    """Takes secret values (and anything shaped like a tokenmill token) out of text."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)


def _as_async(sink: EventSink | None) -> Callable[[Event], Awaitable[None]]:
    async def emit(event: Event) -> None:
        if sink is not None:
            result = sink(event)
            if inspect.isawaitable(result):
                await result

    return emit


class _StepFailure(Exception):
    def __init__(self, reason: str, exit_status: int | None = None, output: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.exit_status, self.output = reason, exit_status, output or []


def _why(res: CommandResult, timeout_s: float) -> str:
    if res.timed_out:
        return f"timed out after {timeout_s:g} s"
    if res.exit_status is None:
        return "lost the connection before it finished"
    return f"exited with status {res.exit_status}"


class _Run:
    """The state of one run while it executes."""

    def __init__(self, runner: PlaybookRunner, playbook: Playbook, target: SshTarget, values: dict[str, Value],
                 run_id: str, emit: Callable[[Event], Awaitable[None]], masker: _Masker) -> None:
        self.runner, self.playbook, self.target, self.values = runner, playbook, target, values
        self.run_id, self.emit, self.mask = run_id, emit, masker
        self.current: str | None = None  # the step being run, for a cancellation's record
        self.conn: SshConnection | None = None

    def render(self, template: Template) -> str:
        return template.render(self.values)

    async def execute(self) -> RunResult:
        try:
            self.conn = await SshConnection.open(self.target, self.runner.known_hosts)
        except (HostKeyError, SshError) as exc:
            error = self.mask(str(exc))
            log.warning("provision %s: %s", self.run_id, error)
            return RunResult(self.run_id, "failed", error=error)
        try:
            for step in self.playbook.steps:
                self.current = step.name
                failure = await self._step(step)
                if failure is not None:
                    return RunResult(self.run_id, "failed", failed_step=step.name,
                                     error=f"{step.label}: {failure.reason}", exit_status=failure.exit_status)
            self.current = None
            return RunResult(self.run_id, "succeeded")
        finally:
            await self.conn.close()

    async def _step(self, step: Step) -> _StepFailure | None:
        started = now_us()
        t0 = time.monotonic()  # real I/O: steps run on a real machine over SSH
        tail = OutputTail()
        try:
            skip = await self._skip_reason(step)
            if skip is not None:
                await self.runner.runs.add_step(self.run_id, StepRecord(step.index, step.name, "skipped", skip, None,
                                                                        started, now_us()))
                await self.emit(StepSkipped(step.index, step.name, skip))
                return None
            await self.emit(StepStarted(step.index, step.name, step.kind))

            async def on_line(line: str) -> None:
                line = self.mask(line)
                tail.add(line)
                await self.emit(StepOutput(step.index, step.name, line))

            exit_status = await self._act(step, on_line)
        except _StepFailure as failure:
            for line in failure.output:  # output of a guard or of a check's last attempt
                tail.add(self.mask(line))
            reason = self.mask(failure.reason)
            await self.runner.runs.add_step(self.run_id, StepRecord(
                step.index, step.name, "failed", reason, failure.exit_status, started, now_us(), tail.text,
                tail.dropped_bytes))
            log.warning("provision %s: %s failed: %s", self.run_id, step.label, reason)
            await self.emit(StepFailed(step.index, step.name, reason, failure.exit_status,
                                       tail.lines(last=FAILED_OUTPUT_LINES)))
            failure.reason = reason
            return failure
        await self.runner.runs.add_step(self.run_id, StepRecord(step.index, step.name, "ok", None, exit_status,
                                                                started, now_us(), tail.text, tail.dropped_bytes))
        await self.emit(StepFinished(step.index, step.name, exit_status, round(time.monotonic() - t0, 3)))  # real I/O
        return None

    async def _skip_reason(self, step: Step) -> str | None:
        assert self.conn is not None
        if step.only_if is not None or step.guard is not None:
            # only_if and guard in one round trip: each in its own `sh -e`, their verdict as the exit status.
            parts = []
            if step.only_if is not None:
                parts.append(f"/bin/sh -ec {shlex.quote(self.render(step.only_if))} || exit {_NOT_APPLICABLE}")
            if step.guard is not None:
                parts.append(f"/bin/sh -ec {shlex.quote(self.render(step.guard))} && exit {_DONE}")
            res, out = await self._guarded_io(self.conn.capture("\n".join([*parts, "exit 0"]),
                                                                timeout_s=step.timeout_s))
            if res.exit_status == _NOT_APPLICABLE:
                return "not applicable (only_if failed)"
            if res.exit_status == _DONE:
                return "already done (guard succeeded)"
            if res.exit_status != 0:
                which = " and ".join(f for f, t in (("only_if", step.only_if), ("guard", step.guard)) if t)
                raise _StepFailure(f"its {which} {_why(res, step.timeout_s)}", res.exit_status, out)
        if isinstance(step, UploadStep | TemplateStep):
            dest = self.render(step.dest)
            if isinstance(step, UploadStep):
                same = self.conn.same_file(dest, None, step.mode, local=self._local_file(step))
            else:
                same = self.conn.same_file(dest, self.render(step.content).encode(), step.mode)
            if await self._guarded_io(asyncio.wait_for(same, step.timeout_s), step):  # real I/O
                return "up to date (same content and mode)"
        return None

    async def _act(self, step: Step, on_line: Callable[[str], Awaitable[None]]) -> int | None:
        assert self.conn is not None
        if isinstance(step, RunStep):
            res = await self._guarded_io(self.conn.execute(self.render(step.command), timeout_s=step.timeout_s,
                                                           on_line=on_line))
            if res.exit_status != 0:
                raise _StepFailure(_why(res, step.timeout_s), res.exit_status)
            return 0
        if isinstance(step, CheckStep):
            return await self._check(step, on_line)
        # A transfer past its timeout fails the step at once; its thread ends when the run closes
        # the connection right after.
        if isinstance(step, UploadStep):
            local, dest = self._local_file(step), self.render(step.dest)
            size = await self._guarded_io(asyncio.wait_for(self.conn.upload(local, dest, step.mode),  # real I/O
                                                           step.timeout_s), step)
            await on_line(f"uploaded {local.name} ({size} bytes) to {dest} (mode {step.mode:04o})")
            return None
        if isinstance(step, TemplateStep):
            dest = self.render(step.dest)
            # The rendered text may hold a secret: it goes into the file and nowhere else.
            data = self.render(step.content).encode()
            await self._guarded_io(  # real I/O
                asyncio.wait_for(self.conn.write_file(dest, data, step.mode), step.timeout_s), step)
            await on_line(f"wrote {dest} from {step.source.name} (mode {step.mode:04o})")
            return None
        raise AssertionError(f"unknown step kind {step.kind}")

    async def _check(self, step: CheckStep, on_line: Callable[[str], Awaitable[None]]) -> int:
        """A check passes or the run stops with its message. A waiting check is retried until it
        passes or its timeout is spent; only the last attempt's output is shown."""
        assert self.conn is not None
        command, message = self.render(step.command), self.render(step.message)
        deadline = time.monotonic() + step.timeout_s  # real I/O: a command on the host, retried
        attempts = 0
        while True:
            attempts += 1
            remaining = max(deadline - time.monotonic(), 0.001)  # real I/O
            res, out = await self._guarded_io(self.conn.capture(command, timeout_s=remaining))
            if res.exit_status == 0:
                for line in out:
                    await on_line(line)
                return 0
            lost = res.exit_status is None and not res.timed_out
            if not step.wait or lost or res.timed_out or time.monotonic() + step.interval_s >= deadline:  # real I/O
                break
            await asyncio.sleep(step.interval_s)  # real I/O
        if lost:
            reason = f"check {_why(res, step.timeout_s)}: {message}"
        elif step.wait:
            reason = f"still failing after {step.timeout_s:g} s ({attempts} attempts): {message}"
        elif res.timed_out:
            reason = f"check timed out after {step.timeout_s:g} s: {message}"
        else:
            reason = f"{message} (exit status {res.exit_status})"
        raise _StepFailure(reason, res.exit_status, out)

    def _local_file(self, step: UploadStep) -> Path:
        local = Path(self.render(step.source)).expanduser()
        if not local.is_file():
            raise _StepFailure(f"the local file {local} does not exist (upload.source)")
        return local

    async def _guarded_io(self, aw: Awaitable, step: Step | None = None):
        """Turn what a broken connection, a missing remote directory or a timeout raise into a step
        failure with a readable reason."""
        try:
            return await aw
        except TimeoutError:
            raise _StepFailure(f"timed out after {step.timeout_s:g} s" if step else "timed out") from None
        except OSError as exc:  # SFTP reports remote errors as OSError (FileNotFoundError, PermissionError)
            what = f"{exc.strerror or type(exc).__name__}" + (f": {exc.filename}" if exc.filename else "")
            raise _StepFailure(what) from None
        except (SshError, paramiko.SSHException, EOFError) as exc:
            raise _StepFailure(f"SSH: {exc or type(exc).__name__}") from None
