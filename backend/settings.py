"""One settings object: defaults, then a TOML file, then TOKENMILL_* environment variables.

With no file at all the defaults work: the SQLite ledger and logs live in the data directory
(data/ in a source checkout) and an admin token is generated on first run (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from backend.money import MoneyError, parse_usd

CONFIG_ENV = "TOKENMILL_CONFIG"
PPM_PER_PCT = 10_000  # millionths of a whole in one per cent


class SettingsError(ValueError):
    """The configuration is invalid; the message names the file (if any) and the field."""


def default_data_dir() -> Path:
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tokenmill"


def find_config_file() -> Path | None:
    """TOKENMILL_CONFIG if set (it must exist), else config.toml in the data dir or ~/.config."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV}={explicit}: no such file")
        return path
    data_dir = Path(os.environ.get("TOKENMILL_DATA_DIR") or default_data_dir())
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (data_dir / "config.toml", xdg / "tokenmill" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


class PricingSettings(BaseModel):
    """`[pricing]`: the dynamic pricing engine (backend/pricing/policy.py documents the formula).

    Each model's price sits in its market range (the catalogue's, or the operator's floor and
    ceiling): at `base_position` of the range when its load equals `target_utilization`, higher
    when busier, lower when idle; `peak_premium` on top during `peak_hours` (UTC); never more than
    `max_step_pct` per interval, and not at all for a move under `hysteresis_pct`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="false: every model at its list price (or its pin).")
    interval_s: float = Field(default=60.0, gt=0, description="How often prices are recomputed.")
    window_s: float = Field(default=300.0, gt=0, description="Load is averaged over this long.")
    target_utilization: float = Field(default=0.60, gt=0, lt=1, description="The load the base price is for.")
    utilization_weight: float = Field(
        default=0.5, ge=0, le=1,
        description="Load = this x the engines' utilization + the rest x demand / capacity tokens/s.")
    sensitivity: float = Field(
        default=1.0, gt=0, description="How far up the range one unit of load above the target moves the price.")
    base_position: float = Field(
        default=0.4, ge=0, le=1, description="Where in the market range the price sits at the target load "
        "(0.4: just under the market midpoint, to attract traffic).")
    peak_hours: list[int] = Field(default_factory=lambda: list(range(13, 22)),
                                  description="UTC hours (0-23) that are peak time.")
    peak_premium: float = Field(default=0.10, ge=0, le=1, description="Added during peak hours (0.10 = +10 %).")
    max_step_pct: float = Field(default=5.0, gt=0, le=100, description="Largest change per interval, percent.")
    hysteresis_pct: float = Field(
        default=3.0, ge=0, lt=100, description="A target closer than this (percent) to the price leaves it as is; "
        "a move back against the last one needs 3 times this.")

    @field_validator("peak_hours")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        bad = [h for h in v if not 0 <= h <= 23]
        if bad:
            raise ValueError(f"hours are 0-23 (UTC), got {bad}")
        return sorted(set(v))


class AutoscalerSettings(BaseModel):
    """`[autoscaler]`: replicas per model from load (backend/autoscaler/policy.py).

    Scale up when a model's load stays above `upper_threshold` (or its engines queue more than
    `overload_waiting` requests per replica) for `upscale_delay` decisions in a row; down when it
    stays under `lower_threshold` for `downscale_delay` decisions; towards the replicas that would
    bring it to `target_utilization`, within each model's min and max and the fleet budget."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Rent and release hosts by itself (`serve --local`: on).")
    interval_s: float = Field(default=60.0, gt=0, description="Between decisions.")
    window_s: float = Field(default=300.0, gt=0, description="Load is averaged over this long.")
    target_utilization: float = Field(default=0.60, gt=0, lt=1)
    upper_threshold: float = Field(default=0.80, gt=0, le=2)
    lower_threshold: float = Field(default=0.30, ge=0, lt=1)
    overload_waiting: float = Field(
        default=2.0, ge=0, description="Mean requests waiting per replica that count as overload.")
    upscale_delay: int = Field(default=3, ge=1, description="Consecutive decisions wanting more before renting.")
    downscale_delay: int = Field(default=10, ge=1, description="Consecutive decisions wanting fewer before releasing.")
    min_replicas: int = Field(default=1, ge=0, description="Per model, unless the operator sets its own.")
    max_replicas: int = Field(default=4, ge=1, description="Per model, unless the operator sets its own.")
    budget_per_hour_usd: str = Field(
        default="10.00", description="What rented hosts may cost together, USD per hour (a decimal string).")
    min_expected_profit_per_hour_usd: str | None = Field(
        default=None, description="Rent only when one more replica is expected to earn at least this much over its "
        "price per hour (USD, a decimal string); unset: rent on load alone. Not applied below a model's minimum.")
    providers: list[str] = Field(
        default_factory=list, description="Where to rent; empty = every provider with credentials.")
    host_keys: Literal["ask", "trust_new_instance"] = Field(
        default="ask", description="ask: a rented host waits for the operator to confirm its SSH key in the "
        "console; trust_new_instance: accept the key of an instance the provider just created for us (a "
        "machine-in-the-middle between us and the new instance would go unnoticed).")

    @field_validator("budget_per_hour_usd", "min_expected_profit_per_hour_usd")
    @classmethod
    def _usd(cls, v: str | None, info: ValidationInfo) -> str | None:
        try:
            if v is not None:
                parse_usd(v, what=info.field_name or "amount")
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _order(self) -> AutoscalerSettings:
        if not self.lower_threshold < self.target_utilization < self.upper_threshold:
            raise ValueError(f"need lower_threshold < target_utilization < upper_threshold, got "
                             f"{self.lower_threshold} / {self.target_utilization} / {self.upper_threshold}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self

    @property
    def budget_nano(self) -> int:
        return parse_usd(self.budget_per_hour_usd, what="budget_per_hour_usd")

    @property
    def min_profit_nano(self) -> int | None:
        v = self.min_expected_profit_per_hour_usd
        return None if v is None else parse_usd(v, what="min_expected_profit_per_hour_usd")


def _positive_usd(v: str, what: str) -> str:
    try:
        if parse_usd(v, what=what) <= 0:
            raise ValueError(f"{what} must be more than 0, got {v!r}")
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
    return v


class BillingSettings(BaseModel):
    """`[billing]`: Stripe (money in), auto-recharge, invoices (backend/billing/).

    Without `stripe_secret_key` there is no Checkout and no auto-recharge (the API says so);
    credit then arrives only by an operator's grant. `stripe_api_base` points the stripe library
    elsewhere (the tests' local Stripe-shaped server); leave it empty in production."""

    model_config = ConfigDict(extra="forbid")

    stripe_secret_key: SecretStr | None = Field(default=None, description="sk_live_... / sk_test_... (a secret).")
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_...: verifies Stripe-Signature on POST /v1/billing/webhook (a secret).")
    stripe_api_base: str = Field(default="", description="Empty = Stripe's servers; tests point it at a local one.")
    webhook_tolerance_s: int = Field(default=300, ge=1, description="Oldest signed timestamp a webhook may carry.")
    checkout_min_usd: str = Field(default="5.00", description="Smallest top-up through Checkout.")
    checkout_max_usd: str = Field(default="10000.00", description="Largest top-up through Checkout.")
    checkout_success_url: str = Field(default="", description="Where Checkout sends the client after paying; "
                                      "empty = the router's public URL + /billing/done.")
    checkout_cancel_url: str = Field(default="", description="Where Checkout sends a client who cancels; "
                                     "empty = the router's public URL + /billing/cancelled.")
    recharge_max_failures: int = Field(default=3, ge=1, description="Failures in a row that turn auto-recharge off.")
    business_name: str = Field(default="tokenmill operator", description="The seller named on invoices.")
    business_address: str = Field(default="", description="The seller's address on invoices (lines split by \\n).")
    invoice_prefix: str = Field(default="TM", pattern=r"^[A-Z0-9]{1,8}$",
                                description="Invoice numbers: PREFIX-YYYY-NNNNNN.")

    @field_validator("checkout_min_usd", "checkout_max_usd")
    @classmethod
    def _usd(cls, v: str, info) -> str:
        return _positive_usd(v, info.field_name)

    @field_validator("stripe_api_base", "checkout_success_url", "checkout_cancel_url")
    @classmethod
    def _url(cls, v: str, info) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"{info.field_name} must start with http:// or https://, got {v!r}")
        return v

    @model_validator(mode="after")
    def _range(self) -> BillingSettings:
        if self.checkout_min_nano > self.checkout_max_nano:
            raise ValueError(f"checkout_min_usd {self.checkout_min_usd} > checkout_max_usd {self.checkout_max_usd}")
        return self

    @property
    def checkout_min_nano(self) -> int:
        return parse_usd(self.checkout_min_usd, what="checkout_min_usd")

    @property
    def checkout_max_nano(self) -> int:
        return parse_usd(self.checkout_max_usd, what="checkout_max_usd")


class PayoutSettings(BaseModel):
    """`[payouts]`: paying hosts what they earned (backend/billing/payouts/): Stripe Connect transfers
    through [billing]'s Stripe account, or recorded by the operator for hosts paid by other means."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(default=300.0, gt=0, description="Between runs of the payout loop (billing.payouts).")
    default_threshold_usd: str = Field(default="10.00", description="A host's threshold unless it chose one: "
                                       "it is paid once what it is owed reaches this.")
    minimum_threshold_usd: str = Field(default="1.00", description="The lowest threshold a host may choose.")
    retry_backoff_s: list[float] = Field(
        default_factory=lambda: [60.0, 300.0, 1800.0, 7200.0],
        description="After a payout attempt fails, the waits before the next ones (the last one repeats).")

    @field_validator("default_threshold_usd", "minimum_threshold_usd")
    @classmethod
    def _usd(cls, v: str, info) -> str:
        return _positive_usd(v, info.field_name)

    @field_validator("retry_backoff_s")
    @classmethod
    def _backoff(cls, v: list[float]) -> list[float]:
        if not v or any(s <= 0 for s in v):
            raise ValueError(f"retry_backoff_s needs at least one wait, each above 0 seconds, got {v}")
        return v

    @model_validator(mode="after")
    def _range(self) -> PayoutSettings:
        if self.default_threshold_nano < self.minimum_threshold_nano:
            raise ValueError(f"default_threshold_usd {self.default_threshold_usd} is below "
                             f"minimum_threshold_usd {self.minimum_threshold_usd}")
        return self

    @property
    def default_threshold_nano(self) -> int:
        return parse_usd(self.default_threshold_usd, what="default_threshold_usd")

    @property
    def minimum_threshold_nano(self) -> int:
        return parse_usd(self.minimum_threshold_usd, what="minimum_threshold_usd")


class OpenRouterSettings(BaseModel):
    """`[openrouter]`: the provider listing OpenRouter reads (GET /openrouter/models), the fee it
    keeps of the traffic it brings, and each model's uptime as OpenRouter counts it.

    Host agents do not report where they run, so the listing's `datacenters` come from here: each
    host serving a model counts as `host_countries[its id or name]`, else as `datacenters` (the
    fleet's default); a model's list is the union over its routable replicas' hosts."""

    model_config = ConfigDict(extra="forbid")

    datacenters: list[str] = Field(default_factory=list, description="ISO 3166-1 alpha-2 codes where the fleet's "
                                   "hosts run, for hosts not named in host_countries (e.g. [\"US\"]).")
    host_countries: dict[str, str] = Field(default_factory=dict, description="Host id or name -> the ISO 3166-1 "
                                           "alpha-2 code of the country it runs in.")
    fee_pct: float = Field(default=5.5, description="OpenRouter's fee, % of what a request through it is charged "
                           "(0 to 20, at most 4 decimals); posted at settlement for clients on the openrouter channel.")
    uptime_window_s: int = Field(default=1800, ge=60, le=86_400,
                                 description="The rolling window of each model's uptime as OpenRouter counts it.")
    uptime_min_requests: int = Field(default=100, ge=1, description="Requests in the window below which a model's "
                                     "uptime is shown as N/A (OpenRouter's own threshold is 100).")

    @field_validator("datacenters")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        return [_country(c, "datacenters") for c in v]

    @field_validator("host_countries")
    @classmethod
    def _host_codes(cls, v: dict[str, str]) -> dict[str, str]:
        return {host: _country(c, f"host_countries.{host}") for host, c in v.items()}

    @field_validator("fee_pct")
    @classmethod
    def _fee(cls, v: float) -> float:
        if not 0 <= v <= 20:
            raise ValueError(f"must be a percentage from 0 to 20 (OpenRouter's fee is about 5.5), got {v!r}")
        if Decimal(repr(v)) * PPM_PER_PCT != int(Decimal(repr(v)) * PPM_PER_PCT):
            raise ValueError(f"must have at most 4 decimals (0.0001 %), got {v!r}")
        return v

    @property
    def fee_ppm(self) -> int:
        """The fee in millionths of a charge, exactly (5.5 % -> 55000): money never meets a float."""
        return int(Decimal(repr(self.fee_pct)) * PPM_PER_PCT)


def _country(code: str, what: str) -> str:
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise ValueError(f"{what}: {code!r} is not an ISO 3166-1 alpha-2 country code such as \"US\" or \"DE\"")
    return code.upper()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENMILL_", extra="forbid", validate_default=True,
                                      env_nested_delimiter="__")

    data_dir: Path = Field(default_factory=default_data_dir, description="Ledger, logs and admin token.")
    database_url: str = Field(default="", repr=False, description="SQLAlchemy URL; empty = SQLite in data_dir.")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="NORMAL survives a killed process; FULL also survives power loss."
    )
    log_file: Path | None = Field(default=None, description="Empty = data_dir/logs/tokenmill.log.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=8640, ge=1, le=65535)
    admin_token: SecretStr = Field(default=SecretStr(""), description="Empty = read or create data_dir/admin_token.")
    ledger_max_batch: int = Field(default=4096, ge=1, le=100_000)
    hold_ttl_s: int = Field(default=900, ge=1, description="A hold not settled by then is released.")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Larger client requests get 413.")
    # Limits of the HTTP server itself (backend/http_limits.py), before any request reaches the app.
    http_max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="A larger request line + headers gets 431."
    )
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for a request's headers (408); an idle new connection is closed."
    )
    http_body_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for a request's whole body once its headers arrived (408)."
    )
    http_keep_alive_s: float = Field(default=30.0, gt=0, description="An idle kept-alive connection is closed.")
    http_max_connections_per_ip: int = Field(
        default=256, ge=0, description="Open connections from one address; more get 429. 0 = no cap (behind a proxy)."
    )
    key_rate_limit_rps: float = Field(default=50.0, ge=0, description="Requests/s per API key; 0 = unlimited.")
    key_rate_limit_burst: int = Field(default=100, ge=1)
    upstream_connect_timeout_s: float = Field(default=3.0, gt=0)
    upstream_read_timeout_s: float = Field(default=120.0, gt=0, description="Longest silence from an engine.")
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    gpu_meter_tick_s: float = Field(
        default=5.0, gt=0, description="How often the GPU cost meter matches its stretches to the connected hosts."
    )
    gpu_cost_persist_s: float = Field(
        default=60.0, gt=0, description="How often open GPU cost stretches reach the database: what a crash can "
        "lose. A simulation, which does not crash, may write far less often."
    )
    gpu_cost_post_s: int = Field(
        default=60, ge=60, le=86_400, description="Rented and owned GPU time reaches the ledger (GPU cost -> the "
        "provider's payable) as one transfer per host per this many seconds, a divisor of a day (86400). A "
        "simulation posts hourly."
    )
    events_stream_s: float = Field(
        default=300.0, gt=0, description="A live events stream (GET /admin/events/stream) ends after this long; "
        "the console reconnects from the last event it saw, so a forgotten connection does not stay forever."
    )
    catalogue_dir: Path | None = Field(
        default=None, description="Directory with models.toml and gpus.toml; empty = the shipped catalogues."
    )
    local_hosts: int = Field(default=3, ge=1, le=32, description="Simulated hosts of `serve --local`.")
    local_traffic_rps: float = Field(default=4.0, ge=0, description="Synthetic client requests/s of `--local`.")
    profit_target_daily_usd: str = Field(
        default="0", description="Profit a day the operator aims for (USD); the console shows progress. 0 = none.")
    # GPU cloud providers (backend/fleet/providers). A provider without a key cannot be used;
    # the URLs are overridden only by tests, which point them at servers on loopback.
    runpod_api_key: SecretStr | None = Field(default=None, description="RunPod API key (rents GPU pods).")
    vast_api_key: SecretStr | None = Field(default=None, description="Vast.ai API key (rents GPU instances).")
    lambda_api_key: SecretStr | None = Field(default=None, description="Lambda Cloud API key (rents GPU instances).")
    runpod_api_url: str = "https://rest.runpod.io/v1"
    runpod_graphql_url: str = "https://api.runpod.io/graphql"
    vast_api_url: str = "https://console.vast.ai/api/v0"
    lambda_api_url: str = "https://cloud.lambdalabs.com/api/v1"
    ssh_public_key_path: Path | None = Field(
        default=None, description="Public key installed on rented hosts; empty = ~/.ssh/id_ed25519.pub."
    )
    # Provisioning (backend/provision/service.py): turning a machine into a serving host.
    ssh_key_path: Path | None = Field(
        default=None, description="Private key the playbooks log in with; empty = ssh_public_key_path without .pub."
    )
    public_url: str = Field(
        default="", description="The router's URL as hosts reach it (their agents' router_url); empty = the admin URL."
    )
    host_wheel: Path | None = Field(
        default=None, description="tokenmill wheel installed on hosts; empty = built from this source checkout."
    )
    provision_variables: dict[str, str | int | bool | list[str]] = Field(
        default_factory=dict,
        description="Extra bootstrap/teardown playbook variables for every host (e.g. pip_options for a package "
                    "mirror); the ones tokenmill computes (engine, models, router_url...) cannot be overridden.",
    )
    provision_keep_failed: bool = Field(
        default=False, description="Keep a failed job's machine (still billing) and host, to debug it."
    )
    provision_poll_interval_s: float = Field(default=5.0, gt=0, description="Between looks at a renting instance.")
    provision_boot_timeout_s: float = Field(
        default=900.0, gt=0, description="Longest wait for a rented instance to run and accept SSH."
    )
    host_key_timeout_s: float = Field(
        default=900.0, gt=0, description="Longest wait for the operator to confirm an unknown host key."
    )
    provision_ready_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest wait, after bootstrap, for the host's heartbeat and passed check."
    )
    teardown_drain_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest wait for a host's requests in flight before it is torn down."
    )
    pricing: PricingSettings = Field(default_factory=PricingSettings, description="Dynamic pricing ([pricing]).")
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings,
                                           description="The autoscaler ([autoscaler]).")
    billing: BillingSettings = Field(default_factory=BillingSettings,
                                     description="Stripe, auto-recharge and invoices ([billing]).")
    openrouter: OpenRouterSettings = Field(default_factory=OpenRouterSettings,
                                           description="The OpenRouter provider listing ([openrouter]).")
    payouts: PayoutSettings = Field(default_factory=PayoutSettings,
                                    description="Host payouts: loop interval, thresholds, retry backoff ([payouts]).")

    config_file: Path | None = Field(default=None, exclude=True)

    @field_validator("data_dir", "log_file", "catalogue_dir", "host_wheel", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser().resolve() if v is not None else None

    @field_validator("gpu_cost_post_s")
    @classmethod
    def _post_divides_a_day(cls, v: int) -> int:
        if 86_400 % v:
            raise ValueError(f"must divide a day (86400 s) so that no period crosses midnight, got {v}")
        return v

    @field_validator("profit_target_daily_usd")
    @classmethod
    def _profit_target(cls, v: str) -> str:
        try:
            if parse_usd(v, what="profit_target_daily_usd") < 0:
                raise ValueError("must not be negative")
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def profit_target_daily_nano(self) -> int:
        return parse_usd(self.profit_target_daily_usd, what="profit_target_daily_usd")

    @field_validator("public_url", mode="after")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE_IN_USE
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def log_path(self) -> Path:
        return self.log_file or self.data_dir / "logs" / "tokenmill.log"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin_token"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_host}:{self.admin_port}"

    @property
    def router_public_url(self) -> str:
        """Where hosts' agents reach the router."""
        return (self.public_url or self.admin_url).rstrip("/")

    def ensure_data_dir(self) -> Path:
        """The data directory, created (or tightened) 0700: it holds the ledger, logs and tokens."""
        from backend.private_files import private_dir

        return private_dir(self.data_dir, tighten=True)

    def ensure_admin_token(self) -> str:
        """The admin bearer token: from settings, or the token file, created 0600 on first run."""
        self.ensure_data_dir()
        if self.admin_token.get_secret_value():
            return self.admin_token.get_secret_value()
        path = self.admin_token_file
        if path.is_file():
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token
        token = "tma-" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(path, 0o600)
        return token


_CONFIG_FILE_IN_USE: Path | None = None


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning every failure into a SettingsError naming file and field."""
    global _CONFIG_FILE_IN_USE
    path = find_config_file()
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    _CONFIG_FILE_IN_USE = path
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        where = f"{path}" if path else "settings (environment)"
        lines = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "(settings)"
            env = f"TOKENMILL_{field.upper().replace('.', '__')}"
            lines.append(f"{where}: field {field} (or {env}): {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
    finally:
        _CONFIG_FILE_IN_USE = None
    settings.config_file = path
    return settings
