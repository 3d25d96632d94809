"""Standard inference protocols beside relay's own routes: MLflow's scoring protocol
(`POST /invocations`, answered as `mlflow models serve` answers a relay model) and the Open
Inference Protocol v2 (KServe, Triton, MLServer clients).

Each turns its body into relay's records and relay's answers into its own shape; the routes
in `serving.app` check the records against the version's request model and predict, count
and log them exactly as `/predict/batch` does. No FastAPI here: these are data conversions.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cluster.config import EPOCH_FORMATS

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
INTEGERS = {f"{sign}INT{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)}
FLOATS = {"FP16", "FP32", "FP64"}
ACCEPTED = {  # a column's OIP datatype -> the tensor datatypes it takes
    "INT64": INTEGERS,
    "FP64": FLOATS | INTEGERS,
    "BOOL": {"BOOL"},
    "BYTES": {"BYTES"},
}


class ProtocolError(Exception):
    """A request the protocol refuses: `status` and the body in that protocol's error shape."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body)
        self.status = status
        self.body = body


def mlflow_error(message: str) -> ProtocolError:
    """MLflow's scoring server's error body (what its clients print)."""
    return ProtocolError(400, {"error_code": "BAD_REQUEST", "message": message})


def oip_error(message: str, status: int = 400) -> ProtocolError:
    return ProtocolError(status, {"error": message})


def flat(answer: dict[str, Any]) -> dict[str, Any]:
    """One answer as the registered MLflow model's output row: `prediction` and, for a
    classifier, `probability_<class>` (its signature's columns)."""
    row = {"prediction": answer["prediction"]}
    for label, p in answer.get("probabilities", {}).items():
        row[f"probability_{label}"] = p
    return row


def validated(
    adapter: TypeAdapter, rows: list[Any], refuse: Callable[[ValidationError], Exception]
) -> list[dict[str, Any]]:
    """Rows validated by a version's request model and dumped; `refuse` makes the failure
    the route's own error (a protocol's 400, or FastAPI's 422 on the untyped routes)."""
    try:
        return [r.model_dump() for r in adapter.validate_python(rows)]
    except ValidationError as exc:
        raise refuse(exc) from None


def checked(
    records: Any, adapter: TypeAdapter, limit: int, error: Any = mlflow_error
) -> list[dict[str, Any]]:
    """The records validated by the version's request model (as /predict checks one): a
    400 naming the record and field at fault, or the limit."""
    if len(records) > limit:
        raise error(f"{len(records)} records: at most {limit} per request")

    def refuse(exc: ValidationError) -> Exception:
        first = exc.errors()[0]
        index, *field = first["loc"] or ("?",)
        where = ".".join(str(p) for p in field) or "record"
        return error(f"record {index}: {where}: {first['msg']}")

    return validated(adapter, records, refuse)


def mlflow_records(body: Any) -> list[Any]:
    """The records of a scoring request in any of MLflow's JSON formats."""
    formats = [k for k in MLFLOW_FORMATS if isinstance(body, dict) and k in body]
    if len(formats) != 1:
        raise mlflow_error(
            f"a JSON object with exactly one of {', '.join(MLFLOW_FORMATS)} "
            f'(e.g. {{"dataframe_records": [{{...}}]}})'
        )
    extra = sorted(set(body) - {formats[0], "params"})
    if extra:
        raise mlflow_error(f"unknown field(s) {extra} beside {formats[0]}")
    value = body[formats[0]]
    if formats[0] == "dataframe_split":
        return _split(value)
    if isinstance(value, dict):  # inputs as columns: {"age": [31, 45], ...}
        return _columns(value, mlflow_error)
    if not isinstance(value, list):
        raise mlflow_error(f"{formats[0]} must be a list of records or an object of columns")
    return value


def _split(value: Any) -> list[Any]:
    """pandas' `split` orientation: columns, and rows of values in that order."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise mlflow_error('dataframe_split needs "columns" and "data" (a list of rows)')
    columns = value.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise mlflow_error('dataframe_split needs "columns": the column names')
    records = []
    for i, row in enumerate(value["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise mlflow_error(f"dataframe_split row {i} must hold {len(columns)} values")
        records.append(dict(zip(columns, row, strict=True)))
    return records


def _columns(columns: dict[str, Any], error: Any) -> list[dict[str, Any]]:
    """Records from equal-length columns of values."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if -1 in lengths or len(lengths) > 1:
        raise error("inputs given by column need a list of values per column, all one length")
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def oip_datatype(column: dict[str, Any]) -> str:
    """The OIP tensor datatype of an input column (BYTES: text, as a request carries it)."""
    if column["type"] == "timestamp":
        return "INT64" if column.get("format") in EPOCH_FORMATS else "BYTES"
    return {"int": "INT64", "float": "FP64", "bool": "BOOL"}.get(column["type"], "BYTES")


def oip_outputs_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The output tensors an infer answer carries, one per column of the MLflow signature."""
    if spec["task"] != "classification":
        return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    classes = spec["features"]["label"]["classes"]
    return [{"name": "prediction", "datatype": "BYTES", "shape": [-1]}] + [
        {"name": f"probability_{c}", "datatype": "FP64", "shape": [-1]} for c in classes
    ]


def oip_metadata(name: str, versions: list[int], spec: dict[str, Any]) -> dict[str, Any]:
    """Model metadata from the declared input schema (GET /v2/models/<name>)."""
    inputs = [
        {"name": c["name"], "datatype": oip_datatype(c), "shape": [-1]}
        for c in spec["input_schema"]
    ]
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": f"relay-{spec.get('family', 'mlp')}",
        "inputs": inputs,
        "outputs": oip_outputs_of(spec),
    }


def oip_records(body: Any, spec: dict[str, Any], id_column: str | None) -> list[dict[str, Any]]:
    """Records from an infer request's input tensors: one tensor per column, shape [n] (or
    [n, 1]), data flat or nested row-major, each in its column's datatype."""
    tensors = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise oip_error('an infer request needs "inputs": a list of tensors, one per column')
    wanted = {c["name"]: oip_datatype(c) for c in spec["input_schema"]}
    if id_column:
        wanted.setdefault(id_column, "BYTES")
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if not isinstance(name, str) or name not in wanted:  # JSON: a name may be a list
            raise oip_error(f"input {name!r} is not one of the model's inputs {sorted(wanted)}")
        if name in columns:
            raise oip_error(f"input {name!r} given twice")
        columns[name] = _tensor(tensor, wanted[name], name == id_column)
    return _columns(columns, oip_error)


def _tensor(tensor: dict[str, Any], datatype: str, is_id: bool) -> list[Any]:
    """One input tensor's values, checked against its shape and the column's datatype."""
    name, given, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
    accepted = INTEGERS | {"BYTES"} if is_id else ACCEPTED[datatype]
    if not isinstance(given, str) or given not in accepted:
        raise oip_error(
            f"input {name!r} is {datatype}, not {given}: send one of {sorted(accepted)}"
        )
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2 or shape[1:] not in ([], [1]):
        raise oip_error(f"input {name!r} needs shape [n] or [n, 1] (one value per record)")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise oip_error(f'input {name!r} needs its values in "data"')
    values = [v for row in data for v in row] if all(isinstance(r, list) for r in data) else data
    if len(values) != shape[0]:
        raise oip_error(f"input {name!r} has {len(values)} values for shape {shape}")
    return values


def oip_outputs(
    answers: list[dict[str, Any]], spec: dict[str, Any], requested: Any
) -> list[dict[str, Any]]:
    """The answers as typed output tensors, by column; only the `outputs` a request named."""
    rows = [flat(a) for a in answers]
    tensors = [{**t, "shape": [len(rows)]} for t in oip_outputs_of(spec)]
    if requested:
        names = [o.get("name") if isinstance(o, dict) else o for o in _listed(requested)]
        known = {t["name"] for t in tensors}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise oip_error(f"unknown output(s) {unknown}: this model gives {sorted(known)}")
        tensors = [t for t in tensors if t["name"] in names]
    for tensor in tensors:  # each column's values, pulled out of the rows at C speed
        tensor["data"] = list(map(dict.__getitem__, rows, repeat(tensor["name"])))
    return tensors


def _listed(requested: Any) -> list[Any]:
    """An infer request's `outputs`: a list of {"name": ...} (or names)."""
    names = requested if isinstance(requested, list) else None
    if names is None or not all(isinstance(o, str | dict) for o in names):
        raise oip_error('"outputs" must be a list of {"name": <output>}')
    if not all(isinstance(o.get("name") if isinstance(o, dict) else o, str) for o in names):
        raise oip_error('each of "outputs" needs a "name"')
    return names
