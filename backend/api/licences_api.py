"""Licence acknowledgements. The client, with its own key: GET /v1/me/licences (what it accepted and
what it must still accept), POST /v1/me/licences/{model} (accept the model's current licence). The
operator: GET /admin/models/{id}/licence (the terms and how many clients accepted them), PUT
/admin/models/{id}/licence (whether the licence needs acknowledging), POST
/admin/clients/{id}/licences/{model} (accept for a client), GET /admin/clients/{id}/licences.
Thin handlers over backend/clients/licences.py; the router's check is there too."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN_BODY, ADMIN_ID, errors
from backend.api.me_api import client_guard, client_key
from backend.api.openai_schema import API_KEY
from backend.catalogue.schema import BaseLicence
from backend.clients.licences import CLIENT, OPERATOR, Acceptance, Licences, Terms, UnknownModel
from backend.clients.service import ClientError
from backend.field_errors import FieldError
from backend.wire.errors import ApiError
from backend.wire.licences import (
    AcceptLicence,
    BaseLicenceOut,
    LicenceAcceptanceOut,
    LicencePolicyOut,
    LicenceTerms,
    ModelLicenceOut,
    MyLicences,
    SetLicencePolicy,
)

_FIELD_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def _licences(request: Request) -> Licences:
    return request.app.state.services.licences


def _strict(kind: type, *, optional: bool) -> Callable[[Request], Awaitable[None]]:
    """A `before_request` hook (after the guard, before Litestar decodes the body): the body held
    strictly to `kind` (Litestar's own decoding takes "false" or 0 for a bool), each refusal naming
    its field in `param`, an unknown or missing one too; an empty body passes where it is optional."""

    async def check(request: Request) -> None:
        raw = await request.body()
        if optional and not raw.strip():
            return
        try:
            msgspec.json.decode(raw, type=kind, strict=True)
        except msgspec.DecodeError as exc:
            detail, _, where = str(exc).partition(" - at `$.")
            named = _FIELD_NAMED.search(detail)
            param = where.rstrip("`") or (named.group(1) if named else None)
            raise ApiError(400, f"{param or 'body'}: {detail}", code="invalid_value", param=param) from None

    return check


def _model_not_found(exc: UnknownModel) -> ApiError:
    return ApiError(404, f"{exc.args[0]}.", code="model_not_found", param="model")


def acceptance_out(lic: Licences, a: Acceptance) -> LicenceAcceptanceOut:
    return LicenceAcceptanceOut(a.model, a.licence, a.version, a.accepted_us, a.accepted_by, lic.current(a))


def base_out(base: BaseLicence | None) -> BaseLicenceOut | None:
    return None if base is None else BaseLicenceOut(base.model, base.name, base.url)


def terms_out(t: Terms) -> LicenceTerms:
    return LicenceTerms(t.model, t.licence, t.url, t.version, t.commercial_use, t.restrictions,
                        t.attribution, t.requires_acceptance, f"POST {t.accept_path}", t.notice, base_out(t.base))


def model_licence_out(lic: Licences, model_id: str) -> ModelLicenceOut:
    t = lic.terms(model_id)
    current, older = lic.acceptance_counts(model_id)
    return ModelLicenceOut(t.model, t.licence, t.url, t.version, t.commercial_use, t.restrictions, t.attribution,
                           t.notice, base_out(t.base), t.requires_acceptance, t.catalogue_default, t.set_by,
                           t.set_us, current, older)


def my_licences(lic: Licences, client_id: str) -> MyLicences:
    return MyLicences([acceptance_out(lic, a) for a in lic.accepted(client_id)],
                      [terms_out(t) for t in lic.pending(client_id)])


async def _accept(lic: Licences, client_id: str, model: str, version: str | None, by: str,
                  key_id: str | None = None) -> LicenceAcceptanceOut:
    try:
        return acceptance_out(lic, await lic.accept(client_id, model, version=version, by=by, key_id=key_id))
    except UnknownModel as exc:
        raise _model_not_found(exc) from None
    except FieldError as exc:
        raise ApiError(400, str(exc), code="licence_version_mismatch", param=exc.field) from None


class MeLicencesController(Controller):
    path = "/v1/me/licences"
    guards = [client_guard]
    tags = ["client"]
    security = API_KEY

    @get("", responses=errors(401))
    async def mine(self, request: Request) -> MyLicences:
        """The licences the calling client accepted (oldest first; `current` false for an older
        version) and those it must still accept before requesting their models."""
        return my_licences(_licences(request), client_key(request).client_id)

    @post("/{model:str}", status_code=200, before_request=_strict(AcceptLicence, optional=True),
          responses=errors(400, 401, 404, 413))
    async def accept(self, request: Request, model: FromPath[str],
                     data: JSONBody[AcceptLicence | None] = None) -> LicenceAcceptanceOut:
        """Accept the current version of a model's licence (read it first: GET /pricing or the 403
        links it). Optional body {"version": "..."}: refused (400, param `version`) unless it is the
        current version. Accepting again answers the first record."""
        key = client_key(request)
        version = data.version if data is not None else None  # no body: the current version
        return await _accept(_licences(request), key.client_id, model, version, CLIENT, key.id)


class LicencesAdminController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["licences"]
    security = [{"admin_token": []}]

    @get("/models/{model_id:str}/licence", responses=errors(*ADMIN_ID))
    async def model_licence(self, request: Request, model_id: FromPath[str]) -> ModelLicenceOut:
        """A model's licence terms, whether clients must acknowledge them (and who decided), and how
        many clients accepted the current version (or only an older one)."""
        try:
            return model_licence_out(_licences(request), model_id)
        except UnknownModel as exc:
            raise _model_not_found(exc) from None

    @put("/models/{model_id:str}/licence", status_code=200, before_request=_strict(SetLicencePolicy, optional=False),
         responses=errors(*ADMIN_BODY, 404))
    async def set_policy(self, request: Request, model_id: FromPath[str],
                         data: JSONBody[SetLicencePolicy]) -> LicencePolicyOut:
        """Whether clients must acknowledge the model's licence before using it
        ({"requires_acceptance": false} exempts it; persisted, recorded as set by the operator)."""
        try:
            t = await _licences(request).set_requires_acceptance(model_id, data.requires_acceptance, by=OPERATOR)
        except UnknownModel as exc:
            raise _model_not_found(exc) from None
        return LicencePolicyOut(t.model, t.licence, t.version, t.requires_acceptance, t.catalogue_default,
                                t.set_by, t.set_us)

    @post("/clients/{client_id:str}/licences/{model_id:str}", status_code=200, responses=errors(*ADMIN_ID))
    async def accept_for(self, request: Request, client_id: FromPath[str],
                         model_id: FromPath[str]) -> LicenceAcceptanceOut:
        """Accept the current version of the model's licence on a client's behalf (recorded as by the
        operator). Accepting again answers the first record."""
        try:
            return await _accept(_licences(request), client_id, model_id, None, OPERATOR)
        except ClientError as exc:
            raise ApiError(404, str(exc), code="client_not_found") from None

    @get("/clients/{client_id:str}/licences", responses=errors(*ADMIN_ID))
    async def client_licences(self, request: Request, client_id: FromPath[str]) -> MyLicences:
        """A client's licence acknowledgements and those it still needs."""
        lic = _licences(request)
        try:
            request.app.state.services.clients.client(client_id)
        except ClientError as exc:
            raise ApiError(404, str(exc), code="client_not_found") from None
        return my_licences(lic, client_id)
