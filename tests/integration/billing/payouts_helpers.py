"""What the payout tests share: an enrolled host (no engine: payouts need only its token and its
payable), earnings settled through the ledger's request path, and the ledger's payout postings."""

from __future__ import annotations

from sqlalchemy import select

from backend.ledger import chart
from backend.ledger.service import Usage
from backend.ledger.tables import LedgerAccount, LedgerTransfer
from tests.router_harness import Router

USD = 10**9
CENT = 10**7
MODEL = "llama-3.1-8b-instruct"
ACCOUNT = "acct_1TokenmillHost01"


async def enrolled_host(router: Router, name: str = "gpu-1", share_bps: int = 5000) -> tuple[str, dict[str, str]]:
    """A community host earning `share_bps` of what it serves: (its id, its host-token header)."""
    r = await router.http.post("/admin/hosts", json={"name": name, "provider": "local",
                                                     "payout_share_bps": share_bps}, headers=router.admin)
    r.raise_for_status()
    body = r.json()
    return body["host"]["id"], {"Authorization": f"Bearer {body['token']}"}


async def earn(router: Router, client_id: str, host_id: str, share: int) -> None:
    """One client request settled as the router settles it: charged twice `share`, `share` to the host."""
    ledger, now = router.services.ledger, router.services.clock.now_us()
    request_id = ledger.mint_key("req")
    hold, durable = ledger.reserve(chart.client_account(client_id), chart.REVENUE, 2 * share, code="usage",
                                   ref=request_id, key=request_id)
    await durable
    usage = Usage(request_id=request_id, client_id=client_id, model=MODEL, prompt_tokens=100, completion_tokens=100,
                  price_prompt_per_mtok=USD, price_completion_per_mtok=USD, started_us=now, finished_us=now,
                  host_id=host_id)
    await ledger.settle(hold.key, charged=2 * share, usage=usage, host_share=share,
                        host_account=chart.host_account(host_id))


async def payout_postings(router: Router, host_id: str) -> list[dict]:
    """The ledger's `host_payout` transfers out of the host's payable, read from the database."""
    t, a = LedgerTransfer.__table__, LedgerAccount.__table__
    async with router.services.engine.connect() as conn:
        acc = (await conn.execute(select(a.c.id).where(a.c.code == chart.host_account(host_id)))).scalar()
        rows = await conn.execute(select(t).where(t.c.debit_account_id == acc, t.c.code == "host_payout"))
        return [dict(r) for r in rows.mappings()]


def payable(router: Router, host_id: str) -> int:
    return router.services.ledger.account(chart.host_account(host_id)).balance
