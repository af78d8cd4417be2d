"""The playbook variables of a provisioned host: what tokenmill computes (engine, models, vLLM
engines for the machine's GPUs, router URL, token, wheel, addresses) and what the operator adds
for every host (settings.provision_variables: a package mirror in pip_options, another python...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from backend.catalogue import Catalogue
from backend.fleet.engine_specs import engine_spec, vllm_engines_toml
from backend.provision.playbook import Playbook
from backend.provision.template import Value

# Set by tokenmill for each host; an operator's value for them would serve the wrong model or
# point the agent at the wrong router.
RESERVED = ("engine", "models", "vllm_engines", "router_url", "host_token", "wheel", "advertise_ports")
# The port the engine listens on inside a rented instance, unless the operator's engine_port says
# otherwise; the instance is created exposing it (rented_engine_ports, CreateOptions.ports).
RENTED_ENGINE_PORT = 8000


class VariablesError(ValueError):
    """settings.provision_variables or the request cannot make valid playbook variables."""


def check_extra(extra: Mapping[str, object], bootstrap: Playbook, teardown: Playbook) -> None:
    """Refuse operator variables that tokenmill sets itself or that neither playbook declares."""
    reserved = sorted(set(extra) & set(RESERVED))
    if reserved:
        raise VariablesError(f"settings.provision_variables sets {', '.join(reserved)}, which tokenmill computes "
                             "for each host: remove them")
    known = set(bootstrap.variables) | set(teardown.variables)
    unknown = sorted(set(extra) - known)
    if unknown:
        raise VariablesError(f"settings.provision_variables has {', '.join(unknown)}, which neither the bootstrap "
                             f"nor the teardown playbook declares (they declare: {', '.join(sorted(known))})")


def rented_engine_ports(extra: Mapping[str, Value]) -> tuple[int, ...]:
    """The container ports a rented instance must expose for its engine (CreateOptions.ports): the one
    model's engine listens on engine_port (its spec names no port of its own), RENTED_ENGINE_PORT
    unless the operator's variables set another; none for 0 (any free port, which no cloud can map)."""
    raw = extra.get("engine_port", RENTED_ENGINE_PORT)
    port = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(raw) if str(raw).isdigit() else -1
    if not 0 <= port <= 65535:
        raise VariablesError(f"settings.provision_variables engine_port must be a port number, not {raw!r}")
    return (port,) if port else ()


def advertise_ports_toml(engine_ports: Sequence[int], mapped: Mapping[int, int]) -> str:
    """The agent config's [advertise_ports] table for the engine ports the cloud maps to other public
    ports (Instance.ports); empty when none is."""
    lines = [f"{port} = {mapped[port]}" for port in engine_ports if port in mapped and mapped[port] != port]
    return "\n".join(["[advertise_ports]", *lines]) + "\n" if lines else ""


def bootstrap_variables(*, catalogue: Catalogue, model: str, engine: str, gpu: str | None, gpu_count: int,
                        router_url: str, host_token: str, wheel: Path, ssh_host: str, rented: bool,
                        extra: Mapping[str, Value], playbook: Playbook,
                        port_map: Mapping[int, int] | None = None) -> dict[str, object]:
    """The bootstrap playbook's variables for one host (the operator's extras last, but never RESERVED).
    `port_map` is the rented instance's port mapping (Instance.ports): the router is told to reach the
    engine at ssh_host on the public port its container port is mapped to."""
    values: dict[str, object] = {
        "engine": engine, "models": [model], "router_url": router_url, "host_token": host_token, "wheel": wheel,
        # The engine listens on every interface and is reached where we reach the machine. A rented
        # container exposes RENTED_ENGINE_PORT; an operator's machine keeps the playbook's default.
        "engine_host": "0.0.0.0", "advertise_host": ssh_host,
    }
    if rented:
        values["engine_port"] = RENTED_ENGINE_PORT
        advertise_ports = advertise_ports_toml(rented_engine_ports(extra), port_map or {})
        if advertise_ports:
            values["advertise_ports"] = advertise_ports
    if engine == "vllm":
        if gpu is None:
            raise VariablesError("engine vllm needs to know the machine's GPU (a catalogue GPU id) to configure "
                                 "vLLM for it")
        values["vllm_engines"] = vllm_engines_toml([engine_spec(catalogue, model, gpu, gpu_count)])
    values.update({k: v for k, v in extra.items() if k in playbook.variables})
    return values


def teardown_variables(bootstrap_values: Mapping[str, Value], extra: Mapping[str, Value],
                       teardown: Playbook) -> dict[str, Value]:
    """What the teardown playbook needs to undo this bootstrap (where it installed, as whom), to keep."""
    out = {k: v for k, v in bootstrap_values.items() if k in teardown.variables and k not in teardown.secrets}
    out.update({k: v for k, v in extra.items() if k in teardown.variables and k not in out})
    return out
