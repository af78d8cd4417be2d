"""Load and validate the catalogues; an invalid file fails naming the file, entry and field."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from backend.catalogue.schema import GpuCatalogue, GpuType, ModelCatalogue, ModelEntry, Offer

MODELS_FILE = "models.toml"
GPUS_FILE = "gpus.toml"

T = TypeVar("T", bound=BaseModel)


class CatalogueError(ValueError):
    """A catalogue file is unreadable or invalid. The message names file, entry and field."""


def shipped_dir() -> Path:
    """Where the shipped catalogues are: data/catalogue in a checkout, or inside the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "data" / "catalogue"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "shipped"


def _entry_label(raw: dict[str, Any], loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """Turn ('model', 3, 'licence', 'name') into ("model 'phi-4' (#4)", ('licence', 'name'))."""
    if len(loc) >= 2 and isinstance(loc[1], int):
        table, index = loc[0], loc[1]
        entries = raw.get(table)
        ident = None
        if isinstance(entries, list) and index < len(entries) and isinstance(entries[index], dict):
            ident = entries[index].get("id") or entries[index].get("provider")
        label = f"{table} {ident!r} (#{index + 1})" if ident else f"{table} #{index + 1}"
        return label, loc[2:]
    return "file", loc


def load_file(path: Path, model: type[T]) -> T:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"{path}: catalogue file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            entry, field = _entry_label(raw, tuple(err["loc"]))
            where = ".".join(str(p) for p in field) or "(entry)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {entry}: field {where}: {msg}")
        raise CatalogueError("\n".join(problems)) from None


@dataclass(frozen=True)
class Catalogue:
    models: tuple[ModelEntry, ...]
    gpus: tuple[GpuType, ...]
    offers: tuple[Offer, ...]

    @cached_property
    def model_by_id(self) -> dict[str, ModelEntry]:
        return {m.id: m for m in self.models}

    @cached_property
    def gpu_by_id(self) -> dict[str, GpuType]:
        return {g.id: g for g in self.gpus}

    def model(self, model_id: str) -> ModelEntry:
        try:
            return self.model_by_id[model_id]
        except KeyError:
            raise KeyError(f"unknown model {model_id!r}") from None

    def default_models(self) -> list[ModelEntry]:
        return [m for m in self.models if m.default]


def _unique(path: Path, table: str, values: list[str], field: str) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for i, v in enumerate(values):
        if v in first:
            problems.append(f"{path}: {table} {v!r} (#{i + 1}): field {field}: duplicate of #{first[v] + 1}")
        first.setdefault(v, i)
    return problems


def _cross_check(models_path: Path, models: ModelCatalogue, gpus_path: Path, gpus: GpuCatalogue) -> None:
    problems = _unique(models_path, "model", [m.id for m in models.model], "id")
    problems += _unique(models_path, "model", [m.hf_id for m in models.model], "hf_id")
    problems += _unique(gpus_path, "gpu", [g.id for g in gpus.gpu], "id")
    known = {g.id for g in gpus.gpu}
    for i, o in enumerate(gpus.offer):
        if o.gpu not in known:
            problems.append(f"{gpus_path}: offer {o.provider!r} (#{i + 1}): field gpu: unknown gpu {o.gpu!r}")
    if problems:
        raise CatalogueError("\n".join(problems))


def load_catalogue(directory: Path | None = None) -> Catalogue:
    directory = directory or shipped_dir()
    models = load_file(directory / MODELS_FILE, ModelCatalogue)
    gpus = load_file(directory / GPUS_FILE, GpuCatalogue)
    _cross_check(directory / MODELS_FILE, models, directory / GPUS_FILE, gpus)
    return Catalogue(models=tuple(models.model), gpus=tuple(gpus.gpu), offers=tuple(gpus.offer))
