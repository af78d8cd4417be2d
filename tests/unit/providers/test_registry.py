"""provider(name, settings): keys from the settings, refused early and clearly when missing."""

from __future__ import annotations

import pytest

from backend.fleet.providers import MissingCredentials, provider, ssh_public_key
from backend.fleet.providers.lambda_cloud import LambdaProvider
from backend.fleet.providers.local import LocalProvider
from backend.fleet.providers.runpod import RunPodProvider
from backend.fleet.providers.ssh import SshProvider
from backend.fleet.providers.vast import VastProvider
from backend.settings import load_settings

SECRET = "rpa_0123456789ABCDEFsecretvalue"


async def test_keys_come_from_the_environment_and_stay_secret(monkeypatch):
    monkeypatch.setenv("TOKENMILL_RUNPOD_API_KEY", SECRET)
    monkeypatch.setenv("TOKENMILL_VAST_API_KEY", SECRET)
    monkeypatch.setenv("TOKENMILL_LAMBDA_API_KEY", SECRET)
    settings = load_settings()
    assert settings.runpod_api_key.get_secret_value() == SECRET and SECRET not in repr(settings)
    for name, cls in (("runpod", RunPodProvider), ("vast", VastProvider), ("lambda", LambdaProvider)):
        cloud = provider(name, settings)
        assert isinstance(cloud, cls) and SECRET not in repr(cloud) + repr(vars(cloud))
        await cloud.aclose()
    assert isinstance(provider("local", settings), LocalProvider)
    assert isinstance(provider("ssh", settings), SshProvider)


@pytest.mark.parametrize(("name", "setting"), [("runpod", "runpod_api_key"), ("vast", "vast_api_key"),
                                               ("lambda", "lambda_api_key")])
def test_a_missing_key_names_the_setting(name, setting, monkeypatch):
    monkeypatch.setenv(f"TOKENMILL_{setting.upper()}", "  ")
    with pytest.raises(MissingCredentials, match=rf"has no API key: set settings.{setting} \(or "
                                                 rf"TOKENMILL_{setting.upper()}\)"):
        provider(name, load_settings())


def test_an_unknown_provider():
    with pytest.raises(ValueError, match="unknown provider 'aws': expected one of runpod, vast, lambda, local, ssh"):
        provider("aws", load_settings())


def test_the_public_key_file(tmp_path):
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtokenmill tm@operator\n")
    assert ssh_public_key(load_settings(ssh_public_key_path=pub)).startswith("ssh-ed25519 AAAA")
    with pytest.raises(FileNotFoundError, match="no SSH public key at"):
        ssh_public_key(load_settings(ssh_public_key_path=tmp_path / "missing.pub"))
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n...\n")
    with pytest.raises(ValueError, match="holds a private key"):
        ssh_public_key(load_settings(ssh_public_key_path=private))
