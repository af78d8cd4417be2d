"""The record of playbook runs, on every database the ledger supports."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from backend.provision.runs import RunLog, StepRecord


async def test_a_run_is_recorded_with_its_steps_and_outcome(engine):
    runs = RunLog(engine)
    run_id = await runs.begin(playbook="bootstrap", address="root@10.0.0.7:22",
                              variables={"engine": "sim", "models": ["m"], "host_token": "***"}, host_id="h_1")
    running = await runs.get(run_id)
    assert (running.outcome, running.finished_us, running.steps) == ("running", None, ())

    await runs.add_step(run_id, StepRecord(1, "check", "ok", None, 0, 10, 20, "Linux\n"))
    await runs.add_step(run_id, StepRecord(2, "install", "failed", "exited with status 2", 2, 20, 30,
                                           "no such file\n", output_dropped_bytes=4096))
    await runs.finish(run_id, "failed", failed_step="install", error="step 2 'install': exited with status 2")

    record = await runs.get(run_id)
    assert (record.outcome, record.failed_step, record.host_id) == ("failed", "install", "h_1")
    assert record.variables == {"engine": "sim", "models": ["m"], "host_token": "***"}
    assert record.finished_us >= record.started_us
    assert [(s.position, s.name, s.status, s.exit_status, s.output, s.output_dropped_bytes) for s in record.steps] == [
        (1, "check", "ok", 0, "Linux\n", 0), (2, "install", "failed", 2, "no such file\n", 4096)]

    other = await runs.begin(playbook="teardown", address="root@10.0.0.8:22", variables={})
    assert [r.id for r in await runs.recent()] == [other, run_id]
    assert [r.id for r in await runs.recent(host_id="h_1")] == [run_id]
    with pytest.raises(KeyError, match="no provisioning run 'pr_nope'"):
        await runs.get("pr_nope")


async def test_the_database_refuses_an_unknown_outcome_and_a_step_recorded_twice(engine):
    runs = RunLog(engine)
    run_id = await runs.begin(playbook="bootstrap", address="root@h:22", variables={})
    with pytest.raises(IntegrityError):
        await runs.finish(run_id, "exploded")
    await runs.add_step(run_id, StepRecord(1, "a", "ok", None, 0, 1, 2))
    with pytest.raises(IntegrityError):
        await runs.add_step(run_id, StepRecord(1, "a", "ok", None, 0, 1, 2))


async def test_runs_left_running_by_a_stopped_backend_are_closed(engine):
    runs = RunLog(engine)
    done = await runs.begin(playbook="bootstrap", address="root@h:22", variables={})
    await runs.finish(done, "succeeded")
    cut = await runs.begin(playbook="bootstrap", address="root@h:22", variables={})
    assert await runs.interrupt_running() == 1
    record = await runs.get(cut)
    assert record.outcome == "cancelled" and record.finished_us is not None and "interrupted" in record.error
    assert (await runs.get(done)).outcome == "succeeded"
    assert await runs.interrupt_running() == 0
