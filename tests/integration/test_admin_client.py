"""The one typed admin client (backend/wire/admin_client.py) as the CLI uses it: run without an
event loop of its own, against a real router on loopback, and the CLI commands built on it."""

from __future__ import annotations

import asyncio

import pytest

from backend.cli import build_parser
from backend.wire.admin import ClientOut
from backend.wire.admin_client import AdminError, BackendUnavailable, BlockingAdminClient
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"


async def test_the_blocking_client_decodes_typed_answers_and_envelope_codes(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        def session() -> tuple[ClientOut, int, AdminError]:
            # A thread, as the CLI is: no loop runs there, the router's loop serves the calls.
            admin = BlockingAdminClient(router.url, router.services.admin_token, timeout_s=10)
            try:
                client = admin.run(admin.api.create_client("acme"))
                credit = admin.run(admin.api.grant_credit(client.id, "2.50", "k-1"))
                with pytest.raises(AdminError) as err:
                    admin.run(admin.api.host_action("no-such-host", "drain"))
                return client, credit.balance_nano, err.value
            finally:
                admin.close()

        client, balance, err = await asyncio.to_thread(session)
        assert isinstance(client, ClientOut) and client.name == "acme"
        assert balance == 2_500_000_000
        assert (err.status, err.code) == (404, "host_not_found") and "no-such-host" in err.message


def test_the_blocking_client_says_which_backend_did_not_answer():
    admin = BlockingAdminClient("http://127.0.0.1:9", "tma-x", timeout_s=1)
    try:
        with pytest.raises(BackendUnavailable) as err:
            admin.run(admin.api.hosts())
        assert err.value.url == "http://127.0.0.1:9" and err.value.reason
    finally:
        admin.close()


def _tokenmill(settings, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return args.func(settings, args)


async def test_provisioning_commands_speak_through_the_shared_client(tmp_path, capsys):
    settings = router_settings(tmp_path)
    async with running_router(settings) as router:
        # The CLI finds the router's admin token in the data directory, as on the operator's machine.
        rc = await asyncio.to_thread(_tokenmill, settings, "host-keys", "--url", router.url)
        assert rc == 0 and "no host key waits for confirmation" in capsys.readouterr().out

        rc = await asyncio.to_thread(_tokenmill, settings, "offers", "--model", MODEL, "--url", router.url)
        out = capsys.readouterr().out
        assert rc == 0 and f"{MODEL} at " in out and "unavailable: RunPod has no API key" in out, out

        rc = await asyncio.to_thread(_tokenmill, settings, "offers", "--model", "no-such-model", "--url", router.url)
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("tokenmill: ") and "(404, model_not_found)" in err, err

        rc = await asyncio.to_thread(_tokenmill, settings, "teardown", "no-such-host", "--yes", "--url", router.url)
        assert rc == 1 and "no host with id or name 'no-such-host'" in capsys.readouterr().err

    rc = await asyncio.to_thread(_tokenmill, settings, "host-keys", "--url", "http://127.0.0.1:9")
    assert rc == 1 and "no tokenmill backend answers at http://127.0.0.1:9 (" in capsys.readouterr().err
