"""Request validation generated from the model's registered input schema."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from cluster.config import AUTO, EPOCH_FORMATS, ColumnType
from serving.features import OTHER
from serving.values import describe, parse

_PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}


MAX_ID_CHARS = 256


def request_model(
    input_schema: list[dict[str, Any]],
    features: dict[str, Any],
    id_column: str | None = None,
) -> type[BaseModel]:
    """One typed, range-checked field per input column; unknown fields are rejected.

    `id_column` (the data's declared id): an optional field besides, never a model input; the
    inference log keeps it, so `relay feedback` can join outcomes by it.

    A learned category (categories: auto) takes any text: a value outside the spec's
    vocabulary is scored as `__other__`. A timestamp is text in the column's format (a number
    for epoch formats) that must parse.
    """
    learned = {f["name"]: f["vocab"] for f in features["categorical"] if "other" in f}
    fields: dict[str, Any] = {}
    for column in input_schema:
        notes: dict[str, Any] = {}
        if column["type"] == "category" and column["categories"] == AUTO:
            annotation: Any = str
            known = [v for v in learned[column["name"]] if v != OTHER]
            notes["description"] = f"Learned values {known}; any other is scored as {OTHER}."
        elif column["type"] == "category":
            annotation = Literal[tuple(column["categories"])]
        elif column["type"] == "timestamp":
            fmt = column.get("format")
            kind = float if fmt in EPOCH_FORMATS else str
            annotation = Annotated[kind, AfterValidator(_parses(fmt))]
            notes["description"] = f"A timestamp in {describe(fmt)}."
        else:
            annotation = _PYTHON_TYPES[column["type"]]
        constraints = {
            key: column[bound]
            for key, bound in (("ge", "min"), ("le", "max"))
            if column.get(bound) is not None
        } | notes
        if column["nullable"]:
            fields[column["name"]] = (annotation | None, Field(None, **constraints))
        else:
            fields[column["name"]] = (annotation, Field(..., **constraints))
    if id_column:
        fields[id_column] = (
            Annotated[str, Field(max_length=MAX_ID_CHARS)] | int | None,
            Field(None, description="Your id of this record (not a model input): logged, for "
                  "`relay feedback` to join its outcome by."),
        )  # fmt: skip
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
    )


def _parses(fmt: str | None) -> Callable[[Any], Any]:
    """A field check: the value parses as ETL would parse it (the request keeps the value)."""

    def check(value: Any) -> Any:
        values, _ = parse(pa.array([value]), ColumnType.timestamp, fmt)
        if not values[0].is_valid:
            raise ValueError(f"not a timestamp in {describe(fmt)}")
        return value

    return check


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
