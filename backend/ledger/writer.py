"""Group commit: one writer task makes queued operations durable, many per transaction.

The writer never waits for a batch to fill. It commits whatever queued while the previous
commit ran (up to `max_batch` operations), so an idle ledger pays one small commit per
operation and a busy one shares each commit among hundreds. Each caller awaits the durability
of its own operation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.ledger.db import IMMEDIATE
from backend.ledger.state import Op
from backend.ledger.tables import LedgerAccount, LedgerOpenHold, LedgerTransfer, UsageEvent

log = logging.getLogger(__name__)

_ACCOUNT = LedgerAccount.__table__
_TRANSFER = LedgerTransfer.__table__
_OPEN = LedgerOpenHold.__table__
_USAGE = UsageEvent.__table__

_INSERT_ACCOUNT = insert(_ACCOUNT).returning(_ACCOUNT.c.id)
_INSERT_TRANSFERS = insert(_TRANSFER)
_INSERT_OPEN = insert(_OPEN)
_INSERT_USAGE = insert(_USAGE)
_DELETE_OPEN = delete(_OPEN).where(_OPEN.c.key == bindparam("k"))
_APPLY_DELTAS = (
    update(_ACCOUNT)
    .where(_ACCOUNT.c.id == bindparam("a"))
    .values(
        debits_posted=_ACCOUNT.c.debits_posted + bindparam("dp", type_=_ACCOUNT.c.debits_posted.type),
        credits_posted=_ACCOUNT.c.credits_posted + bindparam("cp", type_=_ACCOUNT.c.credits_posted.type),
        debits_pending=_ACCOUNT.c.debits_pending + bindparam("dq", type_=_ACCOUNT.c.debits_pending.type),
        credits_pending=_ACCOUNT.c.credits_pending + bindparam("cq", type_=_ACCOUNT.c.credits_pending.type),
    )
)


class GroupCommitWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int,
        on_failure: Callable[[BaseException, list[Op]], Awaitable[None]],
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_failure = on_failure
        self._queue: list[Op] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._conn: AsyncConnection | None = None
        self.batches = 0
        self.ops = 0

    async def start(self) -> None:
        conn = await self._engine.connect()
        self._conn = await conn.execution_options(**IMMEDIATE)
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    def enqueue(self, op: Op) -> None:
        self._queue.append(op)
        self._idle.clear()
        self._wake.set()

    def take_queued(self) -> list[Op]:
        """Remove and return everything not yet handed to a commit (used on failure)."""
        queued, self._queue = self._queue, []
        return queued

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def drain(self) -> None:
        """Wait until everything enqueued so far is durable (or failed)."""
        if self._task is not None:
            await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            await self.drain()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    await self._commit(batch)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    log.error("ledger commit of %d operations failed: %s", len(batch), exc)
                    await self._on_failure(exc, batch)
                else:
                    self.batches += 1
                    self.ops += len(batch)
                    for op in batch:
                        if not op.future.done():
                            op.future.set_result(op.result)
            self._idle.set()

    async def _commit(self, batch: list[Op]) -> None:
        conn = self._conn
        assert conn is not None
        transfers: list[dict] = []
        usage: list[dict] = []
        open_add: dict[str, dict] = {}
        open_del: list[str] = []
        deltas: dict[int, list[int]] = {}
        new_accounts: list[Op] = []
        for op in batch:
            if op.new_account is not None:
                new_accounts.append(op)
            transfers += op.transfers
            usage += op.usage
            for row in op.open_add:
                open_add[row["key"]] = row
            for key in op.open_del:
                # A hold opened and resolved within one batch never touches the open-hold index.
                if open_add.pop(key, None) is None:
                    open_del.append(key)
            for aid, dp, cp, dq, cq in op.deltas:
                d = deltas.get(aid)
                if d is None:
                    deltas[aid] = [dp, cp, dq, cq]
                else:
                    d[0] += dp
                    d[1] += cp
                    d[2] += dq
                    d[3] += cq

        async with conn.begin():
            for op in new_accounts:
                op.result.id = (await conn.execute(_INSERT_ACCOUNT, op.new_account)).scalar_one()
            if transfers:
                await conn.execute(_INSERT_TRANSFERS, transfers)
            if open_add:
                await conn.execute(_INSERT_OPEN, list(open_add.values()))
            if open_del:
                await conn.execute(_DELETE_OPEN, [{"k": k} for k in open_del])
            if usage:
                await conn.execute(_INSERT_USAGE, usage)
            if deltas:
                await conn.execute(
                    _APPLY_DELTAS,
                    [{"a": a, "dp": d[0], "cp": d[1], "dq": d[2], "cq": d[3]} for a, d in deltas.items()],
                )
