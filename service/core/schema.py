"""What every spec model shares: the strict base, and how a model describes its fields in
the catalog (`GET /api/v1/algorithms`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # strict: "5" is not an int and true is not a number; unknown names are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


def describe_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Each parameter's type, default, bounds and choices, read from the model's JSON schema."""
    schema = model.model_json_schema()
    described = []
    for name, prop in schema.get("properties", {}).items():
        entry: dict[str, Any] = {"name": name, "default": prop.get("default")}
        if "description" in prop:
            entry["description"] = prop["description"]
        entry["accepts"] = [_describe_alternative(alt) for alt in prop.get("anyOf", [prop])]
        described.append(entry)
    return described


def _describe_alternative(alt: dict[str, Any]) -> dict[str, Any]:
    if "enum" in alt or "const" in alt:
        return {"type": "choice", "choices": alt.get("enum", [alt.get("const")])}
    kept = {"type": alt.get("type", "any")}
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in alt:
            kept[key] = alt[key]
    return kept
