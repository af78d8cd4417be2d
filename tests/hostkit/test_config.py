"""The agent's configuration: TOML file, environment, and errors that name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostkit.config import DEFAULT_CONTROL_PORT, ConfigError, control_port_hint, load_config

SECRET = "tmh-config-test-SECRET-token"
GOOD = f'''
router_url = "https://router.example:8640/"
host_token = "{SECRET}"
name = "gpu-box-1"
models = ["llama-3.1-8b-instruct"]
gpu_type = "rtx4090"
control_port = 9123

[sim]
decode_tps = 80
speed = 0
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load_config(path, env={"TOKENMILL_HOST_SIM__DECODE_TPS": "120", "TOKENMILL_HOST_MODELS": "a, b"})
    assert cfg.router_url == "https://router.example:8640"
    assert cfg.models == ["a", "b"]  # the environment wins, comma-separated
    assert cfg.sim.decode_tps == 120 and cfg.sim.speed == 0  # nested merge keeps the file's other keys
    assert cfg.engine == "sim" and cfg.gpu_type == "rtx4090"
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())


def test_config_env_variable_and_environment_only(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_config(env={"TOKENMILL_HOST_CONFIG": str(path)}).name == "gpu-box-1"
    cfg = load_config(env={"TOKENMILL_HOST_ROUTER_URL": "http://r:1", "TOKENMILL_HOST_HOST_TOKEN": SECRET,
                           "TOKENMILL_HOST_MODELS": "m"})
    assert cfg.models == ["m"] and cfg.host_token.get_secret_value() == SECRET


def test_bad_field_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("decode_tps = 80", "decode_tps = -1"))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value) and "sim.decode_tps" in str(err.value)


def test_bad_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD), env={"TOKENMILL_HOST_ENGINE": "tgi"})
    assert "TOKENMILL_HOST_ENGINE: field engine" in str(err.value)


@pytest.mark.parametrize(("text", "needle"), [
    ("router_url = ", "not valid TOML"),
    (GOOD.replace("https://", "ftp://"), "field router_url"),
    (GOOD.replace(f'"{SECRET}"', '""'), "field host_token"),
    (GOOD + 'colour = "blue"\n', "field sim.colour"),  # a misspelt key inside [sim]
    (GOOD.replace('name = "gpu-box-1"', 'engine_host = "0.0.0.0"'), "advertise_host"),
], ids=["toml", "url", "token", "extra", "wildcard"])
def test_invalid_files(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    assert needle in str(err.value)
    assert SECRET not in str(err.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", env={})


def test_control_port_hint(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert control_port_hint(path, {}) == 9123
    assert control_port_hint(path, {"TOKENMILL_HOST_CONTROL_PORT": "9200"}) == 9200
    assert control_port_hint(tmp_path / "absent.toml", {}) == DEFAULT_CONTROL_PORT


VLLM = f'''
router_url = "https://router.example:8640"
host_token = "{SECRET}"
engine = "vllm"
engine_port = 8001
[vllm]
executable = "/opt/vllm/bin/vllm"
log_dir = "/var/log/tm"
[[vllm.engines]]
model = "llama-3.1-8b-instruct"
hf_id = "meta-llama/Llama-3.1-8B-Instruct"
dtype = "bfloat16"
[vllm.engines.requirements]
vram_gb = 18.5
min_compute_capability = "8.0"
expected_decode_tps = 38
weights_gb = 16.1
[[vllm.engines]]
model = "qwen2.5-7b-instruct"
hf_id = "Qwen/Qwen2.5-7B-Instruct-AWQ"
quantization = "int4"
port = 9000
[vllm.engines.requirements]
vram_gb = 4.4
min_compute_capability = "7.5"
weights_gb = 3.8
'''


def test_vllm_engine_tables_name_the_models(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VLLM), env={"TOKENMILL_HOST_VLLM__STOP_GRACE_S": "5"})
    assert cfg.engine == "vllm" and cfg.models == ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]
    assert cfg.vllm.executable == "/opt/vllm/bin/vllm" and cfg.vllm.stop_grace_s == 5
    spec = cfg.engine_spec("qwen2.5-7b-instruct")
    assert spec is not None and spec.port == 9000 and spec.requirements.min_compute_capability == "7.5"
    assert cfg.engine_spec("absent") is None
    # The simulated path is untouched: no engine tables needed, none consulted.
    assert load_config(write(tmp_path, GOOD), env={}).vllm.engines == []


@pytest.mark.parametrize(("text", "needle"), [
    (VLLM.split("[[vllm.engines]]")[0], "needs one [[vllm.engines]] table per model"),
    (VLLM.replace('engine_port = 8001', 'models = ["phi-4"]'), "models (phi-4) and the [[vllm.engines]] models"),
    (VLLM.replace("port = 9000", "port = 9000\ntensor_parallel_size = 2\ndevices = [0]"), "one device per GPU"),
    (VLLM.replace('min_compute_capability = "7.5"', 'min_compute_capability = "seven"'),
     "vllm.engines.1.requirements.min_compute_capability"),
    (VLLM.replace('model = "qwen2.5-7b-instruct"', 'model = "llama-3.1-8b-instruct"'), "more than once"),
    (VLLM.replace("weights_gb = 3.8\n", ""), "vllm.engines.1.requirements.weights_gb"),
], ids=["no-engines", "models-differ", "devices", "capability", "duplicate", "missing-requirement"])
def test_invalid_vllm_configs_say_what_to_fix(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    assert needle in str(err.value) and str(tmp_path / "agent.toml") in str(err.value)


def test_engine_key_given_or_random_per_start_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    random_keys = load_config(path, env={})
    assert random_keys.engine_key is None
    first, second = random_keys.new_engine_key(), random_keys.new_engine_key()
    assert first != second and len(first) >= 43  # secrets.token_urlsafe(32)
    chosen = "operator-chosen-engine-key-0123456789"
    cfg = load_config(path, env={"TOKENMILL_HOST_ENGINE_KEY": chosen})
    assert cfg.new_engine_key() == chosen and cfg.new_engine_key() == chosen
    assert chosen not in repr(cfg) and chosen not in str(cfg.model_dump())
    for bad in ("short-key", "has a space in it, which a header cannot carry", "ünïcode-is-not-for-headers-ok"):
        with pytest.raises(ConfigError, match=r"field engine_key: .*at least 16 characters") as err:
            load_config(path, env={"TOKENMILL_HOST_ENGINE_KEY": bad})
        assert bad not in str(err.value)


MAPPED = GOOD.replace('name = "gpu-box-1"', 'engine_host = "0.0.0.0"\nadvertise_host = "74.48.78.46"')


def test_advertise_ports_map_engine_ports_to_public_ones(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MAPPED + "[advertise_ports]\n8001 = 41234\n"), env={})
    assert cfg.advertise_ports == {8001: 41234}
    assert (cfg.public_engine_port(8001), cfg.public_engine_port(8002)) == (41234, 8002)  # unmapped: its own
    cfg = load_config(write(tmp_path, MAPPED), env={"TOKENMILL_HOST_ADVERTISE_PORTS__8002": "40000"})
    assert cfg.advertise_ports == {8002: 40000}
    assert load_config(write(tmp_path, GOOD), env={}).advertise_ports == {}


@pytest.mark.parametrize(("table", "needle"), [
    ("8001 = 0", "every port must be 1..65535: 8001 = 0"),
    ("70000 = 41234", "every port must be 1..65535: 70000 = 41234"),
    ('"http" = 41234', "field advertise_ports.http"),
], ids=["zero", "too-big", "not-a-port"])
def test_invalid_advertise_ports(tmp_path: Path, table: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"{MAPPED}[advertise_ports]\n{table}\n"), env={})
    assert "advertise_ports" in str(err.value) and needle in str(err.value)


def test_advertise_ports_need_the_public_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="advertise_ports maps ports of a public address: set advertise_host"):
        load_config(write(tmp_path, GOOD + "[advertise_ports]\n8001 = 41234\n"), env={})


async def test_the_router_is_told_the_mapped_port_and_the_agent_reads_the_engine_directly() -> None:
    from hostkit.config import AgentConfig
    from hostkit.engines import SimEngineRunner

    base = {"router_url": "http://r:1", "host_token": SECRET, "models": ["m"], "engine_host": "127.0.0.1",
            "advertise_host": "203.0.113.9", "engine_port": 0, "engine_tls": "off"}
    runner = SimEngineRunner(AgentConfig.model_validate(base))
    (plain,) = await runner.start()
    port = runner.sim.port
    await runner.stop()
    assert plain.public_url == f"http://203.0.113.9:{port}"  # no mapping: the engine's own port, as before
    runner = SimEngineRunner(AgentConfig.model_validate({**base, "engine_port": port,
                                                         "advertise_ports": {port: 41234}}))
    (mapped,) = await runner.start()
    await runner.stop()
    assert (mapped.local_url, mapped.public_url) == (f"http://127.0.0.1:{port}", "http://203.0.113.9:41234")
