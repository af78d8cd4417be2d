"""`tokenmill simulate` on the production services: its figures are the run's own ledger's, it is
deterministic for a seed, the autoscaler acts in it, and a bad plan is refused by name."""

from __future__ import annotations

import sqlite3

import pytest

from backend.catalogue import load_catalogue
from backend.field_errors import FieldError
from backend.settings import Settings
from backend.simulate.plan import SimPlan, parse_fleet
from backend.simulate.result import TOTAL
from backend.simulate.run import run_simulation

LLAMA = "llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(None)


def _settings(tmp_path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "operator", **kw)


def test_the_report_is_the_runs_own_ledger(tmp_path, catalogue):
    plan = SimPlan(days=2, fleet=parse_fleet(f"rtx4090:runpod:1:{LLAMA},rtx3090:community:1:{LLAMA}", catalogue),
                   seed=7, load=0.5)
    kept = tmp_path / "run"
    r = run_simulation(plan, _settings(tmp_path), catalogue, keep_in=kept)
    db = sqlite3.connect(kept / "ledger.db")
    start, end = r.start_us, r.end_us
    requests, charged, share, prompt, completion = db.execute(
        "SELECT SUM(requests), SUM(charged), SUM(host_share), SUM(prompt_tokens), SUM(completion_tokens) "
        "FROM usage_event WHERE created_us >= ? AND created_us < ?", (start, end)).fetchone()
    total = r.grand_total
    assert total.requests == requests and total.requests > 100_000  # nothing refused: every request is a row
    assert (total.revenue_nano, total.payouts_nano) == (charged, share)
    assert (total.prompt_tokens, total.completion_tokens) == (prompt, completion)
    # Every usage event is a settled transfer: revenue in the ledger is what the report says (and the
    # warm-up before the first day is in the ledger too, outside the report's window).
    revenue_all = db.execute("SELECT SUM(amount) FROM ledger_transfer WHERE code = 'usage' AND kind IN "
                             "('post_pending')").fetchone()[0]
    charged_all = db.execute("SELECT SUM(charged) FROM usage_event").fetchone()[0]
    assert revenue_all == charged_all >= charged
    # The community host earned 70 % of what it served; the rented one costs $0.34/h, the community none.
    assert 0 < total.payouts_nano < total.revenue_nano
    assert total.gpu_cost_nano == 2 * 24 * 340_000_000
    assert total.profit_nano == total.revenue_nano - total.payouts_nano - total.gpu_cost_nano
    # Days add up to the totals.
    days = [d for d in r.days if d.model == TOTAL]
    assert len(days) == 2 and sum(d.revenue_nano for d in days) == total.revenue_nano
    assert sum(d.requests for d in days) == total.requests
    # Hours too, and each carries the price at its end.
    hours = [h for h in r.hours if h.model == TOTAL]
    assert len(hours) == 48 and sum(h.revenue_nano for h in hours) == total.revenue_nano
    assert all(h.price_completion_per_mtok > 0 for h in r.hours if h.model == LLAMA)
    assert {(b.provider, b.gpu) for b in r.break_even} == {("runpod", "rtx4090"), ("community", "rtx3090")}
    db.close()


def test_the_same_seed_gives_the_same_run(tmp_path, catalogue):
    plan = SimPlan(days=0.5, fleet=parse_fleet(f"rtx4090:vast:1:{LLAMA}", catalogue), seed=3)
    a = run_simulation(plan, _settings(tmp_path / "a"), catalogue)
    b = run_simulation(plan, _settings(tmp_path / "b"), catalogue)
    c = run_simulation(SimPlan(days=0.5, fleet=plan.fleet, seed=4), _settings(tmp_path / "c"), catalogue)
    assert a.totals == b.totals and a.hours == b.hours
    assert a.grand_total.requests != c.grand_total.requests


def test_the_autoscaler_rents_when_demand_outgrows_the_fleet(tmp_path, catalogue):
    # Demand at 1.3x one host's capacity: the autoscaler (on for this plan) rents the cheapest offer that
    # fits through the Provisioner; the rented host serves, and costs from when it joined.
    plan = SimPlan(days=0.5, fleet=parse_fleet(f"rtx4090:runpod:1:{LLAMA}", catalogue), load=1.3, demand="flat",
                   autoscale=True, seed=2)
    r = run_simulation(plan, _settings(tmp_path), catalogue)
    kinds = [d.kind for d in r.decisions]
    assert "autoscale.scale_up" in kinds, kinds
    up = next(d for d in r.decisions if d.kind == "autoscale.scale_up")
    assert "rent" in up.message
    assert max(h.replicas for h in r.hours if h.model == LLAMA) > 1.5
    assert r.grand_total.gpu_cost_nano > 12 * 340_000_000  # more than the one host's half day


def test_a_bad_plan_is_refused_by_name(tmp_path, catalogue):
    with pytest.raises(FieldError, match="fleet: 'rtx9999:vast:1': unknown GPU"):
        parse_fleet("rtx9999:vast:1", catalogue)
    with pytest.raises(FieldError, match=r"fleet: .*no lambda offer of rtx4090"):
        parse_fleet("rtx4090:lambda:1", catalogue)
    with pytest.raises(FieldError, match="count must be a whole number"):
        parse_fleet("rtx4090:vast:two", catalogue)
    big = "glm-5" if "glm-5" in catalogue.model_by_id else "llama-3.1-70b-instruct"
    with pytest.raises(FieldError, match=r"fits on 1 x NVIDIA GeForce RTX 4090"):
        run_simulation(SimPlan(days=1, fleet=parse_fleet(f"rtx4090:vast:1:{big}", catalogue)),
                       _settings(tmp_path), catalogue)
    with pytest.raises(FieldError, match="days: must be more than 0"):
        run_simulation(SimPlan(days=0, fleet=parse_fleet("rtx4090:vast:1", catalogue)), _settings(tmp_path), catalogue)
    with pytest.raises(FieldError, match="models: unknown model 'gpt-9'"):
        run_simulation(SimPlan(days=1, models=("gpt-9",)), _settings(tmp_path), catalogue)


def test_the_command_prints_its_table_and_writes_its_files(tmp_path):
    import csv
    import os
    import subprocess
    import sys

    env = {**os.environ, "TOKENMILL_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "100"}
    tokenmill = [sys.executable, "-c", "from console.cli import main; raise SystemExit(main())"]
    out = tmp_path / "out"
    done = subprocess.run([*tokenmill, "simulate", "--days", "1", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Per day and model" in done.stdout and "Break-even utilization" in done.stdout
    assert "Profit per hour" in done.stdout and "simulated requests in" in done.stdout
    names = {p.name for p in out.iterdir()}
    assert {"days.csv", "hours.csv", "break_even.csv", "decisions.csv", "report.html", "profit.svg", "ledger"} <= names
    with (out / "days.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(r["model"] == LLAMA and int(r["requests"]) > 0 for r in rows)
    assert "<svg" in (out / "report.html").read_text()
    bad = subprocess.run([*tokenmill, "simulate", "--fleet", "rtx9999:vast:1"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown GPU 'rtx9999'" in bad.stderr
