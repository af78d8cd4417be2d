"""Licences acknowledged by clients: a model whose licence needs it is served to a client only once
the client has accepted the current version of that licence (POST /v1/me/licences/{model}), or the
operator has for it.

Which licences need an acknowledgement: the catalogue's default (Licence.requires_acknowledgement:
restricted commercial use or required attribution, as Llama's community licence; not Apache-2.0 or
MIT), unless the operator said otherwise for the model (PUT /admin/models/{id}/licence, persisted).
The version is the catalogue's: a new version in the catalogue needs a new acknowledgement.

The router asks `check` on every request: two lookups in memory (the acceptances are loaded at
start and added to on each acceptance, after the database has it)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.catalogue import Catalogue, ModelEntry
from backend.catalogue.schema import BaseLicence
from backend.clients.service import ClientDirectory
from backend.clients.tables import LicenceAcceptance, LicencePolicy
from backend.field_errors import FieldError
from backend.runtime.bus import EventBus
from backend.wire.errors import ApiError

CLIENT = "client"
OPERATOR = "operator"


class UnknownModel(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Terms:
    """What a model's licence asks of a client now."""

    model: str
    licence: str
    url: str
    version: str
    commercial_use: str
    restrictions: str
    attribution: str
    requires_acceptance: bool
    catalogue_default: bool  # what the catalogue alone would say
    set_by: str | None = None  # who overrode the catalogue ("operator"), None if nobody
    set_us: int | None = None
    notice: str = ""  # the short mark shown where the model is offered ("Built with Llama")
    base: BaseLicence | None = None  # a fine-tune's base model's licence, which binds too

    @property
    def accept_path(self) -> str:
        return f"/v1/me/licences/{self.model}"


@dataclass(frozen=True, slots=True)
class Acceptance:
    client_id: str
    model: str
    licence: str
    version: str
    accepted_us: int
    accepted_by: str  # "client" or "operator"
    key_id: str | None = None


class Licences:
    def __init__(self, engine: AsyncEngine, catalogue: Catalogue, clients: ClientDirectory,
                 events: EventBus) -> None:
        self._engine = engine
        self.catalogue = catalogue
        self._clients = clients
        self.clock = clients.clock
        self._events = events
        self._overrides: dict[str, tuple[bool, str, int]] = {}  # model -> (requires, set_by, set_us)
        # The hot path's two lookups: the version a model needs accepted (absent: none needed), and
        # every (client, model, version) accepted.
        self._required: dict[str, str] = {}
        self._accepted: set[tuple[str, str, str]] = set()
        self._by_client: dict[str, list[Acceptance]] = {}
        self._lock = asyncio.Lock()
        self._refresh()

    async def load(self) -> None:
        a, p = LicenceAcceptance.__table__, LicencePolicy.__table__
        async with self._engine.connect() as conn:
            policies = (await conn.execute(select(p))).mappings().all()
            rows = (await conn.execute(select(a).order_by(a.c.accepted_us, a.c.id))).mappings().all()
        self._overrides = {r["model"]: (bool(r["requires_acceptance"]), r["set_by"], r["set_us"]) for r in policies}
        for r in rows:
            self._remember(Acceptance(r["client_id"], r["model"], r["licence"], r["version"], r["accepted_us"],
                                      r["accepted_by"], r["key_id"]))
        self._refresh()

    def _refresh(self) -> None:
        self._required = {m.id: m.licence.version for m in self.catalogue.models
                          if self.terms(m.id).requires_acceptance}

    def _remember(self, acc: Acceptance) -> None:
        self._accepted.add((acc.client_id, acc.model, acc.version))
        self._by_client.setdefault(acc.client_id, []).append(acc)

    # ---------------------------------------------------------------- hot path
    def check(self, client_id: str, model: ModelEntry) -> None:
        """Raise the 403 a request for `model` gets while its licence is not accepted by the client."""
        version = self._required.get(model.id)
        if version is not None and (client_id, model.id, version) not in self._accepted:
            raise self._refusal(client_id, model)

    def _refusal(self, client_id: str, model: ModelEntry) -> ApiError:
        lic = model.licence
        older = sorted({a.version for a in self._by_client.get(client_id, ()) if a.model == model.id})
        before = (f" This client accepted version {', '.join(older)}; the licence is now version {lic.version}."
                  if older else "")
        return ApiError(403, f"The model '{model.id}' is licensed under the {lic.name} (version {lic.version}, "
                             f"{lic.url}), which this client has not accepted.{before} Read it, then accept it with "
                             f"POST /v1/me/licences/{model.id} (optional body {{\"version\": \"{lic.version}\"}}) "
                             f"and retry.", code="licence_not_accepted", param="model")

    # ---------------------------------------------------------------- reads
    def model(self, model_id: str) -> ModelEntry:
        m = self.catalogue.model_by_id.get(model_id)
        if m is None:
            raise UnknownModel(f"no model {model_id!r} in the catalogue")
        return m

    def terms(self, model_id: str) -> Terms:
        m = self.model(model_id)
        lic = m.licence
        default = lic.requires_acknowledgement
        required, set_by, set_us = self._overrides.get(model_id, (default, None, None))
        return Terms(m.id, lic.name, lic.url, lic.version, lic.commercial_use, lic.restrictions, lic.attribution,
                     required, default, set_by, set_us, lic.notice, lic.base)

    def acceptance_counts(self, model_id: str) -> tuple[int, int]:
        """(clients who accepted the model's current licence version, clients who accepted only an
        older one and must accept again)."""
        version = self.model(model_id).licence.version
        current = {c for c, m, v in self._accepted if m == model_id and v == version}
        older = {c for c, m, v in self._accepted if m == model_id and v != version} - current
        return len(current), len(older)

    def needs(self, client_id: str, model_id: str) -> bool:
        version = self._required.get(model_id)
        return version is not None and (client_id, model_id, version) not in self._accepted

    def accepted(self, client_id: str) -> list[Acceptance]:
        """Every acknowledgement the client made (or the operator made for it), oldest first."""
        return list(self._by_client.get(client_id, ()))

    def current(self, acc: Acceptance) -> bool:
        """Whether an acknowledgement is of the licence version the catalogue has now."""
        m = self.catalogue.model_by_id.get(acc.model)
        return m is not None and m.licence.version == acc.version

    def pending(self, client_id: str) -> list[Terms]:
        """The licences the client must still accept before using their models, by model id."""
        return [self.terms(mid) for mid in sorted(self._required) if self.needs(client_id, mid)]

    # ---------------------------------------------------------------- changes
    async def accept(self, client_id: str, model_id: str, *, version: str | None = None, by: str = CLIENT,
                     key_id: str | None = None) -> Acceptance:
        """Record that the client accepts the model's current licence. `version`, if given, must be
        the current one (FieldError naming `version`). Accepting again answers the first record."""
        self._clients.client(client_id)  # ClientError if unknown
        m = self.model(model_id)
        lic = m.licence
        if version is not None and version != lic.version:
            raise FieldError("version", f"the {lic.name} of '{m.id}' is at version {lic.version!r}, not {version!r}: "
                                        f"read the current version ({lic.url}) and accept that one")
        async with self._lock:  # one acceptance at a time: two concurrent ones would write the same row
            if (client_id, m.id, lic.version) in self._accepted:
                return self._find(client_id, m.id, lic.version)
            acc = Acceptance(client_id, m.id, lic.name, lic.version, self.clock.now_us(), by, key_id)
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(LicenceAcceptance.__table__).values(
                        id=f"lic_{secrets.token_hex(8)}", client_id=acc.client_id, model=acc.model,
                        licence=acc.licence, version=acc.version, accepted_us=acc.accepted_us,
                        accepted_by=acc.accepted_by, key_id=acc.key_id))
            except IntegrityError:  # another router process recorded it first: that record stands
                acc = await self._read(client_id, m.id, lic.version)
            self._remember(acc)
        self._events.add("client.licence_accepted", client_id,
                         f"{client_id} accepted the {lic.name} (version {lic.version}) for {m.id}"
                         + (" (by the operator)" if by == OPERATOR else ""))
        return acc

    def _find(self, client_id: str, model_id: str, version: str) -> Acceptance:
        return next(a for a in self._by_client[client_id] if a.model == model_id and a.version == version)

    async def _read(self, client_id: str, model_id: str, version: str) -> Acceptance:
        a = LicenceAcceptance.__table__
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(a).where(a.c.client_id == client_id, a.c.model == model_id,
                                                    a.c.version == version))).mappings().one()
        return Acceptance(r["client_id"], r["model"], r["licence"], r["version"], r["accepted_us"], r["accepted_by"],
                          r["key_id"])

    async def accept_all(self, client_id: str, *, by: str = OPERATOR) -> list[Acceptance]:
        """Accept, for the client, every licence that needs it now (the embedded demo's clients)."""
        return [await self.accept(client_id, mid, by=by) for mid in sorted(self._required)]

    async def set_requires_acceptance(self, model_id: str, required: bool, *, by: str = OPERATOR) -> Terms:
        """The operator's word on whether the model's licence needs an acknowledgement (persisted;
        it holds for later licence versions too, until changed)."""
        self.model(model_id)
        now = self.clock.now_us()
        table = LicencePolicy.__table__
        async with self._engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.model == model_id))
            await conn.execute(insert(table).values(model=model_id, requires_acceptance=required, set_by=by,
                                                    set_us=now))
        self._overrides[model_id] = (required, by, now)
        self._refresh()
        terms = self.terms(model_id)
        self._events.add("model.licence_policy", model_id,
                         f"{model_id}: the {terms.licence} {'needs' if required else 'needs no'} "
                         f"acknowledgement by clients (set by the {by})")
        return terms
