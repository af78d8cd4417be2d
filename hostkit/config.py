"""The agent's configuration: defaults, then a TOML file, then TOKENMILL_HOST_* environment variables.

File: `--config PATH`, else $TOKENMILL_HOST_CONFIG, else /etc/tokenmill-host/agent.toml (which may
be absent when the environment gives everything). Nested tables use `__` in variable names:
TOKENMILL_HOST_SIM__DECODE_TPS=80. Lists (models) are comma-separated in the environment.
Every failure is a ConfigError naming the file (or variable) and the field.

The simulated engine (no GPU) needs only `models`:

    router_url = "https://router.example:8640"
    host_token = "tmh-..."
    engine = "sim"
    models = ["qwen2.5-0.5b-instruct"]
    [sim]
    decode_tps = 40

vLLM needs one [[vllm.engines]] table per model (hostkit.engine_spec.EngineSpec, as the backend's
backend/fleet/engine_specs.py computes it for the host's GPU); `models` may then be left out, and
if given must name the same models:

    engine = "vllm"
    gpu_type = "rtx4090"
    engine_port = 8001                  # first model on 8001, the next on 8002, ... unless `port` is set
    [vllm]
    executable = "/opt/tokenmill/venv/bin/vllm"
    log_dir = "/var/log/tokenmill-host" # one vllm-<model>.log per model
    hf_cache_dir = "/data/hf"           # optional: HF_HUB_CACHE for the engines and the disk check
    [[vllm.engines]]
    model = "llama-3.1-8b-instruct"     # catalogue id, served under this name
    hf_id = "meta-llama/Llama-3.1-8B-Instruct"
    quantization = "bf16"
    dtype = "bfloat16"
    max_model_len = 16384
    gpu_memory_utilization = 0.9
    tensor_parallel_size = 1
    extra_args = []
    [vllm.engines.requirements]
    vram_gb = 18.5
    min_compute_capability = "8.0"
    expected_decode_tps = 38
    weights_gb = 16.1

Where the engines listen: engine_host (default 127.0.0.1, enough when the router runs on the same
machine, as with `tokenmill serve --local`). A host the router reaches over the network listens on
every interface (engine_host = "0.0.0.0", what the bootstrap playbook writes) and must then name
advertise_host, the address the router dials (the config is refused otherwise). Either way the
engines take requests only with the engine key (engine_key, a random one per start unless given;
/health stays open), which the agent hands the router in every register and heartbeat.
Off loopback they also speak TLS (engine_tls = "auto"): a self-signed certificate made once in
tls_dir, whose SHA-256 the agent hands the router too, so the router accepts exactly it
(hostkit/engine_tls.py). engine_tls = "on" / "off" forces it either way.

Behind a port mapping (a RunPod pod or a Vast.ai container: the cloud forwards a public port of its
own choosing to the container's port), advertise_ports maps an engine's port to the public port the
router dials at advertise_host (required then); an engine whose port is not mapped is advertised on
its own port. Every port is 1..65535; in the environment: TOKENMILL_HOST_ADVERTISE_PORTS__8001=41234.

    engine_host = "0.0.0.0"
    engine_port = 8001
    advertise_host = "74.48.78.46"
    [advertise_ports]
    8001 = 41234                        # the router reaches the engine on 8001 at 74.48.78.46:41234
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from hostkit.engine_spec import EngineSpec
from hostkit.protocol import HEARTBEAT_INTERVAL_S
from hostkit.sim.engine import SimTiming

ENV_PREFIX = "TOKENMILL_HOST_"
CONFIG_ENV = "TOKENMILL_HOST_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/tokenmill-host/agent.toml")
DEFAULT_CONTROL_PORT = 8650
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
MIN_ENGINE_KEY_CHARS = 16
ENGINE_KEY_PATTERN = re.compile(rf"[A-Za-z0-9._~+/=-]{{{MIN_ENGINE_KEY_CHARS},}}")
NO_VLLM_ENGINES = 'engine = "vllm" needs one [[vllm.engines]] table per model; none is given'


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file or variable and the field."""


class VllmSettings(BaseModel):
    """How the agent runs vLLM (the [vllm] table): one `vllm serve` process per engine spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executable: str = Field(default="vllm", description="the vllm command (a path, or a name on PATH)")
    log_dir: Path = Field(default=Path("/var/log/tokenmill-host"), description="vllm-<model>.log per model")
    hf_cache_dir: Path | None = Field(default=None, description="HF_HUB_CACHE for the engines; None: vLLM's own "
                                                                "default ($HF_HUB_CACHE, $HF_HOME/hub, "
                                                                "~/.cache/huggingface/hub)")
    health_timeout_s: float = Field(default=1800.0, gt=0, description="longest wait for /health after a launch "
                                                                      "(a first launch downloads the weights)")
    unhealthy_restart_s: float = Field(default=60.0, gt=0, description="a running engine failing /health this "
                                                                       "long is restarted")
    restart_initial_s: float = Field(default=5.0, gt=0, description="first wait before relaunching a dead engine")
    restart_max_s: float = Field(default=300.0, gt=0, description="longest wait between relaunches")
    stop_grace_s: float = Field(default=30.0, ge=0, description="SIGTERM, then SIGKILL after this long")
    stop_when_drained: bool = Field(default=True, description="free the GPUs once drained; relaunch on resume")
    engines: list[EngineSpec] = Field(default_factory=list, description="one per model ([[vllm.engines]])")


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    router_url: str = Field(description="Base URL of the tokenmill router, e.g. https://router.example:8640")
    host_token: SecretStr = Field(description="tmh-... token issued by the operator; never logged")
    engine_key: SecretStr | None = Field(
        default=None, description="bearer key the engines require on every route but /health (the "
                                  "agent tells the router); None: a new random one at every start. Never logged")
    name: str = Field(default_factory=socket.gethostname, min_length=1)
    engine: Literal["sim", "vllm"] = "sim"
    models: list[str] = Field(min_length=1, description="catalogue model ids this host serves")
    gpu_type: str | None = Field(default=None, description="catalogue GPU id, e.g. rtx4090")
    engine_host: str = Field(default="127.0.0.1", description="address the engine listens on")
    engine_port: int = Field(default=8001, ge=0, le=65535,
                             description="first engine port (vLLM: one per model from here); 0 = any free port")
    advertise_host: str | None = Field(default=None, description="address the router reaches engines at; "
                                                                 "default engine_host")
    advertise_ports: dict[int, int] = Field(
        default_factory=dict, description="engine port -> the public port the router reaches it at (a cloud's "
                                          "port mapping); an engine whose port is not here is reached on its own")
    engine_tls: Literal["auto", "on", "off"] = Field(
        default="auto", description="TLS on the engines' ports, with a self-signed certificate the router pins: "
                                    "auto = on unless the router reaches the engines over loopback")
    tls_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "state" / "tokenmill-host" / "tls",
                          description="where the engines' certificate and private key are kept (made once)")
    control_port: int = Field(default=DEFAULT_CONTROL_PORT, ge=0, le=65535,
                              description="local control API on 127.0.0.1; 0 = any free port")
    heartbeat_interval_s: float = Field(default=HEARTBEAT_INTERVAL_S, gt=0,
                                        description="until the router's register reply gives its own")
    drain_timeout_s: float = Field(default=600.0, gt=0, description="longest wait for a drain on shutdown")
    retry_initial_s: float = Field(default=0.5, gt=0, description="first back-off when the router is unreachable")
    retry_max_s: float = Field(default=30.0, gt=0, description="longest back-off")
    router_timeout_s: float = Field(default=10.0, gt=0, description="per call to the router")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sim: SimTiming = Field(default_factory=SimTiming, description="timing of the simulated engine")
    sim_seed: int = 0
    vllm: VllmSettings = Field(default_factory=VllmSettings, description="the vLLM engines (engine = \"vllm\")")

    @model_validator(mode="before")
    @classmethod
    def _models_from_vllm_engines(cls, data: Any) -> Any:
        """With vLLM the engine tables already name the models; `models` need not repeat them."""
        if not isinstance(data, dict) or data.get("engine") != "vllm" or data.get("models"):
            return data
        vllm = data.get("vllm")
        engines = vllm.get("engines") if isinstance(vllm, dict) else getattr(vllm, "engines", None)
        if not engines:
            raise ValueError(NO_VLLM_ENGINES)
        if not isinstance(engines, list):
            return data
        names = [e.get("model") if isinstance(e, dict) else getattr(e, "model", None) for e in engines]
        return {**data, "models": [n for n in names if isinstance(n, str)]}

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, v: Any) -> Any:
        return [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v

    @field_validator("router_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("advertise_ports")
    @classmethod
    def _valid_ports(cls, v: dict[int, int]) -> dict[int, int]:
        bad = [f"{k} = {p}" for k, p in v.items() if not (1 <= k <= 65535 and 1 <= p <= 65535)]
        if bad:
            raise ValueError(f"every port must be 1..65535: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _reachable_engine(self) -> AgentConfig:
        if self.engine_host in WILDCARD_HOSTS and not self.advertise_host:
            raise ValueError(f"engine_host {self.engine_host!r} listens everywhere: set advertise_host to the "
                             "address the router reaches this host at")
        if self.advertise_ports and not self.advertise_host:
            raise ValueError("advertise_ports maps ports of a public address: set advertise_host to it")
        return self

    @model_validator(mode="after")
    def _vllm_engine_per_model(self) -> AgentConfig:
        if self.engine != "vllm":
            return self
        specs = [e.model for e in self.vllm.engines]
        if not specs:
            raise ValueError(NO_VLLM_ENGINES)
        duplicates = sorted({m for m in specs if specs.count(m) > 1})
        if duplicates:
            raise ValueError(f"[[vllm.engines]] lists {', '.join(duplicates)} more than once")
        if set(specs) != set(self.models):
            raise ValueError(f"models ({', '.join(self.models)}) and the [[vllm.engines]] models "
                             f"({', '.join(specs)}) differ: leave models out, or list the same ones")
        ports = [e.port for e in self.vllm.engines if e.port]
        if len(ports) != len(set(ports)):
            raise ValueError("two [[vllm.engines]] tables ask for the same port")
        return self

    def engine_spec(self, model: str) -> EngineSpec | None:
        """The vLLM spec for `model`; None with the simulated engine."""
        return next((e for e in self.vllm.engines if e.model == model), None)

    @property
    def public_engine_host(self) -> str:
        return self.advertise_host or self.engine_host

    def public_engine_port(self, port: int) -> int:
        """The port the router reaches the engine listening on `port` at (public_engine_host)."""
        return self.advertise_ports.get(port, port)

    @property
    def uses_tls(self) -> bool:
        """Whether the engines speak TLS: always off the host's loopback, where prompts could be read."""
        if self.engine_tls != "auto":
            return self.engine_tls == "on"
        return not _loopback(self.public_engine_host)

    @property
    def engine_scheme(self) -> str:
        return "https" if self.uses_tls else "http"

    @property
    def local_engine_host(self) -> str:
        """Where the agent itself reaches the engine (loopback when it listens everywhere)."""
        return "127.0.0.1" if self.engine_host in WILDCARD_HOSTS else self.engine_host

    @field_validator("host_token")
    @classmethod
    def _token_given(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("engine_key")
    @classmethod
    def _usable_engine_key(cls, v: SecretStr | None) -> SecretStr | None:
        # It travels in an HTTP header: no spaces or control characters. The message never shows it.
        if v is not None and not ENGINE_KEY_PATTERN.fullmatch(v.get_secret_value()):
            raise ValueError(f"must be at least {MIN_ENGINE_KEY_CHARS} characters of A-Z a-z 0-9 . _ ~ + / = - "
                             "(leave it out for a random one)")
        return v

    def new_engine_key(self) -> str:
        """The engines' key for this run: the configured one, else a fresh random one (call it once)."""
        return self.engine_key.get_secret_value() if self.engine_key is not None else secrets.token_urlsafe(32)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def config_path(explicit: str | Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The file to read and whether it was asked for (an explicit file must exist)."""
    if explicit:
        return Path(explicit).expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    return DEFAULT_CONFIG_PATH, False


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested values from TOKENMILL_HOST_* and, per top-level field, the variable that set it."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        path = var[len(ENV_PREFIX):].lower().split("__")
        node = values
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = raw
        origin[path[0]] = var
    return values, origin


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AgentConfig:
    env = os.environ if env is None else env
    file, explicit = config_path(path, env)
    from_file: dict[str, Any] = {}
    try:
        present = file.is_file()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    if present:
        try:
            from_file = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    elif explicit:
        raise ConfigError(f"{file}: no such file")
    from_env, env_origin = _env_overrides(env)
    try:
        return AgentConfig.model_validate(_merge(from_file, from_env))
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in err["loc"]) or "(config)"
            top = str(err["loc"][0]) if err["loc"] else ""
            if top in env_origin:
                where = env_origin[top]
            elif present:
                where = str(file)
            else:
                where = f"{file} (absent) and {ENV_PREFIX}* environment"
            lines.append(f"{where}: field {field}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def control_port_hint(path: str | Path | None, env: Mapping[str, str]) -> int:
    """The agent's control port for drain/resume/status, which need no full valid config (and may not
    be allowed to read the token in it): the environment, else the file's control_port, else the default."""
    if env.get(ENV_PREFIX + "CONTROL_PORT", "").isdigit():
        return int(env[ENV_PREFIX + "CONTROL_PORT"])
    file, _ = config_path(path, env)
    try:
        value = tomllib.loads(file.read_text(encoding="utf-8")).get("control_port")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return DEFAULT_CONTROL_PORT
    return value if isinstance(value, int) else DEFAULT_CONTROL_PORT
