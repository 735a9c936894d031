"""The API's OpenAPI document as OpenAPI 3.0.3, the version OGC API - Features Part 1
declares (conformance class ``.../conf/oas30``).

FastAPI writes OpenAPI 3.1 (JSON Schema 2020-12); :func:`openapi_30` rewrites the few
3.1-only constructs it uses: ``anyOf [X, null]`` and ``type: [X, "null"]`` become
``nullable``, a schema's ``examples`` list becomes ``example``, ``const`` an ``enum`` of one,
numeric ``exclusiveMinimum``/``exclusiveMaximum`` the 3.0 boolean form, and 3.1-only
keywords are dropped. ``tests/integration/test_api_documents.py`` validates the result
with openapi-spec-validator (OpenAPI 3.0).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

OPENAPI_VERSION = "3.0.3"
_DROPPED = ("$schema", "$id", "contentMediaType", "contentEncoding", "prefixItems",
            "unevaluatedProperties", "$defs", "dependentSchemas", "propertyNames")
_SCHEMA_CONTAINERS = ("properties", "patternProperties")


def _schema_30(node: Any) -> Any:
    """One JSON Schema (2020-12 subset) as an OpenAPI 3.0 schema object."""
    if isinstance(node, list):
        return [_schema_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _SCHEMA_CONTAINERS and isinstance(value, dict):
            out[key] = {k: _schema_30(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _schema_30(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_schema_30(v) for v in value]
        elif key == "examples" and isinstance(value, list):
            if value:
                out["example"] = value[0]
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = value
    kind = out.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        else:
            out.pop("type")
            out["anyOf"] = [{"type": k} for k in kinds]
    for combiner in ("anyOf", "oneOf"):
        options = out.get(combiner)
        if isinstance(options, list) and any(o == {"type": "null"} for o in options):
            rest = [o for o in options if o != {"type": "null"}]
            out.pop(combiner)
            if len(rest) == 1 and "$ref" not in rest[0]:
                out.update({k: v for k, v in rest[0].items() if k not in out})
            elif len(rest) == 1:
                out["allOf"] = rest  # a $ref cannot carry siblings in 3.0
            else:
                out[combiner] = rest
            out["nullable"] = True
    return out


def _parameter_30(parameter: dict[str, Any]) -> dict[str, Any]:
    out = dict(parameter)
    if "schema" in out:
        out["schema"] = _schema_30(out["schema"])
    examples = out.pop("examples", None)
    if isinstance(examples, list) and examples:
        out["example"] = examples[0]
    elif isinstance(examples, dict):
        out["examples"] = examples
    return out


def _media_30(content: dict[str, Any]) -> dict[str, Any]:
    return {media: ({**body, "schema": _schema_30(body["schema"])} if "schema" in body
                    else body) for media, body in content.items()}


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of FastAPI's OpenAPI 3.1 ``document`` as OpenAPI 3.0.3."""
    doc = copy.deepcopy(document)
    doc["openapi"] = OPENAPI_VERSION
    doc.pop("webhooks", None)
    doc.pop("jsonSchemaDialect", None)
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            operation["parameters"] = [_parameter_30(p) for p in operation.get("parameters", [])
                                       ] or operation.pop("parameters", [])
            if not operation.get("parameters"):
                operation.pop("parameters", None)
            body = operation.get("requestBody")
            if body and "content" in body:
                body["content"] = _media_30(body["content"])
            for response in operation.get("responses", {}).values():
                if "content" in response:
                    response["content"] = _media_30(response["content"])
    schemas = doc.get("components", {}).get("schemas", {})
    for name in list(schemas):
        schemas[name] = _schema_30(schemas[name])
    return doc


def serve_openapi_30(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the OpenAPI 3.0.3 document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_30(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
