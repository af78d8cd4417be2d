"""Which licences need a client's acknowledgement by default, and every shipped licence's version."""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.catalogue.schema import Licence

BASE = dict(name="L", url="https://example.org/l", restrictions="")


@pytest.mark.parametrize(("commercial_use", "attribution", "given", "needed"), [
    ("allowed", "", None, False),  # Apache-2.0, MIT
    ("allowed", "Built with X", None, True),  # attribution required (Gemma's notice)
    ("restricted", "", None, True),  # Llama's 700M-user clause, Qwen 72B's
    ("forbidden", "", None, True),
    ("restricted", "Built with Llama", False, False),  # the catalogue entry's own word wins
    ("allowed", "", True, True),
])
def test_the_default_follows_commercial_use_and_attribution(commercial_use, attribution, given, needed):
    lic = Licence(**BASE, commercial_use=commercial_use, attribution=attribution, requires_acceptance=given)
    assert lic.requires_acknowledgement is needed


def test_a_version_is_a_short_token():
    assert Licence(**BASE, commercial_use="allowed", attribution="").version == "1"  # a catalogue without versions
    with pytest.raises(ValueError, match="version"):
        Licence(**BASE, commercial_use="allowed", attribution="", version="two words")


def test_every_shipped_licence_has_its_own_version_and_llama_needs_acknowledging():
    models = {m.id: m.licence for m in load_catalogue().models}
    assert all(lic.version != "1" for lic in models.values())
    assert models["llama-3.1-8b-instruct"].version == "llama3.1"
    needed = {mid for mid, lic in models.items() if lic.requires_acknowledgement}
    assert needed == {"llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.1-405b-instruct",
                      "gemma-2-9b-it", "qwen2.5-72b-instruct"}
    assert all(models[m].name in ("Apache License 2.0", "MIT License") for m in set(models) - needed)


def test_links_are_https_and_a_base_names_a_hugging_face_model():
    with pytest.raises(ValueError, match="url"):
        Licence(**(BASE | {"url": "http://example.org/l"}), commercial_use="allowed", attribution="")
    base = {"model": "Qwen/Qwen2.5-Math-1.5B", "name": "Apache License 2.0", "url": "https://example.org/a"}
    lic = Licence(**BASE, commercial_use="allowed", attribution="", base=base)
    assert lic.base is not None and lic.base.model == "Qwen/Qwen2.5-Math-1.5B" and lic.notice == ""
    for bad in ({"model": "not a repo id"}, {"url": "ftp://example.org/a"}):
        with pytest.raises(ValueError, match="base"):
            Licence(**BASE, commercial_use="allowed", attribution="", base=base | bad)
