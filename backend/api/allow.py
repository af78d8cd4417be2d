"""OPTIONS answers with every method a path takes.

Litestar 2's own OPTIONS handler lists only the methods of the handlers registered on a path before
it was created (litestar-org/litestar#4169, fixed in v3 only): OPTIONS /admin/clients said
"OPTIONS, POST" while GET works too. This hook answers from the route's full method set.
"""

from __future__ import annotations

from litestar import Request, Response
from litestar.routes import HTTPRoute


async def answer_options(request: Request) -> Response | None:
    if request.method != "OPTIONS":
        return None
    template = request.scope.get("path_template")
    for route in request.app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            return Response(content=None, status_code=204, headers={"Allow": ", ".join(sorted(route.methods))})
    return None
