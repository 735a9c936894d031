"""Offline STAC validation for the tests: pystac's JSON Schema validator with the core
schemas pystac ships (item, catalog, collection, GeoJSON), no network.

The extensions' JSON Schemas (projection, raster, file, classification, mlm) live on
stac-extensions.github.io, which these machines cannot reach, and no installable package
ships them; their fields are checked through pystac's typed extension accessors and
stac-model (MLM) instead, and by odc-stac loading the layers from them.
"""

from __future__ import annotations

from typing import Any

import pystac
from pystac.validation import JsonSchemaSTACValidator
from pystac.validation.local_validator import get_local_schema_cache


class OfflineValidator(JsonSchemaSTACValidator):
    """Validates the STAC core of every object; extension schemas are not fetched."""

    skipped: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.skipped = set()

    def validate_extension(self, stac_dict: dict[str, Any], stac_object_type: Any,
                           stac_version: str, extension_id: str,
                           href: str | None = None) -> str | None:
        if extension_id not in get_local_schema_cache():
            self.skipped.add(extension_id)
            return None
        return super().validate_extension(stac_dict, stac_object_type, stac_version,
                                          extension_id, href)


def validate(obj: pystac.STACObject | dict[str, Any]) -> list[str]:
    """The core schema URIs ``obj`` validated against (raises STACValidationError)."""
    validator = OfflineValidator()
    if isinstance(obj, dict):
        return [u for u in pystac.validation.validate_dict(obj, validator=validator) if u]
    return [u for u in obj.validate(validator=validator) if u]
