"""The OpenAPI schema tells the truth about the admin API: schemathesis (its CLI, as an operator would
run it) fetches the schema from a real router on loopback with the admin token and fuzzes every
/admin operation. Any 5xx, an undocumented status, a body, content type or header that does not
match the schema, a schema-invalid request that is accepted, a route that ignores its token, or a
wrong `Allow` fails the test.

Left out: `positive_data_acceptance`, which expects every schema-valid request to succeed: the
schema cannot state the rules that span fields or the catalogue (a GPU id from the catalogue,
ssh_host only with provider ssh), and those are refused with 400 naming the field.

Bounded: a fixed seed and a fixed number of examples per operation, so that the run is the same
each time and takes well under two minutes on two cores. Another seed: TOKENMILL_SCHEMATHESIS_SEED.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import uvloop

from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
          "allow_header_conformance,ignored_auth,use_after_free,ensure_resource_availability")
MAX_EXAMPLES = 50  # per operation and phase: ~30 s on two idle cores
RUN_LIMIT_S = 300


def test_admin_api_matches_its_openapi_schema(tmp_path):
    # On uvloop, as `tokenmill serve` runs: on asyncio's own loop each answer to schemathesis's client
    # (requests) waited ~40 ms for a delayed ACK, which made the run several times as long.
    uvloop.run(_fuzz_admin_api(tmp_path))


async def _fuzz_admin_api(tmp_path) -> None:
    # The live events stream ends after events_stream_s: short here, so that each of the fuzzer's
    # requests to it gets a whole answer (the kept events) instead of waiting the default 300 s.
    settings = router_settings(tmp_path, events_stream_s=0.2)
    assert settings.ssh_key_path is None and not (tmp_path / ".ssh").exists()  # no provisioning job can start
    async with running_router(settings) as router:
        await router.add_host("rig", [MODEL])  # real hosts, clients and keys for the fuzzer to find
        await router.client_with_key()
        seed = os.environ.get("TOKENMILL_SCHEMATHESIS_SEED", "20261204")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run", f"{router.url}/schema/openapi.json",
            "--header", f"Authorization: Bearer {router.services.admin_token}",
            "--include-path-regex", "^/admin/", "--checks", CHECKS,
            "--max-examples", str(MAX_EXAMPLES), "--seed", seed, "--workers", "1", "--request-timeout", "30",
            "--generation-database", "none", "--no-color", "--continue-on-failure",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HOME": str(tmp_path), "SCHEMATHESIS_TELEMETRY": "false"})
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"schemathesis ran over {RUN_LIMIT_S} s")
        report = out.decode(errors="replace")
        print(report)  # shown with -s, or by pytest when the test fails
        assert proc.returncode == 0, report[-20_000:]
        assert "Tested: 0" not in report and "No operations" not in report, report[-5_000:]


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


@pytest.mark.parametrize("path", ["/schema", "/schema/openapi.json", "/schema/openapi.yaml", "/schema/swagger",
                                  "/schema/redoc", "/schema/elements"])
async def test_schema_is_served_only_to_the_admin_token(router, path):
    for headers in ({}, {"Authorization": "Bearer tma-wrong"}):
        r = await router.http.get(path, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_admin_token"
    r = await router.http.get(path, headers=router.admin)
    if path in ("/schema", "/schema/openapi.json", "/schema/openapi.yaml"):
        assert r.status_code == 200 and "/admin/clients" in r.text
    else:  # no documentation site: those load their scripts from a CDN
        assert r.status_code == 404
    assert "cdn" not in r.text.lower() and "<script" not in r.text.lower()


async def test_options_allows_every_method_of_the_path(router):
    for path, allowed in (("/admin/clients", "GET, OPTIONS, POST"), ("/admin/hosts", "GET, OPTIONS, POST"),
                          ("/admin/clients/acme/keys", "GET, OPTIONS, POST"), ("/admin/status", "GET, OPTIONS")):
        r = await router.http.options(path, headers=router.admin)
        assert r.status_code == 204 and r.headers["allow"] == allowed, (path, r.headers)
        r = await router.http.delete(path, headers=router.admin)
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == set(allowed.split(", "))


def test_completion_routes_are_in_the_schema_in_openai_shapes(tmp_path):
    from backend.app import create_app
    from backend.settings import Settings

    schema = create_app(Settings(data_dir=tmp_path)).openapi_schema.to_schema()
    comps = schema["components"]["schemas"]
    for path, request, answer, chunk in (
            ("/v1/chat/completions", "ChatCompletionRequest", "ChatCompletion", "ChatCompletionChunk"),
            ("/v1/completions", "CompletionRequest", "Completion", "Completion")):
        op = schema["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{request}")
        ok = op["responses"]["200"]["content"]
        assert ok["application/json"]["schema"]["$ref"].endswith(f"/{answer}")
        assert chunk in ok["text/event-stream"]["schema"]["description"] and chunk in comps
        for status in ("400", "401", "402", "404", "413", "429", "503"):
            assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Envelope")
    chat = comps["ChatCompletionRequest"]["properties"]
    assert (chat["temperature"]["minimum"], chat["temperature"]["maximum"]) == (0, 2)
    assert chat["stop"]["oneOf"][1]["maxItems"] == 4 and chat["messages"]["minItems"] == 1
    assert comps["ChatCompletion"]["properties"]["object"] == {"type": "string", "const": "chat.completion"}
    assert set(comps["Envelope"]["required"]) == {"error"}
    assert set(comps["ErrorBody"]["properties"]) == {"message", "type", "code", "param"}


def test_no_operation_states_litestars_own_error_shape(tmp_path):
    """Errors are OpenAI's envelope everywhere; Litestar's {status_code, detail, extra} is never sent."""
    from backend.app import create_app
    from backend.settings import Settings

    schema = create_app(Settings(data_dir=tmp_path)).openapi_schema.to_schema()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = resp["content"]["application/json"]["schema"].get("$ref", "")
                    assert ref.endswith("/Envelope"), (method, path, status, resp)
            if path.startswith("/admin/"):
                assert "401" in op["responses"] and op["security"] == [{"admin_token": []}], (method, path)


async def test_a_refused_parameter_names_itself(router):
    h = router.admin
    for url, param in (("/admin/metrics?rate_window_s=59", "rate_window_s"), ("/admin/events?limit=0", "limit"),
                       ("/admin/usage?group_by=colour", "group_by"), ("/admin/provision/runs?limit=501", "limit")):
        r = await router.http.get(url, headers=h)
        body = r.json()["error"]
        assert r.status_code == 400 and body["param"] == param and body["message"].startswith(f"{param}: "), body
    r = await router.http.post("/admin/clients", json={"name": "  "}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
