"""`tokenmill-host payout` and `tokenmill payouts` against a real router: the host sets its own
threshold and Stripe account (the router's refusal printed as it names the field), the operator
makes a host manual, runs the payouts, marks the one due paid and lists it."""

from __future__ import annotations

import argparse
import asyncio

from hostkit.payout_command import cmd_payout
from tests.integration.billing.payouts_helpers import ACCOUNT, USD, earn, enrolled_host, payable, payout_postings
from tests.integration.test_invoices_api import tokenmill
from tests.router_harness import Router


async def _host_payout(tmp_path, router: Router, token: str, capsys, **change) -> tuple[int, str]:
    config = tmp_path / "agent.toml"
    config.write_text(f'router_url = "{router.url}"\nhost_token = "{token}"\nmodels = ["llama-3.1-8b-instruct"]\n')
    args = argparse.Namespace(config=str(config), json=False, threshold=change.get("threshold"),
                              stripe_account=change.get("stripe_account"))
    rc = await asyncio.to_thread(cmd_payout, args)
    out = capsys.readouterr()
    return rc, out.out + out.err


async def test_a_host_and_the_operator_set_and_pay_through_the_commands(router: Router, tmp_path, capsys):
    host_id, header = await enrolled_host(router)
    token = header["Authorization"].removeprefix("Bearer ")
    rc, out = await _host_payout(tmp_path, router, token, capsys, threshold="2.00", stripe_account=ACCOUNT)
    assert rc == 0 and f"Stripe account {ACCOUNT}" in out and "$2.00, at least $1.00" in out, out
    rc, out = await _host_payout(tmp_path, router, token, capsys, threshold="0.10")
    assert rc == 1 and "threshold_usd: must be at least $1.00" in out and "HTTP 400" in out, out

    rc, out = await tokenmill(router, tmp_path, "payouts", "host", host_id, "--method", "manual")
    assert rc == 0 and "manual (paid by other means, recorded)" in out and "$2.00" in out, out
    client_id, _ = await router.client_with_key("acme", credit_usd="100.00")
    await earn(router, client_id, host_id, 3 * USD)
    rc, out = await tokenmill(router, tmp_path, "payouts", "run")
    assert rc == 0 and "due: pay by other means" in out and "$3.00" in out, out
    [due] = (await router.http.get("/admin/payouts", params={"state": "pending"}, headers=router.admin)).json()
    rc, out = await tokenmill(router, tmp_path, "payouts", "mark-paid", due["id"], "--reference", "SEPA #77")
    assert rc == 0 and f"payout {due['id']} of $3.00 to host gpu-1 recorded as paid (SEPA #77)" in out, out
    assert len(await payout_postings(router, host_id)) == 1
    rc, out = await tokenmill(router, tmp_path, "payouts", "list", "--state", "paid")
    assert rc == 0 and due["id"] in out and "SEPA #77" in out, out
    rc, out = await tokenmill(router, tmp_path, "payouts", "mark-paid", due["id"], "--reference", "other")
    assert rc == 1 and "(409, payout_conflict)" in out, out

    # A manual payout the operator will not pay by hand is canceled; the amount stays owed.
    await earn(router, client_id, host_id, 3 * USD)
    await tokenmill(router, tmp_path, "payouts", "run")
    [due] = (await router.http.get("/admin/payouts", params={"state": "pending"}, headers=router.admin)).json()
    rc, out = await tokenmill(router, tmp_path, "payouts", "cancel", due["id"])
    assert rc == 0 and f"payout {due['id']} of $3.00 to host gpu-1 canceled: the amount stays owed" in out, out
    assert payable(router, host_id) == 3 * USD
    rc, out = await tokenmill(router, tmp_path, "payouts", "cancel", "po_nope")
    assert rc == 1 and "(404, not_found)" in out, out
