"""A job's events: numbered, bounded, filtered by `after`, and playbook events told plainly."""

from __future__ import annotations

from backend.provision.jobs import MAX_EVENTS, MAX_JOBS, JobBook
from backend.provision.run_events import StepFailed, StepOutput


def test_events_are_numbered_bounded_and_read_after_a_sequence_number():
    job = JobBook().new("provision", "vast", "m")
    for i in range(MAX_EVENTS + 10):
        job.runner_event(StepOutput(12, "install", f"line {i}"), "bootstrap")
    kept = job.out(after=0).events
    assert len(kept) == MAX_EVENTS and kept[0].seq == 11 and kept[-1].seq == MAX_EVENTS + 10
    last = MAX_EVENTS + 8
    assert [e.text for e in job.out(after=last).events] == [f"line {last}", f"line {last + 1}"]
    assert job.out().events == []  # the job list shows no events


def test_a_failed_check_carries_its_output_and_the_job_its_error():
    job = JobBook().new("provision", "ssh")
    job.runner_event(StepFailed(2, "Python 3.11 or newer", "too old (exit status 1)", 1, ("3.8.10",)), "bootstrap")
    job.fail("bootstrap failed")
    out = job.out(after=0)
    assert [(e.kind, e.step) for e in out.events] == [("step_failed", "Python 3.11 or newer"), ("error", None)]
    assert out.events[0].text == "2. Python 3.11 or newer: too old (exit status 1)\n  3.8.10"
    assert (out.state, out.error, out.finished_us is not None) == ("failed", "bootstrap failed", True)


def test_finished_jobs_beyond_the_limit_are_forgotten_oldest_first():
    book = JobBook()
    running = book.new("teardown", "vast")
    first = book.new("provision", "vast")
    first.succeed("done")
    for _ in range(MAX_JOBS):
        book.new("provision", "vast").succeed("done")
    ids = [j.id for j in book.all()]
    assert running.id in ids and first.id not in ids and len(ids) == MAX_JOBS
