"""Shapes of licence acknowledgements: the client's (GET /v1/me/licences, POST /v1/me/licences/{model})
and the operator's (PUT /admin/models/{id}/licence, POST /admin/clients/{id}/licences/{model}).
Time is µs since the epoch, UTC (`*_us`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Version = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                      description="The licence version being accepted; must be the current one.")]


class AcceptLicence(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /v1/me/licences/{model} (optional): the version the client read."""

    version: Version | None = None


class BaseLicenceOut(msgspec.Struct):
    """The licence of the model a fine-tune or distillation was trained from (it binds too)."""

    model: str  # the base model's Hugging Face id
    licence: str
    url: str


class LicenceTerms(msgspec.Struct):
    """A model's licence as a client must accept it."""

    model: str
    licence: str
    url: str
    version: str
    commercial_use: Literal["allowed", "restricted", "forbidden"]
    restrictions: str
    attribution: str
    requires_acceptance: bool
    accept: str  # the request that accepts it: "POST /v1/me/licences/{model}"
    notice: str = ""  # the short mark to show with the model ("Built with Llama"); "" if none
    base: BaseLicenceOut | None = None  # fine-tunes: the base model's licence


class LicenceAcceptanceOut(msgspec.Struct):
    """One acknowledgement of one licence version."""

    model: str
    licence: str
    version: str
    accepted_us: int
    accepted_by: Literal["client", "operator"]
    current: bool  # of the version the catalogue has now (false: a newer version needs accepting)


class MyLicences(msgspec.Struct):
    """The client's acknowledgements (oldest first) and the licences it must still accept before
    requesting their models."""

    accepted: list[LicenceAcceptanceOut]
    needed: list[LicenceTerms]


class SetLicencePolicy(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PUT /admin/models/{id}/licence."""

    requires_acceptance: bool


class LicencePolicyOut(msgspec.Struct):
    """Whether a model's licence needs a client's acknowledgement, and who decided."""

    model: str
    licence: str
    version: str
    requires_acceptance: bool
    catalogue_default: bool  # what the catalogue alone says (restricted use or attribution: true)
    set_by: str | None  # "operator" once overridden, null while the catalogue decides
    set_us: int | None


class ModelLicenceOut(msgspec.Struct):
    """GET /admin/models/{id}/licence: a model's licence, whether clients must acknowledge it (and
    who decided), and how many clients have."""

    model: str
    licence: str
    url: str
    version: str
    commercial_use: Literal["allowed", "restricted", "forbidden"]
    restrictions: str
    attribution: str
    notice: str
    base: BaseLicenceOut | None
    requires_acceptance: bool
    catalogue_default: bool
    set_by: str | None  # "operator" once overridden, null while the catalogue decides
    set_us: int | None
    accepted_current: int  # clients that accepted this version (themselves or by the operator)
    accepted_older_only: int  # clients that accepted an older version only: they must accept again
