"""The five questions, asked on a terminal (or a test's stand-in): each with a default that Enter
takes, asked again until the answer reads; API keys read without echo and never printed back."""

from __future__ import annotations

import getpass
import sys
import textwrap
from collections.abc import Callable
from typing import TypeVar

from backend.catalogue import Catalogue
from backend.cli_quickstart.answers import (
    CLOUD_NAMES,
    CLOUDS,
    KEY_FIELDS,
    PREFERRED_GPU,
    Answers,
    SshMachine,
    check_fleet,
    default_fleet,
    fleet_cost_per_hour,
    parse_api_key,
    parse_gpu,
    parse_models,
    parse_money,
    parse_policy,
    parse_sources,
    parse_ssh_target,
    parse_yes_no,
    usd_text,
)
from backend.field_errors import FieldError
from backend.money import format_usd, parse_usd
from backend.settings import Settings
from backend.simulate.plan import parse_fleet

T = TypeVar("T")


class QuickstartAborted(Exception):
    """The operator left the wizard (Ctrl-D at a question): nothing more is done."""


class Terminal:
    """Where questions go and answers come from; a test hands its own (answers in order)."""

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def ask(self, prompt: str) -> str:
        return input(prompt)

    def secret(self, prompt: str) -> str:
        return getpass.getpass(prompt)  # read from the terminal without echo; never printed back

    def progress(self, text: str) -> None:
        sys.stdout.write("\r" + text)
        sys.stdout.flush()


class Wizard:
    def __init__(self, settings: Settings, cat: Catalogue, term: Terminal, *, defaults: bool = False) -> None:
        self.settings, self.cat, self.term, self.defaults = settings, cat, term, defaults

    # A question: ask until the answer parses; Enter takes the default. With --defaults, the default.
    def question(self, prompt: str, default: str, parse: Callable[[str], T]) -> T:
        if self.defaults:
            self.term.say(f"{prompt} [{default}]: {default}")
            return parse(default)
        while True:
            try:
                raw = self.term.ask(f"{prompt} [{default}]: ").strip()
            except EOFError:
                raise QuickstartAborted from None
            try:
                return parse(raw or default)
            except FieldError as exc:
                self.term.say(f"  ! {exc}")

    def secret(self, prompt: str, existing: str | None, parse: Callable[[str], str]) -> str:
        """A secret: never echoed, never shown; Enter keeps the one the settings already have."""
        if self.defaults:
            if existing is None:
                raise FieldError("sources", "--defaults cannot type an API key")
            return existing
        hint = " (Enter keeps the one in your settings)" if existing else ""
        while True:
            try:
                raw = self.term.secret(f"{prompt}{hint}, not shown: ").strip()
            except EOFError:
                raise QuickstartAborted from None
            if not raw and existing:
                return existing
            try:
                return parse(raw)
            except FieldError as exc:
                self.term.say(f"  ! {exc}")

    def note(self, text: str) -> None:
        self.term.say(textwrap.fill(text, width=78, initial_indent="  note: ", subsequent_indent="        "))

    def heading(self, text: str) -> None:
        self.term.say()
        self.term.say(text)

    def ask_all(self) -> Answers:
        s, cat = self.settings, self.cat
        self.heading("1/5  Models to sell")
        self.show_models()
        defaults = ", ".join(m.id for m in cat.default_models()) or cat.models[0].id
        models = self.question("Models to sell (ids, comma-separated)", defaults, lambda t: parse_models(t, cat))
        for m in models:
            lic = cat.model_by_id[m].licence
            if lic.commercial_use != "allowed" or lic.attribution:
                self.note(f"{m}: {lic.name}, commercial use {lic.commercial_use}"
                          + (f": {lic.restrictions}" if lic.restrictions else "")
                          + (f" Attribution: {lic.attribution}" if lic.attribution else ""))

        self.heading("2/5  Where the GPUs come from")
        self.term.say("  vast, runpod, lambda: GPU clouds, rented by the hour with your API key;")
        self.term.say("  ssh: a machine of your own (user@host[:port]); none: simulate only for now.")
        sources = self.question("GPU sources (comma-separated, or none)", "none", parse_sources)
        clouds = tuple(x for x in sources if x in CLOUDS)
        keys = {}
        for c in clouds:
            existing = getattr(s, KEY_FIELDS[c])
            keys[c] = self.secret(f"{CLOUD_NAMES[c]} API key", existing.get_secret_value() if existing else None,
                                  lambda t, c=c: parse_api_key(t, c))
        ssh = None
        if "ssh" in sources:
            user, host, port = self.question("Your machine, user@host[:port]", "root@localhost:22", parse_ssh_target)
            self.term.say(f"  GPUs in the catalogue: {', '.join(cat.gpu_by_id)}")
            gpu = self.question("Its GPU (catalogue id)", PREFERRED_GPU, lambda t: parse_gpu(t, cat))
            ssh = SshMachine(user, host, port, gpu)

        self.heading("3/5  The fleet to start with")
        self.term.say("  gpu:provider:count[:model], comma-separated. Providers: vast, runpod, lambda,")
        self.term.say("  owned (your machine), community. A host without a model serves the next model")
        self.term.say("  that fits its card.")
        fleet_default = default_fleet(models, clouds, ssh.gpu if ssh else None, cat)
        fleet, warnings = self.question("Starting fleet", fleet_default, lambda t: check_fleet(t, models, cat))
        for w in warnings:
            self.note(f"{w}")
        for e in parse_fleet(fleet, cat):
            if e.provider in CLOUDS and e.provider not in keys and not getattr(s, KEY_FIELDS[e.provider]):
                self.note(f"no {CLOUD_NAMES[e.provider]} API key: the estimate prices {e.gpu} there "
                              "at the catalogue's rate, but the backend cannot rent it yet")

        self.heading("4/5  Price policy")
        self.term.say("  dynamic: each model's price follows its load, within its market range;")
        self.term.say("  list: the catalogue's list prices; pinned: one price you set (per 1M tokens).")
        policy = self.question("Price policy", "dynamic" if s.pricing.enabled else "list", parse_policy)
        pin = None
        if policy == "pinned":
            first = cat.model_by_id[models[0]]
            prompt = self.question("Pinned prompt price, USD per 1M tokens", usd_text(first.price.prompt),
                                   lambda t: parse_money(t, "pin_prompt_usd", positive=True))
            completion = self.question("Pinned completion price, USD per 1M tokens", usd_text(first.price.completion),
                                       lambda t: parse_money(t, "pin_completion_usd", positive=True))
            pin = (prompt, completion)

        self.heading("5/5  Budget and target")
        autoscale = self.question("Let the autoscaler rent and release hosts by itself (y/n)",
                                  "y" if s.autoscaler.enabled else "n", lambda t: parse_yes_no(t, "autoscaler"))
        budget = self.question("Budget for rented hosts, USD per hour", usd_text(s.autoscaler.budget_nano),
                               lambda t: parse_money(t, "budget_per_hour_usd", positive=autoscale))
        cost = fleet_cost_per_hour(fleet, cat)
        if cost > parse_usd(budget):
            self.note(f"the starting fleet costs {format_usd(cost, places=2)}/h, over this budget: "
                          "the autoscaler will rent nothing more")
        target = self.question("Daily profit target, USD (0 = none)", usd_text(s.profit_target_daily_nano),
                               lambda t: parse_money(t, "profit_target_daily_usd"))
        return Answers(models=models, clouds=clouds, keys=keys, ssh=ssh, fleet=fleet, policy=policy, pin=pin,
                       autoscale=autoscale, budget_usd=budget, profit_target_usd=target)

    def show_models(self) -> None:
        """Each model on two lines (80 columns): size, memory at its default quantization, the market's
        price range per million tokens (prompt, completion), a * for the defaults; then its licence."""
        w = max(len(m.id) for m in self.cat.models)
        self.term.say(f"  {'model':<{w}} {'size':>5} {'memory':>7}  {'$/1M in':<10} {'$/1M out':<10}")
        for m in self.cat.models:
            r = m.market
            price_in = f"{_p(r.prompt_min)}-{_p(r.prompt_max)}"
            price_out = f"{_p(r.completion_min)}-{_p(r.completion_max)}"
            self.term.say(f"  {m.id:<{w}} {_params(m.params):>5} {m.vram_gb[m.default_quantization]:>4.0f} GB  "
                          f"{price_in:<10} {price_out:<10} {'*' if m.default else ''}".rstrip())
            lic = m.licence
            terms = f"commercial use {lic.commercial_use}" + (", attribution required" if lic.attribution else "")
            self.term.say(textwrap.fill(f"{lic.name}: {terms}", width=78, initial_indent="      ",
                                        subsequent_indent="        "))


def _p(nano: int) -> str:
    return format_usd(nano, places=2).removeprefix("$")


def _params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n < 100e9 else f"{n / 1e9:.0f}B"
