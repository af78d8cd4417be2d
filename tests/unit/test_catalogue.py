"""The shipped catalogues (data/catalogue) load, hold what we promise, and bad input is refused
with a message that names the file, the entry and the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.catalogue import CatalogueError, load_catalogue, shipped_dir
from backend.catalogue.loader import GPUS_FILE, MODELS_FILE, load_file
from backend.catalogue.schema import ModelCatalogue

EXPECTED_MODELS = {
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b-instruct": "meta-llama/Llama-3.1-70B-Instruct",
    "llama-3.1-405b-instruct": "meta-llama/Llama-3.1-405B-Instruct",
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-14b-instruct": "Qwen/Qwen2.5-14B-Instruct",
    "qwen2.5-72b-instruct": "Qwen/Qwen2.5-72B-Instruct",
    "mistral-7b-instruct-v0.3": "mistralai/Mistral-7B-Instruct-v0.3",
    "mixtral-8x7b-instruct": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "gemma-2-9b-it": "google/gemma-2-9b-it",
    "phi-4": "microsoft/phi-4",
    "deepseek-r1-distill-qwen-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "glm-5": "zai-org/GLM-5",
}
EXPECTED_DEFAULTS = {"qwen2.5-0.5b-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"}

# Upper bounds (exclusive) of each size class, in total parameters; "huge" has none.
SIZE_CLASS_LIMITS = [
    ("tiny", 3e9),
    ("small", 10e9),
    ("medium", 40e9),
    ("large", 100e9),
    ("xlarge", 300e9),
]


def expected_size_class(params: int) -> str:
    for name, limit in SIZE_CLASS_LIMITS:
        if params < limit:
            return name
    return "huge"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


# --- the shipped catalogue -------------------------------------------------------------------


def test_shipped_catalogue_loads(catalogue):
    assert catalogue.models
    assert catalogue.gpus
    assert catalogue.offers
    assert (shipped_dir() / MODELS_FILE).is_file()
    assert (shipped_dir() / GPUS_FILE).is_file()


def test_exactly_the_expected_models(catalogue):
    assert {m.id: m.hf_id for m in catalogue.models} == EXPECTED_MODELS
    assert len(catalogue.models) == len(EXPECTED_MODELS)


def test_every_model_has_licence_openrouter_metadata_and_a_price_in_its_market_range(catalogue):
    for m in catalogue.models:
        assert m.licence.name and m.licence.url.startswith("https://"), m.id
        assert m.licence.commercial_use in {"allowed", "restricted", "forbidden"}, m.id
        assert m.openrouter.created > 1_600_000_000, m.id
        assert m.openrouter.description, m.id
        assert "text" in m.openrouter.input_modalities, m.id
        assert "text" in m.openrouter.output_modalities, m.id
        assert m.openrouter.supported_sampling_parameters, m.id
        assert m.market.prompt_min <= m.price.prompt <= m.market.prompt_max, m.id
        assert m.market.completion_min <= m.price.completion <= m.market.completion_max, m.id


def test_licences_match_what_each_model_ships_under(catalogue):
    by_id = catalogue.model_by_id
    for mid in ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.1-405b-instruct"):
        assert by_id[mid].licence.name == "Llama 3.1 Community License Agreement"
        assert by_id[mid].licence.commercial_use == "restricted"
        assert "700 million" in by_id[mid].licence.restrictions
        assert "Built with Llama" in by_id[mid].licence.attribution
    for mid in ("qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct"):
        assert by_id[mid].licence.name == "Apache License 2.0"
    assert by_id["qwen2.5-72b-instruct"].licence.name == "Qwen License Agreement"
    assert "100 million" in by_id["qwen2.5-72b-instruct"].licence.restrictions
    assert by_id["gemma-2-9b-it"].licence.name == "Gemma Terms of Use"
    assert "Prohibited Use Policy" in by_id["gemma-2-9b-it"].licence.restrictions
    for mid in ("phi-4", "deepseek-r1-distill-qwen-1.5b", "glm-5"):
        assert by_id[mid].licence.name == "MIT License"
    for mid in ("mistral-7b-instruct-v0.3", "mixtral-8x7b-instruct"):
        assert by_id[mid].licence.name == "Apache License 2.0"


def test_every_licence_is_complete_and_shows_what_it_asks(catalogue):
    by_id = catalogue.model_by_id
    for m in catalogue.models:
        lic = m.licence
        assert lic.version and lic.restrictions, m.id
        # Restricted use or an attribution to show: the client acknowledges it, and what must be
        # shown with the model is there to show.
        asks = lic.commercial_use != "allowed" or bool(lic.attribution)
        assert lic.requires_acknowledgement is asks, m.id
        assert bool(lic.notice) is asks, m.id
        if lic.notice:
            assert lic.notice in lic.attribution, m.id  # the notice is what the attribution quotes
    for mid in ("llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.1-405b-instruct"):
        lic = by_id[mid].licence
        assert (lic.notice, lic.version) == ("Built with Llama", "llama3.1")
        assert "700 million monthly active users" in lic.restrictions
    assert by_id["gemma-2-9b-it"].licence.notice.startswith("Gemma is provided under and subject to the Gemma Terms")
    # A fine-tune of another publisher's model names its base model's licence; no other model has one.
    base = by_id["deepseek-r1-distill-qwen-1.5b"].licence.base
    assert base is not None and (base.model, base.name) == ("Qwen/Qwen2.5-Math-1.5B", "Apache License 2.0")
    assert base.url.startswith("https://huggingface.co/Qwen/Qwen2.5-Math-1.5B")
    assert [m.id for m in catalogue.models if m.licence.base] == ["deepseek-r1-distill-qwen-1.5b"]


def test_exactly_three_defaults(catalogue):
    assert {m.id for m in catalogue.default_models()} == EXPECTED_DEFAULTS


def test_size_classes_and_quantizations_are_consistent(catalogue):
    for m in catalogue.models:
        assert m.size_class == expected_size_class(m.params), m.id
        assert m.default_quantization in m.vram_gb, m.id
        # bf16 > fp8 > int4 wherever they are given.
        sizes = [m.vram_gb[q] for q in ("bf16", "fp8", "int4") if q in m.vram_gb]
        assert sizes == sorted(sizes, reverse=True), m.id
    moe = {m.id for m in catalogue.models if m.active_params is not None}
    assert moe == {"mixtral-8x7b-instruct", "glm-5"}


def test_every_offer_names_a_known_gpu(catalogue):
    known = set(catalogue.gpu_by_id)
    for offer in catalogue.offers:
        assert offer.gpu in known, offer
        assert offer.source == "catalogue"
        assert offer.provider in {"runpod", "vast", "lambda"}
    assert {"rtx3090", "rtx4090", "a100-40gb", "a100-80gb", "h100-80gb"} <= known


def test_decode_tps_only_for_classes_that_fit(catalogue):
    for gpu in catalogue.gpus:
        assert gpu.decode_tps, gpu.id
        assert "huge" not in gpu.decode_tps, gpu.id
        assert all(tps > 0 for tps in gpu.decode_tps.values()), gpu.id


def test_every_money_field_is_integer_nano_usd(catalogue):
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for m in catalogue.models:
        for value in (
            m.market.prompt_min,
            m.market.prompt_max,
            m.market.completion_min,
            m.market.completion_max,
            m.price.prompt,
            m.price.completion,
        ):
            assert is_int(value), m.id
            assert value > 0, m.id
    for offer in catalogue.offers:
        assert is_int(offer.price_per_hour), offer
        assert offer.price_per_hour > 0, offer
    # "0.34" USD in the file is 340_000_000 nano-USD once loaded.
    runpod_4090 = [o for o in catalogue.offers if o.provider == "runpod" and o.gpu == "rtx4090"]
    assert [o.price_per_hour for o in runpod_4090] == [340_000_000]


# --- bad input is refused, naming file, entry and field --------------------------------------

LICENCE = """
[model.licence]
name = "MIT License"
url = "https://opensource.org/license/mit"
commercial_use = "allowed"
restrictions = ""
attribution = ""
"""

MODEL = """
[[model]]
id = "{id}"
name = "Test Model"
hf_id = "{hf_id}"
family = "test"
params = 1000000
context_length = 4096
max_output_tokens = 1024
size_class = "tiny"
vram_gb = {{ bf16 = 0.1 }}
default_quantization = "bf16"
{extra}
{licence}
[model.openrouter]
created = 1726704000
supported_sampling_parameters = ["temperature"]
supported_features = []
description = "A model for tests."

[model.market]
prompt_min = "0.01"
prompt_max = "0.02"
completion_min = "0.02"
completion_max = "0.04"

[model.price]
prompt = {prompt}
completion = "0.03"
"""

GPUS = """
[[gpu]]
id = "testgpu"
name = "Test GPU"
vram_gb = 24
compute_capability = "8.9"
memory_bandwidth_gbps = 1000
decode_tps = {{ tiny = 200 }}

[[offer]]
provider = "runpod"
gpu = "{gpu}"
price_per_hour = "0.34"
as_of = 2026-02-12
"""


def model_toml(
    id: str = "test-model",
    hf_id: str = "test/test-model",
    prompt: str = '"0.015"',
    licence: str = LICENCE,
    extra: str = "",
) -> str:
    return MODEL.format(id=id, hf_id=hf_id, prompt=prompt, licence=licence, extra=extra)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path, schema: type) -> str:
    with pytest.raises(CatalogueError) as info:
        load_file(path, schema)
    return str(info.value)


def test_helpers_build_a_valid_catalogue(tmp_path):
    write(tmp_path, MODELS_FILE, model_toml())
    write(tmp_path, GPUS_FILE, GPUS.format(gpu="testgpu"))
    cat = load_catalogue(tmp_path)
    assert [m.id for m in cat.models] == ["test-model"]
    assert cat.models[0].price.prompt == 15_000_000
    assert cat.offers[0].price_per_hour == 340_000_000


def test_float_price_is_refused(tmp_path):
    path = write(tmp_path, MODELS_FILE, model_toml(id="float-price", prompt="0.015"))
    msg = refused(path, ModelCatalogue)
    assert str(path) in msg
    assert "'float-price'" in msg
    assert "price.prompt" in msg
    assert "float" in msg


def test_a_price_far_above_any_market_is_refused(tmp_path):
    path = write(tmp_path, MODELS_FILE, model_toml(id="gold-price", prompt='"20000"'))
    msg = refused(path, ModelCatalogue)
    assert "price.prompt" in msg
    assert "largest accepted, $10,000.00" in msg


def test_missing_licence_name_is_refused(tmp_path):
    licence = LICENCE.replace('name = "MIT License"\n', "")
    path = write(tmp_path, MODELS_FILE, model_toml(id="no-licence-name", licence=licence))
    msg = refused(path, ModelCatalogue)
    assert str(path) in msg
    assert "'no-licence-name'" in msg
    assert "licence.name" in msg
    assert "required" in msg.lower()


def test_unknown_field_is_refused(tmp_path):
    path = write(tmp_path, MODELS_FILE, model_toml(id="odd-field", extra='colour = "blue"'))
    msg = refused(path, ModelCatalogue)
    assert str(path) in msg
    assert "'odd-field'" in msg
    assert "colour" in msg


def refused_catalogue(directory: Path) -> str:
    with pytest.raises(CatalogueError) as info:
        load_catalogue(directory)
    return str(info.value)


def test_offer_naming_an_unknown_gpu_is_refused(tmp_path):
    write(tmp_path, MODELS_FILE, model_toml())
    path = write(tmp_path, GPUS_FILE, GPUS.format(gpu="no-such-gpu"))
    msg = refused_catalogue(tmp_path)
    assert str(path) in msg
    assert "offer 'runpod' (#1)" in msg
    assert "field gpu" in msg
    assert "unknown gpu 'no-such-gpu'" in msg


def test_malformed_toml_is_refused(tmp_path):
    path = write(tmp_path, MODELS_FILE, model_toml() + '\n[[model]]\nid = "unterminated\n')
    msg = refused(path, ModelCatalogue)
    assert str(path) in msg
    assert "not valid TOML" in msg
    assert "line" in msg


def test_duplicate_model_id_is_refused(tmp_path):
    text = model_toml(id="dup-model", hf_id="test/one") + model_toml(id="dup-model", hf_id="test/two")
    path = write(tmp_path, MODELS_FILE, text)
    write(tmp_path, GPUS_FILE, GPUS.format(gpu="testgpu"))
    msg = refused_catalogue(tmp_path)
    assert str(path) in msg
    assert "model 'dup-model' (#2)" in msg
    assert "field id: duplicate of #1" in msg


def test_load_catalogue_reports_the_broken_file(tmp_path):
    shutil.copy(shipped_dir() / GPUS_FILE, tmp_path / GPUS_FILE)
    path = write(tmp_path, MODELS_FILE, model_toml(id="float-price", prompt="0.015"))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    assert str(path) in str(info.value)
    assert "price.prompt" in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    assert str(tmp_path / MODELS_FILE) in str(info.value)
    assert "not found" in str(info.value)


@pytest.mark.parametrize(("checkpoints", "needle"), [
    ('{ bf16 = "a/b" }', "checkpoints.bf16: bf16 is hf_id itself"),
    ('{ int4 = "a/b-AWQ" }', "checkpoints given for int4 without a vram_gb entry"),
    ('{ fp8 = "not a repo" }', "checkpoints.fp8"),
], ids=["bf16", "unsized", "pattern"])
def test_bad_checkpoints_are_refused(tmp_path, checkpoints, needle):
    path = write(tmp_path, MODELS_FILE, model_toml(id="ckpt", extra=f"checkpoints = {checkpoints}"))
    msg = refused(path, ModelCatalogue)
    assert "'ckpt'" in msg and needle in msg
