"""The provisioned_host rows: which machine (and which rented instance) is behind each host that
tokenmill set up, kept so that tearing it down works after a restart of the backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.provision.tables import ProvisionedHost
from backend.provision.template import Value
from backend.runtime.clock import now_us

_T = ProvisionedHost.__table__


@dataclass(frozen=True, slots=True)
class HostRecord:
    host_id: str
    provider: str
    instance_name: str
    instance_id: str | None
    ssh_host: str | None
    ssh_port: int
    ssh_user: str
    model: str
    state: str
    created_us: int
    teardown_variables: dict[str, Value] = field(default_factory=dict)

    @property
    def rented(self) -> bool:
        """Whether a cloud bills for this machine (the operator's own, provider ssh, is not ours to destroy)."""
        return self.provider != "ssh"

    @property
    def address(self) -> str | None:
        if self.ssh_host is None:
            return None
        host = f"[{self.ssh_host}]" if ":" in self.ssh_host else self.ssh_host
        return f"{self.ssh_user}@{host}:{self.ssh_port}"


class ProvisionedHosts:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, *, host_id: str, provider: str, instance_name: str, model: str,
                  ssh_host: str | None = None, ssh_port: int = 22, ssh_user: str = "root",
                  teardown_variables: Mapping[str, Value] | None = None) -> HostRecord:
        now = now_us()
        values = dict(host_id=host_id, provider=provider, instance_name=instance_name, instance_id=None,
                      ssh_host=ssh_host, ssh_port=ssh_port, ssh_user=ssh_user, model=model,
                      teardown_variables=json.dumps(dict(teardown_variables or {}), sort_keys=True),
                      created_us=now, updated_us=now, state="provisioning")
        async with self._engine.begin() as conn:
            await conn.execute(insert(_T).values(**values))
        return await self.get(host_id)  # type: ignore[return-value]

    async def update(self, host_id: str, **values: object) -> None:
        """Change some of instance_id, ssh_host, ssh_port, ssh_user, state, teardown_variables."""
        if "teardown_variables" in values:
            values["teardown_variables"] = json.dumps(dict(values["teardown_variables"]), sort_keys=True)  # type: ignore[call-overload]
        async with self._engine.begin() as conn:
            await conn.execute(update(_T).where(_T.c.host_id == host_id).values(**values, updated_us=now_us()))

    async def get(self, host_id: str) -> HostRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.host_id == host_id))).mappings().first()
        return _record(row) if row is not None else None

    async def in_state(self, *states: str) -> list[HostRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(_T).where(_T.c.state.in_(states)).order_by(_T.c.created_us))).mappings()
            return [_record(r) for r in rows]


def _record(row: Mapping) -> HostRecord:
    return HostRecord(row["host_id"], row["provider"], row["instance_name"], row["instance_id"], row["ssh_host"],
                      row["ssh_port"], row["ssh_user"], row["model"], row["state"], row["created_us"],
                      json.loads(row["teardown_variables"]))
