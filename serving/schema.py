"""Request validation generated from the model's registered input schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

_PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


def request_model(input_schema: list[dict[str, Any]]) -> type[BaseModel]:
    """One typed, range-checked field per input column; unknown fields are rejected."""
    fields: dict[str, Any] = {}
    for column in input_schema:
        if column["type"] == "category":
            annotation: Any = Literal[tuple(column["categories"])]
        else:
            annotation = _PYTHON_TYPES[column["type"]]
        constraints = {
            key: column[bound]
            for key, bound in (("ge", "min"), ("le", "max"))
            if column.get(bound) is not None
        }
        if column["nullable"]:
            fields[column["name"]] = (annotation | None, Field(None, **constraints))
        else:
            fields[column["name"]] = (annotation, Field(..., **constraints))
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
    )
