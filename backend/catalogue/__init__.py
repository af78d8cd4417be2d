"""Shipped catalogues: models (with licences, OpenRouter metadata, market prices) and GPUs."""

from backend.catalogue.loader import Catalogue, CatalogueError, load_catalogue, shipped_dir
from backend.catalogue.schema import GpuType, ModelEntry, Offer

__all__ = ["Catalogue", "CatalogueError", "GpuType", "ModelEntry", "Offer", "load_catalogue", "shipped_dir"]
