"""The playbook runner against a real sshd on loopback: failures, timeouts, guards, secrets,
streaming, cancellation, and the record of every run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import textwrap
import time
from pathlib import Path

import pytest

from backend.provision.playbook import Playbook, VariableError, load_playbook
from backend.provision.run_events import (
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepOutput,
    StepSkipped,
    StepStarted,
)
from backend.provision.runner import PlaybookRunner


def playbook(tmp_path: Path, text: str, **templates: str) -> Playbook:
    d = tmp_path / "playbook"
    d.mkdir(exist_ok=True)
    for name, content in templates.items():
        (d / name).write_text(content)
    path = d / "test.yaml"
    path.write_text(textwrap.dedent(text))
    return load_playbook(path)


class Events(list):
    """Every event of a run, in order, with the time it arrived."""

    def __call__(self, event) -> None:
        self.append((time.monotonic(), event))

    def of(self, kind) -> list:
        return [e for _, e in self if isinstance(e, kind)]

    def lines(self, step: str) -> list[str]:
        return [e.line for e in self.of(StepOutput) if e.step == step]


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie nobody reaped is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def until_dead(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_failing_step_stops_the_run_with_its_output_and_exit_status(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: failing
        description: the second step fails
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: first
            run: echo ran > {{ dir }}/first
            always: true
          - name: fails
            run: |
              echo going to fail
              echo on stderr >&2
              exit 3
            always: true
          - name: never runs
            run: touch {{ dir }}/after
            always: true
        """)
    events = Events()
    result = await runner.run(pb, target, {"dir": str(tmp_path)}, on_event=events)

    assert (result.outcome, result.failed_step, result.exit_status) == ("failed", "fails", 3)
    assert result.error == "step 2 'fails': exited with status 3"
    (failed,) = events.of(StepFailed)
    assert failed.step == "fails" and failed.exit_status == 3
    assert failed.output == ("going to fail", "on stderr")  # stderr arrives with stdout, in order
    assert [e.step for e in events.of(StepStarted)] == ["first", "fails"]
    assert not (tmp_path / "after").exists() and (tmp_path / "first").exists()
    assert isinstance(events[0][1], RunStarted) and isinstance(events[-1][1], RunFinished)

    record = await runner.runs.get(result.run_id)
    assert (record.outcome, record.failed_step, record.playbook) == ("failed", "fails", "failing")
    assert record.finished_us >= record.started_us
    assert [(s.name, s.status, s.exit_status) for s in record.steps] == [("first", "ok", 0), ("fails", "failed", 3)]
    assert record.steps[1].output == "going to fail\non stderr\n"
    assert record.steps[1].detail == "exited with status 3"


async def test_a_step_past_its_timeout_fails_and_its_processes_are_killed(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: hangs
        description: a step that never ends
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: hangs
            run: |
              sleep 60 &
              echo $! > {{ dir }}/sleep.pid
              echo started
              wait
            always: true
            timeout: 1
        """)
    events = Events()
    t0 = time.monotonic()
    result = await runner.run(pb, target, {"dir": str(tmp_path)}, on_event=events)
    assert time.monotonic() - t0 < 10
    assert (result.outcome, result.failed_step, result.exit_status) == ("failed", "hangs", None)
    (failed,) = events.of(StepFailed)
    assert failed.reason == "timed out after 1 s" and failed.output == ("started",)
    # The whole process group went, not only the shell the runner started.
    assert await until_dead(int((tmp_path / "sleep.pid").read_text()))
    assert (await runner.runs.get(result.run_id)).steps[0].detail == "timed out after 1 s"


async def test_guards_and_file_checks_make_a_second_run_skip_what_is_done(tmp_path, runner, target):
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(300_000))
    remote = tmp_path / "host"
    remote.mkdir()
    pb = playbook(tmp_path, """
        name: idempotent
        description: every step knows when it is done
        variables:
          dir:
            description: where the files go
          payload:
            description: a local file to upload
          greeting:
            default: hello
            description: rendered into a file
        steps:
          - name: make a marker
            guard: test -f {{ dir }}/marker
            run: |
              touch {{ dir }}/marker
              echo made the marker
          - name: not for this host
            only_if: "false"
            run: touch {{ dir }}/never
            always: true
          - name: upload the payload
            upload:
              source: "{{ payload }}"
              dest: "{{ dir }}/payload"
              mode: "0640"
          - name: render the greeting
            template:
              source: greeting.txt
              dest: "{{ dir }}/greeting"
              mode: "0644"
        """, **{"greeting.txt": "{{ greeting }}, world\n"})
    values = {"dir": str(remote), "payload": local}

    first = Events()
    assert (await runner.run(pb, target, values, on_event=first)).outcome == "succeeded"
    assert [e.step for e in first.of(StepFinished)] == ["make a marker", "upload the payload", "render the greeting"]
    assert [(e.step, e.reason) for e in first.of(StepSkipped)] == [
        ("not for this host", "not applicable (only_if failed)")]
    assert (remote / "payload").read_bytes() == local.read_bytes()
    assert (remote / "payload").stat().st_mode & 0o777 == 0o640
    assert (remote / "greeting").read_text() == "hello, world\n"
    assert not (remote / "never").exists()

    second = Events()
    result = await runner.run(pb, target, values, on_event=second)
    assert result.outcome == "succeeded" and not second.of(StepStarted)
    assert [(e.step, e.reason) for e in second.of(StepSkipped)] == [
        ("make a marker", "already done (guard succeeded)"),
        ("not for this host", "not applicable (only_if failed)"),
        ("upload the payload", "up to date (same content and mode)"),
        ("render the greeting", "up to date (same content and mode)"),
    ]
    record = await runner.runs.get(result.run_id)
    assert [s.status for s in record.steps] == ["skipped"] * 4

    # A changed variable or file is done again; what did not change stays skipped.
    local.write_bytes(os.urandom(1000))
    third = Events()
    await runner.run(pb, target, {**values, "greeting": "bonjour"}, on_event=third)
    assert [e.step for e in third.of(StepFinished)] == ["upload the payload", "render the greeting"]
    assert (remote / "greeting").read_text() == "bonjour, world\n"
    assert (remote / "payload").read_bytes() == local.read_bytes()


async def test_secrets_reach_their_file_and_nothing_else(tmp_path, runner, target, db):
    token = "tmh-" + "s3cr3t" * 6
    pb = playbook(tmp_path, """
        name: secret
        description: a token in a file
        variables:
          dir:
            description: a scratch directory on the host
          token:
            secret: true
            description: the host token
        steps:
          - name: write the token
            template:
              source: agent.toml
              dest: "{{ dir }}/agent.toml"
              mode: "0600"
          - name: print the file
            run: cat {{ dir }}/agent.toml
            always: true
          - name: fail printing it
            run: |
              cat {{ dir }}/agent.toml
              exit 1
            always: true
        """, **{"agent.toml": "host_token = {{ token | toml }}\n"})
    events = Events()
    result = await runner.run(pb, target, {"dir": str(tmp_path), "token": token}, on_event=events)
    assert result.outcome == "failed"

    written = tmp_path / "agent.toml"
    assert written.read_text() == f'host_token = "{token}"\n'
    assert written.stat().st_mode & 0o777 == 0o600
    assert events.lines("print the file") == ['host_token = "***"']
    assert token not in repr(events)
    record = await runner.runs.get(result.run_id)
    assert record.variables == {"dir": str(tmp_path), "token": "***"}
    assert token not in repr(record)
    await db.dispose()  # the whole database file, write-ahead log included, never saw it
    for f in tmp_path.glob("provision.db*"):
        assert token.encode() not in f.read_bytes()


async def test_output_lines_arrive_while_the_step_runs(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: stream
        description: output is streamed
        steps:
          - name: talk slowly
            run: |
              echo first
              sleep 1
              echo second
            always: true
        """)
    events = Events()
    await runner.run(pb, target, {}, on_event=events)
    arrived = {e.line: t for t, e in events if isinstance(e, StepOutput)}
    finished = next(t for t, e in events if isinstance(e, StepFinished))
    assert set(arrived) == {"first", "second"}
    assert finished - arrived["first"] > 0.5  # not buffered until the step ended


async def test_a_waiting_check_retries_and_a_failing_check_stops_with_its_message(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: checks
        description: waiting and failing checks
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: get ready slowly
            run: |
              ready={{ dir }}/ready
              setsid sh -c 'sleep 1; touch "$0"' "$ready" </dev/null >/dev/null 2>&1 &
            always: true
          - name: ready
            check: test -f {{ dir }}/ready
            wait: true
            interval: 0.2
            timeout: 20
            message: never got ready
          - name: broken
            check: |
              echo looked at it
              false
            message: the thing is broken
          - name: after
            run: "true"
            always: true
        """)
    events = Events()
    result = await runner.run(pb, target, {"dir": str(tmp_path)}, on_event=events)
    assert [e.step for e in events.of(StepFinished)] == ["get ready slowly", "ready"]
    assert (result.outcome, result.failed_step) == ("failed", "broken")
    (failed,) = events.of(StepFailed)
    assert failed.reason == "the thing is broken (exit status 1)" and failed.output == ("looked at it",)


async def test_leaving_the_event_stream_cancels_the_run(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: long
        description: a long step
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: long
            run: |
              echo $$ > {{ dir }}/shell.pid
              echo working
              sleep 60
            always: true
            timeout: 120
        """)
    async with contextlib.aclosing(runner.stream(pb, target, {"dir": str(tmp_path)})) as events:
        async for event in events:
            if isinstance(event, StepOutput):
                break
    assert await until_dead(int((tmp_path / "shell.pid").read_text()))
    (run,) = await runner.runs.recent()
    assert (run.outcome, run.failed_step) == ("cancelled", "long")


async def test_bad_variables_fail_before_anything_runs_or_is_recorded(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: vars
        description: needs dir
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: use it
            run: touch {{ dir }}/x
            always: true
        """)
    with pytest.raises(VariableError) as err:
        await runner.run(pb, target, {"dri": "/tmp"})
    assert str(err.value) == (
        "playbook vars: unknown variable 'dri' (this playbook declares: dir)\n"
        "playbook vars: variable dir is required (used by step 1 'use it'): a scratch directory on the host")
    assert await runner.runs.recent() == []


async def test_a_key_the_host_does_not_accept_is_a_recorded_failure(tmp_path, db, trusted, target, keys):
    from tests.integration.provision.sshd import keygen

    stranger = keygen(tmp_path / "stranger")
    pb = playbook(tmp_path, """
        name: hello
        description: says hello
        steps:
          - name: hello
            run: echo hello
            always: true
        """)
    runner = PlaybookRunner(db, trusted)
    result = await runner.run(pb, dataclasses.replace(target, key_file=stranger), {})
    assert result.outcome == "failed" and result.failed_step is None
    assert "refused the key" in result.error and str(stranger) in result.error
    assert (await runner.runs.get(result.run_id)).error == result.error


async def test_a_file_step_into_a_missing_directory_fails_naming_the_file(tmp_path, runner, target):
    pb = playbook(tmp_path, """
        name: nodir
        description: the directory is not there
        variables:
          dir:
            description: a scratch directory on the host
        steps:
          - name: render
            template:
              source: t.txt
              dest: "{{ dir }}/missing/t.txt"
              mode: "0600"
        """, **{"t.txt": "hello\n"})
    events = Events()
    result = await runner.run(pb, target, {"dir": str(tmp_path)}, on_event=events)
    assert (result.outcome, result.failed_step) == ("failed", "render")
    (failed,) = events.of(StepFailed)
    assert failed.reason == f"No such file: {tmp_path}/missing/t.txt"
    assert list(tmp_path.glob("missing*")) == []
