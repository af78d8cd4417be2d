"""The playbook variables of a provisioned host: what tokenmill computes (engine, models, vLLM
engines for the machine's GPUs, router URL, token, wheel, addresses) and what the operator adds
for every host (settings.provision_variables: a package mirror in pip_options, another python...)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from backend.catalogue import Catalogue
from backend.fleet.engine_specs import engine_spec, vllm_engines_toml
from backend.provision.playbook import Playbook
from backend.provision.template import Value

# Set by tokenmill for each host; an operator's value for them would serve the wrong model or
# point the agent at the wrong router.
RESERVED = ("engine", "models", "vllm_engines", "router_url", "host_token", "wheel")
# The port a rented instance exposes for the engine (CreateOptions.ports' default).
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


def bootstrap_variables(*, catalogue: Catalogue, model: str, engine: str, gpu: str | None, gpu_count: int,
                        router_url: str, host_token: str, wheel: Path, ssh_host: str, rented: bool,
                        extra: Mapping[str, Value], playbook: Playbook) -> dict[str, object]:
    """The bootstrap playbook's variables for one host (the operator's extras last, but never RESERVED)."""
    values: dict[str, object] = {
        "engine": engine, "models": [model], "router_url": router_url, "host_token": host_token, "wheel": wheel,
        # The engine listens on every interface and is reached where we reach the machine. A rented
        # container exposes RENTED_ENGINE_PORT; an operator's machine keeps the playbook's default.
        "engine_host": "0.0.0.0", "advertise_host": ssh_host,
    }
    if rented:
        values["engine_port"] = RENTED_ENGINE_PORT
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
