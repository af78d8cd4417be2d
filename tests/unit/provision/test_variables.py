"""Playbook variables of a provisioned host: what tokenmill sets, what the operator may add."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from backend.catalogue import load_catalogue
from backend.provision.playbook import TemplateStep, load_named
from backend.provision.variables import (
    RENTED_ENGINE_PORT,
    VariablesError,
    bootstrap_variables,
    check_extra,
    rented_engine_ports,
    teardown_variables,
)
from hostkit.config import load_config

CAT = load_catalogue()
BOOTSTRAP, TEARDOWN = load_named("bootstrap"), load_named("teardown")


def values(**kw):
    base = dict(catalogue=CAT, model="llama-3.1-8b-instruct", engine="vllm", gpu="rtx4090", gpu_count=1,
                router_url="https://router.example:8640", host_token="tmh-abc", wheel=Path("/w/tokenmill.whl"),
                ssh_host="203.0.113.7", rented=True, extra={}, playbook=BOOTSTRAP)
    return bootstrap_variables(**{**base, **kw})


def test_a_rented_vllm_host_gets_its_engines_and_is_reached_where_ssh_reaches_it():
    v = values(extra={"pip_options": ["--index-url", "https://mirror/simple"], "drain_timeout_s": 30})
    assert '[[vllm.engines]]\nmodel = "llama-3.1-8b-instruct"' in v["vllm_engines"]
    assert (v["engine_host"], v["advertise_host"], v["engine_port"]) == ("0.0.0.0", "203.0.113.7", 8000)
    assert v["pip_options"] == ["--index-url", "https://mirror/simple"]
    assert "drain_timeout_s" not in v  # a teardown variable: not the bootstrap's
    resolved = BOOTSTRAP.resolve(v)
    kept = teardown_variables(resolved, {"drain_timeout_s": 30}, TEARDOWN)
    assert kept == {"install_dir": "/opt/tokenmill-host", "config_file": "/etc/tokenmill-host/agent.toml",
                    "service_user": "tokenmill", "service_name": "tokenmill-host", "drain_timeout_s": 30}


def test_the_simulated_engine_needs_no_gpu_and_an_own_machine_keeps_the_default_port():
    v = values(engine="sim", gpu=None, rented=False)
    assert "vllm_engines" not in v and "engine_port" not in v
    with pytest.raises(VariablesError, match="engine vllm needs to know the machine's GPU"):
        values(gpu=None)


def test_operator_variables_may_not_replace_what_tokenmill_computes():
    with pytest.raises(VariablesError, match="sets host_token, router_url, which tokenmill computes"):
        check_extra({"router_url": "http://x", "host_token": "tmh-x"}, BOOTSTRAP, TEARDOWN)
    with pytest.raises(VariablesError, match="has instal_dir, which neither"):
        check_extra({"instal_dir": "/opt/x"}, BOOTSTRAP, TEARDOWN)
    check_extra({"install_dir": "/opt/x", "drain_timeout_s": 5}, BOOTSTRAP, TEARDOWN)


def agent_config_of(resolved):
    """The agent.toml the bootstrap playbook writes from these values, as the agent loads it."""
    (step,) = [s for s in BOOTSTRAP.steps if isinstance(s, TemplateStep) and s.source.name == "agent.toml"]
    text = step.content.render({**resolved, "wheel": str(resolved["wheel"])})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "agent.toml"
        path.write_text(text)
        return text, load_config(path, env={})


def test_a_cloud_port_mapping_of_the_engine_port_becomes_the_agents_advertise_ports():
    # Vast.ai/RunPod map the container's 8000 to 41234 at the public address: the router must dial that.
    v = values(port_map={8000: 41234, 8888: 41235})
    assert v["advertise_ports"] == "[advertise_ports]\n8000 = 41234\n"  # only the engine's port
    assert (v["advertise_host"], v["engine_port"]) == ("203.0.113.7", 8000)
    text, cfg = agent_config_of(BOOTSTRAP.resolve(v))
    assert 'control_port = 8650\n[advertise_ports]\n8000 = 41234\n\n[vllm]' in text
    assert (cfg.advertise_host, cfg.advertise_ports, cfg.public_engine_port(8000)) == ("203.0.113.7", {8000: 41234},
                                                                                       41234)
    # No mapping (Lambda's VMs, an operator's machine, a port mapped to itself): no table, the own port.
    for v in (values(), values(port_map={8000: 8000}), values(rented=False, port_map={8000: 41234})):
        assert "advertise_ports" not in v
        _, cfg = agent_config_of(BOOTSTRAP.resolve(v))
        assert cfg.advertise_ports == {}


def test_the_operators_engine_port_is_the_one_exposed_and_mapped():
    assert rented_engine_ports({}) == (RENTED_ENGINE_PORT,)
    assert rented_engine_ports({"engine_port": 9001}) == (9001,)
    assert rented_engine_ports({"engine_port": 0}) == ()  # any free port: nothing to expose or map
    v = values(extra={"engine_port": 9001}, port_map={8000: 41234, 9001: 41235})
    assert (v["engine_port"], v["advertise_ports"]) == (9001, "[advertise_ports]\n9001 = 41235\n")
    with pytest.raises(VariablesError, match="engine_port must be a port number"):
        rented_engine_ports({"engine_port": "http"})


def test_advertise_ports_is_computed_per_host_and_checked_by_the_playbook():
    with pytest.raises(VariablesError, match="sets advertise_ports, which tokenmill computes"):
        check_extra({"advertise_ports": "[advertise_ports]\n8000 = 1\n"}, BOOTSTRAP, TEARDOWN)
    with pytest.raises(ValueError, match="variable advertise_ports"):
        BOOTSTRAP.resolve({**values(), "advertise_ports": "[advertise_ports]\n8000 = 1\n[vllm]\nexecutable = 'x'\n"})
