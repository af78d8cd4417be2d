"""The wizard's answers and how each is read: every parse_* returns the value or raises a FieldError
naming what is wrong (the wizard shows it and asks again); the defaults that come from earlier answers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from backend.catalogue import Catalogue, ModelEntry, Offer
from backend.catalogue.capacity import replica_capacity
from backend.field_errors import FieldError
from backend.money import MoneyError, parse_usd
from backend.simulate.plan import DEFAULT_FLEET, parse_fleet

CLOUDS = ("vast", "runpod", "lambda")
SOURCES = (*CLOUDS, "ssh")
POLICIES = ("dynamic", "list", "pinned")
KEY_FIELDS = {"vast": "vast_api_key", "runpod": "runpod_api_key", "lambda": "lambda_api_key"}
CLOUD_NAMES = {"vast": "Vast.ai", "runpod": "RunPod", "lambda": "Lambda"}
PREFERRED_GPU = DEFAULT_FLEET.split(":")[0]  # the card the seeds' figures (and the calibration) are for

_SSH_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]*)@)?"
                         r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
                         r"(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class SshMachine:
    user: str
    host: str
    port: int
    gpu: str  # catalogue GPU id

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Answers:
    models: tuple[str, ...]
    clouds: tuple[str, ...] = ()
    keys: dict[str, str] = field(default_factory=dict, repr=False)  # cloud -> API key (secret)
    ssh: SshMachine | None = None
    fleet: str = DEFAULT_FLEET
    policy: str = "dynamic"
    pin: tuple[str, str] | None = None  # USD per million tokens (prompt, completion), when pinned
    autoscale: bool = False
    budget_usd: str = "10.00"
    profit_target_usd: str = "0"


def usd_text(nano: int) -> str:
    """Nano-USD as the decimal string settings hold: "10.00", "0.125"."""
    text = format(Decimal(nano).scaleb(-9).normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def parse_models(text: str, cat: Catalogue) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(p.strip() for p in text.replace(" ", ",").split(",") if p.strip()))
    if not ids:
        raise FieldError("models", "name at least one model")
    unknown = [m for m in ids if m not in cat.model_by_id]
    if unknown:
        raise FieldError("models", f"unknown model {', '.join(map(repr, unknown))}: the list above names the "
                                   "catalogue's models (ids, comma-separated)")
    # The estimate runs each model on catalogue offers (or single cards): one that no offer holds
    # could never be simulated, and the operator would only learn it questions later.
    for m in ids:
        entry = cat.model_by_id[m]
        if not offers_fitting(entry, cat):
            largest = max(cat.offers, key=lambda o: cat.gpu_by_id[o.gpu].vram_gb * o.gpu_count)
            raise FieldError("models", f"{m} needs {entry.vram_gb[entry.default_quantization]:g} GB of GPU memory: "
                                       f"no GPU offer in the catalogue holds it (the largest, {largest.gpu_count} x "
                                       f"{largest.gpu}, has {cat.gpu_by_id[largest.gpu].vram_gb * largest.gpu_count} "
                                       "GB), so the plan could not be simulated")
    return ids


def parse_sources(text: str) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(p.strip().lower() for p in text.replace(" ", ",").split(",") if p.strip()))
    if not words or words == ("none",):
        return ()
    if "none" in words:
        raise FieldError("sources", "'none' goes alone (simulate only)")
    unknown = [w for w in words if w not in SOURCES]
    if unknown:
        raise FieldError("sources", f"unknown source {', '.join(map(repr, unknown))}; expected some of "
                                    f"{', '.join(SOURCES)}, or none")
    return words


def parse_api_key(text: str, cloud: str) -> str:
    key = text.strip()
    name = KEY_FIELDS[cloud]
    if not key:
        raise FieldError(name, f"an API key is needed to rent from {CLOUD_NAMES[cloud]} "
                               f"(or leave {cloud} out of the GPU sources)")
    if len(key) > 512 or any(c.isspace() or not c.isprintable() for c in key):
        raise FieldError(name, "an API key is one word of printable characters (at most 512)")
    return key


def parse_ssh_target(text: str) -> tuple[str, str, int]:
    """`user@host[:port]` (user root and port 22 when left out) -> (user, host, port)."""
    m = _SSH_TARGET.match(text.strip())
    if not m:
        raise FieldError("ssh_host", f"{text.strip()!r}: expected user@host[:port], e.g. root@203.0.113.7:22")
    port = int(m["port"] or 22)
    if not 1 <= port <= 65535:
        raise FieldError("ssh_host", f"port {port} is not 1-65535")
    return m["user"] or "root", m["host"].strip("[]"), port


def parse_gpu(text: str, cat: Catalogue) -> str:
    gpu = text.strip().lower()
    if gpu not in cat.gpu_by_id:
        raise FieldError("gpu", f"unknown GPU {gpu!r}; the catalogue lists {', '.join(cat.gpu_by_id)}")
    return gpu


def parse_policy(text: str) -> str:
    word = text.strip().lower()
    aliases = {"list price": "list", "list-price": "list", "pin": "pinned", "dyn": "dynamic"}
    word = aliases.get(word, word)
    if word not in POLICIES:
        raise FieldError("price_policy", f"{text.strip()!r}: expected one of {', '.join(POLICIES)}")
    return word


def parse_yes_no(text: str, what: str) -> bool:
    word = text.strip().lower()
    if word in ("y", "yes", "on", "true"):
        return True
    if word in ("n", "no", "off", "false"):
        return False
    raise FieldError(what, f"{text.strip()!r}: answer y or n")


def parse_money(text: str, what: str, *, positive: bool = False) -> str:
    """A USD amount as typed ("12.5", "$12.50") -> the decimal string settings hold ("12.50")."""
    try:
        nano = parse_usd(text.strip(), what=what, allow_zero=not positive)
    except MoneyError as exc:
        raise FieldError(what, str(exc).removeprefix(f"{what}: ")) from None
    return usd_text(nano)


def offers_fitting(model: ModelEntry, cat: Catalogue, provider: str | None = None) -> list[Offer]:
    return [o for o in cat.offers if o.provider in CLOUDS and (provider is None or o.provider == provider)
            and replica_capacity(model, cat.gpu_by_id[o.gpu], o.gpu_count) is not None]


def first_offer(model: ModelEntry, provider: str, cat: Catalogue) -> Offer | None:
    """The provider's offer a first host of `model` would be: the seeds' card when it fits, else the
    cheapest that fits (an hour of it is the smallest bet)."""
    offers = sorted(offers_fitting(model, cat, provider), key=lambda o: (o.price_per_hour, o.gpu_count))
    preferred = [o for o in offers if o.gpu == PREFERRED_GPU and o.gpu_count == 1]
    return (preferred or offers or [None])[0]


def default_fleet(models: tuple[str, ...], clouds: tuple[str, ...], ssh_gpu: str | None, cat: Catalogue) -> str:
    """One host per model: the operator's own machine for the first model it fits, a host at the
    first cloud (RunPod when none was named, for the estimate) for each of the others."""
    entries: list[tuple[str, str, str]] = []  # (gpu, provider, model)
    left = list(models)
    if ssh_gpu is not None:
        card = cat.gpu_by_id[ssh_gpu]
        fit = [m for m in left if replica_capacity(cat.model_by_id[m], card, 1) is not None]
        if fit:
            entries.append((ssh_gpu, "owned", fit[0]))
            left.remove(fit[0])
    provider = clouds[0] if clouds else (None if ssh_gpu is not None else DEFAULT_FLEET.split(":")[1])
    for m in left if provider else ():
        offer = first_offer(cat.model_by_id[m], provider, cat)
        if offer is None:
            offer = next(iter(sorted(offers_fitting(cat.model_by_id[m], cat), key=lambda o: o.price_per_hour)), None)
        if offer is not None:
            entries.append((offer.gpu, offer.provider, m))
    if not entries:
        return DEFAULT_FLEET
    groups = {(g, p) for g, p, _ in entries}
    if len(groups) == 1:
        (gpu, prov), = groups
        card, count = cat.gpu_by_id[gpu], gpu_count_of(gpu, prov, cat)
        fitting = [m for m in models if replica_capacity(cat.model_by_id[m], card, count) is not None]
        if fitting == [m for _, _, m in entries]:  # round robin gives each model one host
            return f"{gpu}:{prov}:{len(entries)}"
    return ",".join(f"{g}:{p}:1:{m}" for g, p, m in entries)


def gpu_count_of(gpu: str, provider: str, cat: Catalogue) -> int:
    offers = sorted((o for o in cat.offers if o.provider == provider and o.gpu == gpu),
                    key=lambda o: (o.gpu_count, o.price_per_hour))
    return offers[0].gpu_count if offers else 1


def check_fleet(text: str, models: tuple[str, ...], cat: Catalogue) -> tuple[str, list[str]]:
    """The fleet as parse_fleet reads it (a FieldError naming what is wrong), and warnings: a model
    no host of it can serve earns nothing in the estimate."""
    entries = parse_fleet(text, cat)
    warnings = []
    for e in entries:
        if e.model is not None and e.model not in models:
            raise FieldError("fleet", f"{e.gpu}:{e.provider}:{e.count}:{e.model}: {e.model} is not among the "
                                      f"models to sell ({', '.join(models)})")
    for m in models:
        entry = cat.model_by_id[m]
        if not any((e.model in (None, m)) and replica_capacity(
                entry, cat.gpu_by_id[e.gpu], gpu_count_of(e.gpu, e.provider, cat)) is not None for e in entries):
            warnings.append(f"no host of this fleet fits {m} (needs {entry.vram_gb[entry.default_quantization]:g} "
                            "GB): it earns nothing in the estimate")
    return ",".join(f"{e.gpu}:{e.provider}:{e.count}" + (f":{e.model}" if e.model else "") for e in entries), warnings


def fleet_cost_per_hour(text: str, cat: Catalogue) -> int:
    """What the rented hosts of the fleet cost an hour at catalogue prices (owned and community: 0)."""
    total = 0
    for e in parse_fleet(text, cat):
        if e.provider in CLOUDS:
            offers = sorted((o for o in cat.offers if o.provider == e.provider and o.gpu == e.gpu),
                            key=lambda o: (o.gpu_count, o.price_per_hour))
            total += offers[0].price_per_hour * e.count
    return total
