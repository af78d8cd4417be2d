"""The OpenAPI schema the backend states: served at /schema (JSON; /schema/openapi.yaml for YAML)
to the admin token only, and written to docs/openapi.json by `tokenmill openapi`.

No documentation site is served: Litestar's (Swagger, Redoc, Scalar...) load their scripts from a
CDN, which an operator's browser should not fetch from an admin port. Point any viewer at the JSON.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from backend import __version__
from backend.api.admin_api import admin_guard
from backend.api.openai_schema import completion_operations
from backend.wire import admin as admin_wire
from backend.wire import billing as billing_wire
from backend.wire import me as me_wire
from backend.wire import provision as provision_wire

PATH = "/schema"


def _bearer(what: str) -> SecurityScheme:
    return SecurityScheme(type="http", scheme="bearer", description=what)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="tokenmill", version=__version__, path=PATH,
        description="An OpenAI-compatible inference router (/v1), its admin API (/admin) and the host "
                    "agents' API (/hosts). Every error is OpenAI's envelope: "
                    '{"error": {"message", "type", "code", "param"}}. Money is integer nano-USD in '
                    "`*_nano` fields; money sent is a decimal string.",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router(PATH, route_handlers=[], guards=[admin_guard], include_in_schema=False),
        components=Components(security_schemes={
            "api_key": _bearer("a client's API key (tm-...)"),
            "admin_token": _bearer("the operator's admin token (tma-...; data_dir/admin_token)"),
            "host_token": _bearer("a host agent's token, given when the host was enrolled"),
        }),
    )


def _closed_structs() -> set[str]:
    """Request bodies that refuse unknown fields: their schemas must say so."""
    return {obj.__name__ for mod in (admin_wire, provision_wire, me_wire, billing_wire) for obj in vars(mod).values()
            if isinstance(obj, type) and issubclass(obj, msgspec.Struct)
            and obj.__struct_config__.forbid_unknown_fields}


def complete_schema(app: Litestar) -> None:
    """Add to the app's schema what Litestar does not generate: the raw ASGI completion routes, and
    `additionalProperties: false` where msgspec refuses unknown fields."""
    schema = app.openapi_schema
    paths, components = completion_operations()
    for name, component in components.items():
        if schema.components.schemas.setdefault(name, component) != component:
            raise RuntimeError(f"two different OpenAPI schemas are named {name}")
    schema.paths.update(paths)
    for name in _closed_structs():
        if name in schema.components.schemas:
            schema.components.schemas[name].additional_properties = False
