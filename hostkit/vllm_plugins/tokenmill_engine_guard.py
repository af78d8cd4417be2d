"""tokenmill's engine-key guard inside vLLM's OpenAI server: every route but /health
needs `Authorization: Bearer <engine key>`.

Why: vLLM's own key check (`--api-key`, or the VLLM_API_KEY variable) covers only the /v1 routes
(newer versions: /v1, /v2, /inference): "/invocations" runs the same inference with no key, and
/pause, /tokenize, /score ... are open too. vLLM's security guide says so: docs/usage/security.md,
"API Key Authentication Limitations" (https://docs.vllm.ai/en/latest/usage/security.html), and the
--api-key help in vllm/entrypoints/openai/cli_args.py. Its remedy is a filter in front; vLLM's
`--middleware <import path>` puts one inside instead, with no extra hop: a class is added with
`app.add_middleware(cls)`, so it is built as `cls(app)` and wraps every route, /invocations included.

How the agent uses it (hostkit/vllm_process.py): it runs `vllm serve ... --middleware
tokenmill_engine_guard.EngineKeyGuard` with this file's directory on PYTHONPATH and the key in
VLLM_API_KEY, which vLLM's own /v1 check reads too. The key never goes on the command line, where
`ps` and vLLM's startup log of its arguments would show it.

Standard library only, on purpose: vLLM's Python imports this file and may not have tokenmill
installed, and the directory holds nothing else, so it shadows no package.
"""

from __future__ import annotations

import hmac
import json
import os

KEY_ENV = "VLLM_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # a liveness probe: nothing to read or run
_BODY = json.dumps({"error": {
    "message": "Missing or wrong engine key: send 'Authorization: Bearer <engine key>'.",
    "type": "invalid_request_error", "param": None, "code": "invalid_api_key",
}}, separators=(",", ":")).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
            (b"www-authenticate", b"Bearer")]


class EngineKeyGuard:
    """Pure ASGI middleware. Refuses to start without a key: an engine must never come up open."""

    def __init__(self, app, key: str | None = None) -> None:
        self.app = app
        key = os.environ.get(KEY_ENV, "") if key is None else key
        if not key:
            raise RuntimeError(f"tokenmill_engine_guard: {KEY_ENV} is empty; refusing to serve without an engine key")
        self._key = key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self._open(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
        else:
            await send({"type": "http.response.start", "status": 401, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})

    @staticmethod
    def _open(scope) -> bool:
        path = scope.get("path") or ""
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        return path in OPEN_PATHS

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._key)
        return False
