"""`tokenmill quickstart`: each answer's validation, the defaults earlier answers give, the config
file (read back by load_settings, 0600, never over a file without asking) and the whole wizard on a
scripted terminal (no API key ever shown). The real terminal: tests/integration/test_quickstart_wizard.py."""

from __future__ import annotations

import argparse
import stat
import tomllib
from pathlib import Path

import pytest

from backend.catalogue import load_catalogue
from backend.cli_quickstart import add_command, quickstart
from backend.cli_quickstart.answers import (
    Answers,
    SshMachine,
    check_fleet,
    default_fleet,
    parse_api_key,
    parse_models,
    parse_money,
    parse_policy,
    parse_sources,
    parse_ssh_target,
    parse_yes_no,
)
from backend.cli_quickstart.command import first_host_command
from backend.cli_quickstart.config_file import config_text, dump_toml, write_config
from backend.cli_quickstart.questions import Terminal
from backend.field_errors import FieldError
from backend.settings import load_settings
from tests.ports import free_port

CAT = load_catalogue(None)
SECRET = "rp_s3cr3t-KEY-never-shown"


def refused(field: str, call, *args, **kwargs) -> str:
    with pytest.raises(FieldError) as info:
        call(*args, **kwargs)
    assert info.value.field == field
    return str(info.value)


# ---------------------------------------------------------------------------------------- answers
def test_models_known_ids_in_order_without_repeats():
    assert parse_models("llama-3.1-8b-instruct, phi-4 llama-3.1-8b-instruct", CAT) == (
        "llama-3.1-8b-instruct", "phi-4")
    assert "'gpt-5'" in refused("models", parse_models, "phi-4,gpt-5", CAT)
    assert "at least one" in refused("models", parse_models, " , ", CAT)
    assert "855.6 GB" in refused("models", parse_models, "phi-4, glm-5", CAT)  # no catalogue offer holds it


def test_sources():
    assert parse_sources("none") == ()
    assert parse_sources("RunPod, ssh") == ("runpod", "ssh")
    assert "'aws'" in refused("sources", parse_sources, "runpod,aws")
    assert "alone" in refused("sources", parse_sources, "none,vast")


def test_api_key_is_one_printable_word():
    assert parse_api_key("  abc123  ", "vast") == "abc123"
    assert "needed" in refused("vast_api_key", parse_api_key, "", "vast")
    assert "one word" in refused("runpod_api_key", parse_api_key, "two words", "runpod")


def test_ssh_target():
    assert parse_ssh_target("ubuntu@gpu1.example.com:2222") == ("ubuntu", "gpu1.example.com", 2222)
    assert parse_ssh_target("203.0.113.7") == ("root", "203.0.113.7", 22)
    assert parse_ssh_target("me@[2001:db8::1]:2200") == ("me", "2001:db8::1", 2200)
    assert "user@host" in refused("ssh_host", parse_ssh_target, "bad host!")
    assert "not 1-65535" in refused("ssh_host", parse_ssh_target, "root@h:70000")


def test_policy_yes_no_and_money():
    assert parse_policy("Pinned") == "pinned" and parse_policy("list price") == "list"
    assert "dynamic, list, pinned" in refused("price_policy", parse_policy, "cheap")
    assert parse_yes_no("Y", "x") is True and parse_yes_no("no", "x") is False
    refused("autoscaler", parse_yes_no, "maybe", "autoscaler")
    assert parse_money("$12.5", "budget_per_hour_usd") == "12.50"
    assert parse_money("0.125", "b") == "0.125" and parse_money("0", "b") == "0.00"
    assert "positive" in refused("budget_per_hour_usd", parse_money, "0", "budget_per_hour_usd", positive=True)
    assert "float" not in refused("profit_target_daily_usd", parse_money, "-5", "profit_target_daily_usd")
    assert "decimal" in refused("pin_prompt_usd", parse_money, "abc", "pin_prompt_usd")


def test_default_fleet_follows_the_answers():
    defaults = tuple(m.id for m in CAT.default_models())
    # Nothing chosen yet: one RunPod RTX 4090 per model (the seeds' card), for the estimate.
    assert default_fleet(defaults, (), None, CAT) == f"rtx4090:runpod:{len(defaults)}"
    assert default_fleet(("llama-3.1-8b-instruct",), ("vast",), None, CAT) == "rtx4090:vast:1"
    # The operator's machine takes the first model it fits; a cloud the rest.
    assert default_fleet(("llama-3.1-8b-instruct", "qwen2.5-7b-instruct"), ("runpod",), "rtx3090", CAT) == (
        "rtx3090:owned:1:llama-3.1-8b-instruct,rtx4090:runpod:1:qwen2.5-7b-instruct")
    # A model too big for a 4090 gets the provider's cheapest card that fits.
    fleet = default_fleet(("llama-3.1-8b-instruct", "mixtral-8x7b-instruct"), ("lambda",), None, CAT)
    assert fleet == "a100-40gb:lambda:2"
    check_fleet(fleet, ("llama-3.1-8b-instruct", "mixtral-8x7b-instruct"), CAT)


def test_fleet_is_checked_against_the_catalogue_and_the_models():
    assert check_fleet(" rtx4090:runpod:2 ", ("llama-3.1-8b-instruct",), CAT) == ("rtx4090:runpod:2", [])
    assert "unknown provider" in refused("fleet", check_fleet, "rtx4090:moon:1", ("phi-4",), CAT)
    assert "not among the models" in refused("fleet", check_fleet, "rtx4090:runpod:1:phi-4",
                                             ("llama-3.1-8b-instruct",), CAT)
    _, warnings = check_fleet("rtx4090:runpod:1", ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct"), CAT)
    assert len(warnings) == 1 and "llama-3.1-70b-instruct" in warnings[0]


def test_first_host_is_the_operators_machine_or_a_cloud_with_a_key():
    settings = load_settings()
    ssh = SshMachine("ubuntu", "gpu1.example.com", 2222, "rtx3090")
    answers = Answers(models=("llama-3.1-8b-instruct",), clouds=("runpod",), keys={"runpod": SECRET}, ssh=ssh,
                      fleet="rtx3090:owned:1,rtx4090:runpod:1")
    assert first_host_command(answers, CAT, settings) == [
        "provision", "--provider", "ssh", "--model", "llama-3.1-8b-instruct", "--gpu", "rtx3090",
        "--ssh-host", "gpu1.example.com", "--ssh-port", "2222", "--ssh-user", "ubuntu"]
    rented = Answers(models=("llama-3.1-8b-instruct",), clouds=("runpod",), keys={"runpod": SECRET},
                     fleet="rtx4090:vast:1,rtx4090:runpod:1")  # no vast key: runpod's host comes first
    assert first_host_command(rented, CAT, settings) == [
        "provision", "--provider", "runpod", "--model", "llama-3.1-8b-instruct", "--gpu", "rtx4090"]
    assert first_host_command(Answers(models=("phi-4",)), CAT, settings) is None  # simulate only


# ---------------------------------------------------------------------------------------- the config file
def test_toml_writer_round_trips_what_settings_hold():
    values = {"a": "quote \" back\\slash tab\t nl\n del\x7f é 🙂", "n": 3, "f": 0.5, "b": False,
              "l": ["x", "y"], "weird key": "v", "t": {"inner": True, "deeper": {"z": 1}},
              "provision_variables": {"pip_options": "--index-url https://m/simple", "n": 2, "flag": True,
                                      "list": ["a", "b"]}}
    assert tomllib.loads(dump_toml(values)) == values


def answers() -> Answers:
    return Answers(models=("llama-3.1-8b-instruct", "phi-4"), clouds=("runpod", "vast"),
                   keys={"runpod": SECRET, "vast": "vk-2"}, ssh=SshMachine("ubuntu", "gpu1", 22, "rtx4090"),
                   fleet="rtx4090:owned:1:llama-3.1-8b-instruct,rtx3090:runpod:1:phi-4", policy="pinned",
                   pin=("0.12", "0.25"), autoscale=True, budget_usd="2.50", profit_target_usd="15.00")


def test_config_is_read_back_by_load_settings_and_is_private(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "config.toml"
    write_config(path, config_text(answers(), {}, 0), overwrite=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("TOKENMILL_CONFIG", str(path))
    s = load_settings()
    assert s.config_file == path
    assert s.runpod_api_key.get_secret_value() == SECRET and s.vast_api_key.get_secret_value() == "vk-2"
    assert s.lambda_api_key is None
    assert s.pricing.enabled is False  # pinned: the engine does not move prices
    assert s.autoscaler.enabled is True and s.autoscaler.budget_per_hour_usd == "2.50"
    assert s.profit_target_daily_nano == 15_000_000_000
    text = path.read_text()
    assert "llama-3.1-8b-instruct, phi-4" in text and "ubuntu@gpu1:22" in text and "$0.12 / $0.25" in text


def test_config_is_never_written_over_an_existing_file_unless_asked(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text('admin_port = 9100\n[pricing]\ninterval_s = 30.0\n')
    path.chmod(0o644)
    with pytest.raises(FileExistsError):
        write_config(path, config_text(answers(), {}, 0), overwrite=False)
    assert path.read_text().startswith("admin_port = 9100")
    # Replacing it keeps the settings the wizard does not ask about, and makes it private.
    write_config(path, config_text(answers(), tomllib.loads(path.read_text()), 0), overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("TOKENMILL_CONFIG", str(path))
    s = load_settings()
    assert s.admin_port == 9100 and s.pricing.interval_s == 30.0 and s.pricing.enabled is False
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------- the wizard
class Scripted(Terminal):
    """A terminal that answers from a list and keeps everything shown."""

    def __init__(self, answers: list[str], secrets: list[str] = ()) -> None:
        self.answers, self.secrets, self.shown = list(answers), list(secrets), []

    def say(self, text: str = "") -> None:
        self.shown.append(text)

    def ask(self, prompt: str) -> str:
        self.shown.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def secret(self, prompt: str) -> str:
        self.shown.append(prompt)  # not the answer: a real terminal does not echo it
        return self.secrets.pop(0)

    def progress(self, text: str) -> None:
        pass

    @property
    def screen(self) -> str:
        return "\n".join(self.shown)


def run_wizard(term: Scripted, *args: str) -> int:
    p = argparse.ArgumentParser()
    calls: list[list[str]] = []
    add_command(p.add_subparsers(), run=lambda s, argv: calls.append(argv) or 0)
    parsed = p.parse_args(["quickstart", "--days", "0.1", *args])
    code = quickstart(load_settings(), parsed, lambda s, argv: calls.append(argv) or 0, term=term)
    assert not calls, "nothing is provisioned in these runs"
    return code


def test_the_wizard_asks_again_until_each_answer_reads_and_writes_the_config(tmp_path, capsys):
    term = Scripted(
        ["phi-4, nope", "llama-3.1-8b-instruct",  # models
         "runpod, aws", "runpod",  # sources
         "rtx4090:runpod:x", "rtx4090:runpod:1",  # fleet
         "cheap", "list",  # price policy
         "maybe", "n", "abc", "3",  # autoscaler, budget
         "-2", "12",  # profit target
         "n"],  # provision: no
        secrets=["", "two words", SECRET])
    config = tmp_path / "my.toml"
    assert run_wizard(term, "--config", str(config)) == 0
    screen = term.screen
    for complaint in ("unknown model 'nope'", "unknown source 'aws'", "count must be a whole number",
                      "expected one of dynamic, list, pinned", "answer y or n", "'abc' is not a decimal number",
                      "an API key is needed", "one word of printable"):
        assert complaint in screen
    assert "Expected daily profit: " in screen and "Break-even utilization" in screen
    assert "profit target $12.00/day" in screen
    assert "tokenmill provision --provider runpod --model llama-3.1-8b-instruct --gpu rtx4090" in screen
    assert f"TOKENMILL_CONFIG={config}" in screen  # not the data dir's: the commands must name it
    values = tomllib.loads(config.read_text())
    assert values["runpod_api_key"] == SECRET
    assert values["pricing"] == {"enabled": False}
    assert values["autoscaler"] == {"enabled": False, "budget_per_hour_usd": "3.00"}
    assert values["profit_target_daily_usd"] == "12.00"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    out = capsys.readouterr()
    assert SECRET not in screen and SECRET not in out.out and SECRET not in out.err


def test_defaults_asks_nothing_and_never_overwrites(tmp_path, capsys):
    term = Scripted([])
    assert run_wizard(term, "--defaults") == 0
    path = Path(load_settings().data_dir) / "config.toml"
    defaults = ", ".join(m.id for m in CAT.default_models())
    assert f"models to sell: {defaults}" in path.read_text()
    assert "Expected daily profit" in term.screen
    assert "nothing to provision" in term.screen
    before = path.read_text()
    term = Scripted([])
    assert run_wizard(term, "--defaults") == 1
    assert "never overwrites" in capsys.readouterr().err
    assert path.read_text() == before


def test_an_existing_config_is_replaced_only_when_the_operator_agrees(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("admin_port = 9100\n")
    other = tmp_path / "other.toml"
    # Enter everywhere, then "keep it" and another file.
    term = Scripted(["", "", "", "", "", "", "", "n", str(other)])
    assert run_wizard(term, "--config", str(config)) == 0
    assert config.read_text() == "admin_port = 9100\n"
    assert "profit_target_daily_usd" in other.read_text()


def test_ctrl_d_stops_the_wizard_and_writes_nothing(tmp_path):
    term = Scripted(["phi-4"])  # then end of input, at the second question
    config = tmp_path / "config.toml"
    assert run_wizard(term, "--config", str(config)) == 1
    assert "quickstart stopped" in term.screen and not config.exists()


def test_without_a_backend_a_confirmed_first_host_is_the_commands_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENMILL_ADMIN_PORT", str(free_port()))  # nothing listens there
    term = Scripted(["llama-3.1-8b-instruct", "runpod", "", "", "", "", "", "y"], secrets=[SECRET])
    config = tmp_path / "elsewhere.toml"
    assert run_wizard(term, "--config", str(config)) == 0
    screen = term.screen
    assert "no backend answers at http://127.0.0.1:" in screen and "nothing provisioned" in screen
    assert f"TOKENMILL_CONFIG={config} tokenmill serve" in screen
    assert (f"TOKENMILL_CONFIG={config} tokenmill provision --provider runpod --model llama-3.1-8b-instruct "
            "--gpu rtx4090") in screen
