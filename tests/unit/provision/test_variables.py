"""Playbook variables of a provisioned host: what tokenmill sets, what the operator may add."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.catalogue import load_catalogue
from backend.provision.playbook import load_named
from backend.provision.variables import VariablesError, bootstrap_variables, check_extra, teardown_variables

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
