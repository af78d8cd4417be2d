"""Read-side checks of the ledger, straight from the database (tests, audits, `tokenmill`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_RESOLVED = "EXISTS (SELECT 1 FROM ledger_transfer r WHERE r.pending_key = t.key)"

_CHECKS: dict[str, str] = {
    "cached balance equals the sum of its postings": f"""
        WITH posted AS (
            SELECT debit_account_id AS a, amount AS d, 0 AS c, 0 AS dq, 0 AS cq FROM ledger_transfer
             WHERE kind IN ('posted', 'post_pending')
            UNION ALL
            SELECT credit_account_id, 0, amount, 0, 0 FROM ledger_transfer
             WHERE kind IN ('posted', 'post_pending')
            UNION ALL
            SELECT debit_account_id, 0, 0, amount, 0 FROM ledger_transfer t
             WHERE kind = 'pending' AND NOT {_RESOLVED}
            UNION ALL
            SELECT credit_account_id, 0, 0, 0, amount FROM ledger_transfer t
             WHERE kind = 'pending' AND NOT {_RESOLVED}
        ), sums AS (
            SELECT a, SUM(d) AS d, SUM(c) AS c, SUM(dq) AS dq, SUM(cq) AS cq FROM posted GROUP BY a
        )
        SELECT acc.code FROM ledger_account acc LEFT JOIN sums s ON s.a = acc.id
         WHERE acc.debits_posted <> COALESCE(s.d, 0) OR acc.credits_posted <> COALESCE(s.c, 0)
            OR acc.debits_pending <> COALESCE(s.dq, 0) OR acc.credits_pending <> COALESCE(s.cq, 0)""",
    "no capped account below zero": """
        SELECT code FROM ledger_account
         WHERE (debits_must_not_exceed_credits AND debits_posted + debits_pending > credits_posted)
            OR (credits_must_not_exceed_debits AND credits_posted + credits_pending > debits_posted)""",
    "a resolution matches its hold": """
        SELECT r.key FROM ledger_transfer r JOIN ledger_transfer p ON p.key = r.pending_key
         WHERE p.kind <> 'pending'
            OR r.debit_account_id <> p.debit_account_id OR r.credit_account_id <> p.credit_account_id
            OR (r.kind = 'post_pending' AND r.amount > p.amount)
            OR (r.kind IN ('void_pending', 'expire_pending') AND r.amount <> p.amount)""",
    "open holds are exactly the unresolved ones": f"""
        SELECT t.key FROM ledger_transfer t
         WHERE t.kind = 'pending' AND NOT {_RESOLVED}
           AND NOT EXISTS (SELECT 1 FROM ledger_open_hold o WHERE o.key = t.key)
        UNION ALL
        SELECT o.key FROM ledger_open_hold o JOIN ledger_transfer t ON t.key = o.key WHERE {_RESOLVED}""",
    "every reference resolves": """
        SELECT t.key FROM ledger_transfer t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.debit_account_id)
            OR NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.id = t.credit_account_id)
            OR (t.pending_key IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM ledger_transfer p WHERE p.key = t.pending_key))
        UNION ALL
        SELECT o.key FROM ledger_open_hold o
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transfer t WHERE t.key = o.key)""",
    "a usage event's charge is what its hold posted": """
        SELECT u.request_id FROM usage_event u
          LEFT JOIN ledger_transfer r ON r.pending_key = u.hold_key
         WHERE r.key IS NULL
            OR (r.kind = 'post_pending' AND r.amount <> u.charged)
            OR (r.kind <> 'post_pending' AND u.charged <> 0)""",
    "a host is paid exactly its share": """
        SELECT u.request_id FROM usage_event u
          LEFT JOIN ledger_transfer h ON h.key = u.hold_key || '/host'
         WHERE (u.host_share = 0 AND h.key IS NOT NULL)
            OR (u.host_share > 0 AND (h.key IS NULL OR h.amount <> u.host_share))""",
    "a channel is owed exactly its fee": """
        SELECT u.request_id FROM usage_event u
          LEFT JOIN ledger_transfer f ON f.key = u.hold_key || '/fee'
         WHERE (u.fee = 0 AND f.key IS NOT NULL)
            OR (u.fee > 0 AND (f.key IS NULL OR f.amount <> u.fee))""",
}


async def check_invariants(conn: AsyncConnection) -> list[str]:
    """Every violated invariant, named, with up to five offending rows. Empty means sound."""
    problems = []
    # Summed here, in Python's unbounded integers: the sums over all accounts can pass int64
    # (SQLite's SUM then fails with "integer overflow") long before any one account does.
    totals = [0, 0, 0, 0]
    for row in await conn.execute(
            text("SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM ledger_account")):
        for i in range(4):
            totals[i] += row[i]
    for name, debits, credits in (("posted debits equal posted credits", totals[0], totals[1]),
                                  ("pending debits equal pending credits", totals[2], totals[3])):
        if debits != credits:
            problems.append(f"{name}: violated by {debits - credits}")
    for name, sql in _CHECKS.items():
        rows = (await conn.execute(text(sql))).fetchall()
        if rows:
            sample = ", ".join(str(r[0]) for r in rows[:5])
            problems.append(f"{name}: violated by {sample}")
    return problems


async def account_sums(conn: AsyncConnection) -> dict[str, tuple[int, int, int, int]]:
    rows = await conn.execute(
        text("SELECT code, debits_posted, credits_posted, debits_pending, credits_pending FROM ledger_account")
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
