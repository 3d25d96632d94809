"""Request validation generated from the model's registered input schema."""

from __future__ import annotations

import math
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


async def validation_error(request: Any, exc: Any) -> Any:
    """422 with each error's field path; inputs like Infinity or NaN echoed as text.

    FastAPI's own handler answered 500 when the bad input was a non-finite float: JSON cannot
    carry it back (found by the fuzz test).
    """
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    return JSONResponse(
        status_code=422, content={"detail": _finite(jsonable_encoder(exc.errors()))}
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
