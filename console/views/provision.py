"""Provision: offers for a model across the GPU clouds, cheapest first, with what the model would
earn on each at its current demand; `p` rents the offer under the cursor and bootstraps it,
`s` bootstraps a machine the operator already has (SSH); every playbook step's output follows
live below. `k` confirms a host key the backend is waiting on (its fingerprint is shown first);
`t` tears a host down. Every action is confirmed; --readonly refuses them."""

from __future__ import annotations

import re

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Log, Static

from backend.wire.provision import JobOut, OfferOut
from console.figures import NA, per_hour
from console.money import usd
from console.views.base import TableView
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen

RUNNING = ("running", "waiting_host_key")
_SSH = re.compile(r"^(?:(?P<user>[a-z_][a-z0-9_-]*)@)?(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")


def parse_ssh_address(text: str) -> tuple[str, str, int]:
    """`user@host:port` (user and port optional) -> (user, host, port)."""
    m = _SSH.match(text.strip())
    if not m or not 0 < int(m["port"] or 22) < 65536:
        raise ValueError("Give the machine as user@host or user@host:port, e.g. root@203.0.113.7:22.")
    return m["user"] or "root", m["host"], int(m["port"] or 22)


def offer_cells(o: OfferOut) -> tuple:
    profit = NA if o.expected_profit_per_h_nano is None else per_hour(o.expected_profit_per_h_nano)
    return (o.provider, o.gpu_name, o.gpu_count, f"{o.vram_gb * o.gpu_count:g} GB", o.kind, o.region or "-",
            usd(o.price_per_hour_nano), profit)


class ProvisionView(TableView):
    view_name = "provision"
    columns = ("provider", "GPU", "GPUs", "VRAM", "kind", "region", "$/h", "profit/h now")
    DEFAULT_CSS = """
    ProvisionView #table { height: 1fr; }
    ProvisionView #model-line, ProvisionView #unavailable, ProvisionView #host-keys, ProvisionView #job-line {
        height: auto; padding: 0 1; }
    ProvisionView #job-line { background: $panel; }
    ProvisionView #job-log { height: 1fr; }
    """
    BINDINGS = [Binding("m", "model", "Model"), Binding("p", "provision", "Provision"),
                Binding("s", "ssh", "My machine"), Binding("k", "host_key", "Confirm key"),
                Binding("t", "teardown", "Teardown")]
    writes = frozenset({"provision", "ssh", "host_key", "teardown"})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model: str | None = None
        self.offers: dict[str, OfferOut] = {}
        self.job_id: str | None = None
        self.job: JobOut | None = None
        self._after = 0  # the last job event shown

    def compose(self) -> ComposeResult:
        yield Static("", id="model-line", markup=False)
        yield self.make_table()
        yield Static("", id="unavailable", markup=False)
        yield Static("", id="host-keys", markup=False)
        yield Static("no provisioning job yet", id="job-line", markup=False)
        yield Log(id="job-log", max_lines=2000)

    @property
    def busy(self) -> bool:
        """A job is running: the app refreshes this view more often so its output flows."""
        return self.job is not None and self.job.state in RUNNING

    # ------------------------------------------------------------------ refresh
    async def refresh_table(self) -> None:
        api = self.tm.api
        if self.model is None:
            models = await api.models()
            served = [m.id for m in models if m.enabled and m.replicas] or [m.id for m in models if m.enabled]
            self.model = served[0] if served else models[0].id
        offers = await api.offers(self.model)
        self.offers = {f"{o.provider}/{o.offer_id}": o for o in offers.offers}
        self.query_one("#model-line", Static).update(
            f"model {offers.model} at {offers.quantization}: needs {offers.vram_needed_gb:g} GB of GPU memory   "
            f"({len(offers.offers)} offers that fit, cheapest first; m: another model)")
        self.set_rows([(key, offer_cells(o)) for key, o in self.offers.items()])
        self.query_one("#unavailable", Static).update(
            "not asked: " + "; ".join(offers.unavailable) if offers.unavailable else "")
        # The job is fetched before the key list: a job seen waiting for a key had recorded it as
        # pending before it said so, so the list fetched after always holds it. Both are shown
        # together, with no await between, so the view never shows the state without the key.
        job = await api.job(self.job_id, after=self._after) if self.job_id is not None else None
        keys = await api.pending_host_keys()
        if job is not None and job.id == self.job_id:  # not one the operator has since left for another
            self._show_job(job)
            waiting = job.host_key
            if waiting is not None and all((k.host, k.port, k.fingerprint) != (waiting.host, waiting.port,
                                                                               waiting.fingerprint) for k in keys):
                keys.append(waiting)
        self.query_one("#host-keys", Static).update(
            "host keys waiting for your confirmation (k): " + "; ".join(
                f"{k.host}:{k.port} {k.key_type} {k.fingerprint}" for k in keys) if keys else "")

    def _show_job(self, job: JobOut) -> None:
        self.job = job
        log = self.query_one("#job-log", Log)
        for e in job.events:
            prefix = f"[{e.step}] " if e.step else ""
            log.write_line(f"{e.kind:>13}  {prefix}{e.text}")
            self._after = max(self._after, e.seq)
        where = job.address or job.instance_id or "-"
        ended = f"  error: {job.error}" if job.error else ""
        self.query_one("#job-line", Static).update(
            f"job {job.id}: {job.kind} {job.model or ''} on {job.provider} ({where})  {job.state.upper()}  "
            f"{job.phase}{ended}")

    def _start_following(self, job: JobOut) -> None:
        self.job_id, self.job, self._after = job.id, job, 0
        self.query_one("#job-log", Log).clear()
        self.tm.request_refresh()

    # ------------------------------------------------------------------ actions
    @work(group="action", exclusive=True)
    async def action_model(self) -> None:
        models = await self.tm.api.models()
        chosen = await self.app.push_screen_wait(PickScreen(
            "Offers for which model?", [(m.id, f"{m.id}  ({m.name})") for m in models]))
        if chosen:
            self.model = chosen
            self.tm.request_refresh()

    @work(group="action", exclusive=True)
    async def action_provision(self) -> None:
        key = self.selected_key()
        offer = self.offers.get(key) if key else None
        if offer is None or self.model is None:
            self.notify("No offer selected.", severity="warning")
            return
        question = (f"Rent {offer.gpu_count}x {offer.gpu_name} from {offer.provider} at "
                    f"{usd(offer.price_per_hour_nano)}/h and make it serve {self.model}?\n"
                    "It bills until you tear it down.")
        job = await self.mutate("provision", question, lambda: self.tm.api.provision(
            model=self.model, provider=offer.provider, offer_id=offer.offer_id), "Provisioning started.")
        if job is not None:
            self._start_following(job)

    @work(group="action", exclusive=True)
    async def action_ssh(self) -> None:
        if self.model is None or not self.writable("provision"):
            return
        answer = await self.app.push_screen_wait(PromptScreen(
            f"Bootstrap which machine to serve {self.model}? (SSH, key authentication)",
            lambda text: "{}@{}:{}".format(*parse_ssh_address(text)), "root@203.0.113.7:22"))
        if not answer:
            return
        user, host, port = parse_ssh_address(answer)
        engine = await self.app.push_screen_wait(PickScreen(
            "Which engine?", [("vllm", "vLLM on the machine's GPUs"), ("sim", "simulated engine (no GPU: trials)")]))
        if not engine:
            return
        job = await self.mutate("provision", f"Install the tokenmill agent on {user}@{host}:{port} and make it "
                                             f"serve {self.model} with {engine}?",
                                lambda: self.tm.api.provision(model=self.model, provider="ssh", ssh_host=host,
                                                              ssh_port=port, ssh_user=user, engine=engine),
                                "Provisioning started.")
        if job is not None:
            self._start_following(job)

    @work(group="action", exclusive=True)
    async def action_host_key(self) -> None:
        if not self.writable("confirm host key"):
            return
        keys = await self.tm.api.pending_host_keys()
        if not keys:
            self.notify("No host key is waiting for confirmation.")
            return
        by_id = {f"{k.host}:{k.port}:{k.fingerprint}": k for k in keys}
        chosen = await self.app.push_screen_wait(PickScreen(
            "Which host key? Compare the fingerprint with the one the machine shows "
            "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it).",
            [(i, f"{k.host}:{k.port}  {k.key_type}  {k.fingerprint}") for i, k in by_id.items()]))
        if chosen:
            k = by_id[chosen]
            await self.mutate("confirm host key", f"Trust {k.host}:{k.port} with key\n{k.key_type} {k.fingerprint}?",
                              lambda: self.tm.api.confirm_host_key(k.host, k.port, k.fingerprint),
                              f"Host key of {k.host}:{k.port} confirmed.")

    @work(group="action", exclusive=True)
    async def action_teardown(self) -> None:
        if not self.writable("teardown"):
            return
        hosts = [h for h in await self.tm.api.hosts() if h.status != "removed"]
        if not hosts:
            self.notify("No host to tear down.")
            return
        host_id = await self.app.push_screen_wait(PickScreen(
            "Tear down which host?", [(h.id, f"{h.name}  {h.provider}  {h.status}  {', '.join(h.models)}")
                                      for h in hosts]))
        if not host_id:
            return
        name = next(h.name for h in hosts if h.id == host_id)
        job = await self.mutate("teardown", f"Tear down {name}? It drains, the agent is removed, and a rented "
                                            "machine is destroyed (its billing stops). This cannot be undone.",
                                lambda: self.tm.api.teardown(host_id), f"Teardown of {name} started.")
        if job is not None:
            self._start_following(job)

    @on(DataTable.RowSelected)
    def _enter(self) -> None:
        self.run_action("provision")
