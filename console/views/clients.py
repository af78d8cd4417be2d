"""Clients and their keys. The upper table lists clients; below it, the keys of the client under
the cursor and its model licences: those it must still accept (NEEDED) and the versions it accepted,
by itself or by the operator (Enter drills into its keys, Esc goes back). `n` issues a key (its
secret is shown once), `k` revokes one, `g` grants credit, `c` creates a client, `l` accepts a
model's licence for the client (picked from those it still needs), `o` switches the client between
the direct and the OpenRouter channel (OpenRouter calls with its keys and keeps its fee of each
charge); all confirmed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from backend.wire.admin import KeyOut
from backend.wire.licences import MyLicences
from console.client import AdminError
from console.licence_detail import client_licence_rows, pick_label
from console.money import parse_amount, usd
from console.views.base import TableView, fill_table
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen
from console.widgets.secret import SecretScreen
from console.widgets.table import Table


def _name(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("A name is needed.")
    return text


def _date(us: int | None) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M") if us else "-"


class ClientsView(TableView):
    view_name = "clients"
    columns = ("client", "name", "channel", "balance", "available", "spent today", "requests today", "keys")
    DEFAULT_CSS = """
    ClientsView #table { height: 2fr; }
    ClientsView #keys { height: 1fr; }
    ClientsView #keys-title, ClientsView #licences-title { height: 1; padding: 0 1; background: $panel; }
    ClientsView #licences { height: 1fr; }
    """
    BINDINGS = [Binding("n", "issue_key", "New key"), Binding("k", "revoke_key", "Revoke key"),
                Binding("g", "grant", "Grant credit"), Binding("c", "create", "New client"),
                Binding("l", "accept_licence", "Accept licence"), Binding("o", "channel", "Channel")]
    writes = frozenset({"issue_key", "revoke_key", "grant", "create", "accept_licence", "channel"})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names: dict[str, str] = {}
        self.channels: dict[str, str] = {}
        self.keys: list[KeyOut] = []
        self._keys_for: str | None = None  # the client whose keys the lower table shows
        self.licences: MyLicences | None = None  # that client's; None: none selected, or an older backend

    def compose(self) -> ComposeResult:
        yield self.make_table()
        yield Static("keys (Enter on a client)", id="keys-title", markup=False)
        keys = Table(id="keys", cursor_type="row")
        keys.add_columns("key", "name", "prefix", "created (UTC)", "revoked (UTC)")
        yield keys
        yield Static("licences", id="licences-title", markup=False)
        licences = Table(id="licences", cursor_type="row")
        licences.add_columns("model", "licence", "version", "state", "accepted (UTC)", "by")
        yield licences

    async def refresh_data(self) -> None:
        clients = await self.tm.api.clients()
        today = {u.group: u for u in await self.tm.api.usage("client", self.tm.start_of_day_us(), None)}
        self.names = {c.id: c.name for c in clients}
        self.channels = {c.id: c.channel for c in clients}
        rows = []
        for c in sorted(clients, key=lambda c: c.name):
            u = today.get(c.id)
            rows.append((c.id, (c.id, c.name, c.channel, usd(c.balance_nano), usd(c.available_nano),
                                usd(u.charged_nano if u else 0), f"{u.requests if u else 0:,}",
                                f"{c.active_keys}/{c.keys}")))
        self.set_rows(rows)
        await self._load_keys()

    async def _load_keys(self) -> None:
        client_id = self.selected_key()
        self.keys = await self.tm.api.keys(client_id) if client_id else []
        self._keys_for = client_id
        title = f"keys of {self.names.get(client_id, client_id)}" if client_id else "keys"
        self.query_one("#keys-title", Static).update(title)
        fill_table(self.query_one("#keys", Table),
                   [(k.id, (k.id, k.name or "-", k.prefix + "…", _date(k.created_us), _date(k.revoked_us)))
                    for k in self.keys])
        await self._load_licences(client_id)

    async def _load_licences(self, client_id: str | None) -> None:
        try:
            self.licences = await self.tm.api.client_licences(client_id) if client_id else None
        except AdminError as exc:
            if exc.status != 404:  # 404: a backend without licences (or the client just went)
                raise
            self.licences = None
        name = self.names.get(client_id, client_id) if client_id else None
        mine = self.licences
        title = "licences" if name is None else (
            f"licences of {name}: N/A" if mine is None else
            f"licences of {name}: {len(mine.needed)} to accept, {sum(a.current for a in mine.accepted)} accepted")
        self.query_one("#licences-title", Static).update(title)
        fill_table(self.query_one("#licences", Table), client_licence_rows(mine) if mine else [])

    @on(DataTable.RowHighlighted, "#table")
    def _client_changed(self) -> None:
        # Fetch the keys of the newly highlighted client now, not at the next refresh. (A refresh
        # re-highlights the same row: that one must not start another refresh.)
        if self.selected_key() != self._keys_for:
            self.tm.request_refresh()

    @on(DataTable.RowSelected, "#table")
    def _drill_down(self) -> None:
        self.query_one("#keys", DataTable).focus()

    def back(self) -> bool:
        if self.query_one("#keys", DataTable).has_focus or self.query_one("#licences", DataTable).has_focus:
            self.table.focus()
            return True
        return False

    # ------------------------------------------------------------------ actions
    def _client(self) -> tuple[str, str] | None:
        client_id = self.selected_key()
        if client_id is None:
            self.notify("No client selected.", severity="warning")
            return None
        return client_id, self.names.get(client_id, client_id)

    @work(group="action", exclusive=True)
    async def action_issue_key(self) -> None:
        if not (chosen := self._client()):
            return
        client_id, name = chosen
        issued = await self.mutate("issue key", f"Issue a new API key for {name}?",
                                   lambda: self.tm.api.issue_key(client_id, "console"), f"Key issued for {name}.")
        if issued is not None:
            await self.app.push_screen_wait(SecretScreen(f"New API key for {name} ({issued.key.id}):", issued.secret))

    @work(group="action", exclusive=True)
    async def action_revoke_key(self) -> None:
        if not (chosen := self._client()) or not self.writable("revoke key"):
            return
        client_id, name = chosen
        active = [k for k in self.keys if k.client_id == client_id and k.revoked_us is None]
        if not active:
            self.notify(f"{name} has no active key.", severity="warning")
            return
        key_id = await self.app.push_screen_wait(PickScreen(
            f"Revoke which key of {name}?", [(k.id, f"{k.id}  {k.prefix}…  {k.name}") for k in active]))
        if key_id:
            await self.mutate("revoke key", f"Revoke key {key_id} of {name}? Requests with it get 401 at once.",
                              lambda: self.tm.api.revoke_key(key_id), f"Key {key_id} revoked.")

    @work(group="action", exclusive=True)
    async def action_grant(self) -> None:
        if not (chosen := self._client()) or not self.writable("grant credit"):
            return
        client_id, name = chosen
        amount = await self.app.push_screen_wait(
            PromptScreen(f"Grant how many dollars of credit to {name}?", parse_amount, "e.g. 25.00"))
        if amount:
            # One idempotency key per confirmed grant: a retried request cannot grant twice.
            key = f"console-{uuid.uuid4()}"
            await self.mutate("grant credit", f"Grant ${amount} of credit to {name}?",
                              lambda: self.tm.api.grant_credit(client_id, amount, key), f"Granted ${amount} to {name}.")

    @work(group="action", exclusive=True)
    async def action_create(self) -> None:
        if not self.writable("create client"):
            return
        name = await self.app.push_screen_wait(PromptScreen("Name of the new client?", _name))
        if name:
            await self.mutate("create client", f"Create client {name!r}?",
                              lambda: self.tm.api.create_client(name), f"Client {name} created.")

    @work(group="action", exclusive=True)
    async def action_accept_licence(self) -> None:
        if not (chosen := self._client()) or not self.writable("accept licence"):
            return
        client_id, name = chosen
        try:
            mine = await self.tm.api.client_licences(client_id)  # now, not the last refresh's
        except AdminError as exc:
            self.notify(f"accept licence failed: {exc.message}", severity="error")
            return
        if not mine.needed:
            self.notify(f"{name} has no licence left to accept.", severity="information")
            return
        model = await self.app.push_screen_wait(PickScreen(
            f"Accept which licence for {name}?", [(t.model, pick_label(t)) for t in mine.needed]))
        terms = next((t for t in mine.needed if t.model == model), None)
        if terms is None:
            return
        await self.mutate("accept licence",
                          f"Accept the {terms.licence} (version {terms.version}, {terms.url}) of {terms.model} "
                          f"on behalf of {name}?\nIt is recorded as accepted by the operator, now; {name} can "
                          f"then use {terms.model}.",
                          lambda: self.tm.api.accept_licence_for(client_id, terms.model),
                          f"{name}: {terms.licence} of {terms.model} accepted.")

    @work(group="action", exclusive=True)
    async def action_channel(self) -> None:
        if not (chosen := self._client()) or not self.writable("set channel"):
            return
        client_id, name = chosen
        to = "direct" if self.channels.get(client_id) == "openrouter" else "openrouter"
        consequence = ("\nEach request it pays from now on owes OpenRouter its fee ([openrouter] fee_pct of the "
                       "charge), posted to the ledger with it." if to == "openrouter" else
                       "\nIts requests from now on owe OpenRouter nothing; what was settled before stays.")
        await self.mutate("set channel", f"Mark {name} as a {to} client?{consequence}",
                          lambda: self.tm.api.set_client_channel(client_id, to), f"{name}: channel {to}.")
