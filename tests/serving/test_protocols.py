"""MLflow's scoring formats and OIP v2 tensors become the same records /predict takes; bad
bodies get the protocol's own 400 naming what is wrong."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from serving import protocols
from serving.protocols import ProtocolError
from serving.schema import request_model

SCHEMA = [
    {"name": "age", "type": "int", "nullable": False, "min": 18},
    {"name": "income", "type": "float", "nullable": True},
    {"name": "member", "type": "bool", "nullable": True},
    {"name": "region", "type": "category", "nullable": True, "categories": ["north", "south"]},
]
SPEC = {
    "task": "classification",
    "family": "gbdt",
    "input_schema": SCHEMA,
    "features": {"categorical": [], "label": {"classes": ["no", "yes"]}},
}
RECORDS = [
    {"age": 31, "income": 52000.5, "member": True, "region": "north"},
    {"age": 45, "income": None, "member": False, "region": "south"},
]
ROWS = [list(r.values()) for r in RECORDS]
COLOUR = {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["r", "g"]}
ADAPTER = TypeAdapter(list[request_model(SCHEMA, SPEC["features"], "customer")])


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": RECORDS},
        {"dataframe_split": {"columns": list(RECORDS[0]), "data": ROWS}},
        {"dataframe_split": {"index": [7, 8], "columns": list(RECORDS[0]), "data": ROWS}},
        {"inputs": RECORDS},
        {"inputs": {k: [r[k] for r in RECORDS] for k in RECORDS[0]}},
        {"instances": RECORDS, "params": {}},
    ],
)  # fmt: skip
def test_each_mlflow_format_gives_the_same_records(body):
    assert protocols.checked(protocols.mlflow_records(body), ADAPTER, 10) == [
        {**r, "customer": None} for r in RECORDS
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([RECORDS[0]], "exactly one of dataframe_split"),
        ({"dataframe_records": RECORDS, "inputs": RECORDS}, "exactly one of"),
        ({"dataframe_records": RECORDS, "columns": ["age"]}, "unknown field(s) ['columns']"),
        ({"dataframe_split": {"columns": ["age", "income"], "data": [[31]]}}, "row 0 must hold 2"),
        ({"dataframe_split": {"data": [[31]]}}, '"columns"'),
        ({"inputs": {"age": [31, 45], "income": [1.0]}}, "all one length"),
        ({"dataframe_records": [{**RECORDS[0], "age": "old"}]}, "record 0: age: Input should be"),
        ({"dataframe_records": [RECORDS[0], {**RECORDS[1], "age": 3}]}, "record 1: age:"),
        ({"dataframe_records": [{**RECORDS[0], "colour": "red"}]}, "record 0: colour: Extra"),
        ({"dataframe_records": [RECORDS[0]] * 11}, "11 records: at most 10"),
    ],
)
def test_bad_mlflow_bodies_get_mlflows_400_naming_the_fault(body, says):
    with pytest.raises(ProtocolError) as refused:
        protocols.checked(protocols.mlflow_records(body), ADAPTER, 10)
    assert refused.value.status == 400
    assert refused.value.body["error_code"] == "BAD_REQUEST"
    assert says in refused.value.body["message"]


def tensors(**overrides: dict) -> list[dict]:
    columns = {k: [r[k] for r in RECORDS] for k in RECORDS[0]}
    types = {"age": "INT64", "income": "FP64", "member": "BOOL", "region": "BYTES"}
    found = [{"name": k, "shape": [2], "datatype": types[k], "data": v} for k, v in columns.items()]
    return [{**t, **overrides.get(t["name"], {})} for t in found]


def test_oip_tensors_by_column_give_the_same_records_and_typed_outputs():
    narrow = tensors(age={"datatype": "INT32", "shape": [2, 1], "data": [[31], [45]]})
    for inputs in (tensors(), narrow):
        records = protocols.oip_records({"inputs": inputs}, SPEC, "customer")
        assert protocols.checked(records, ADAPTER, 10, protocols.oip_error) == [
            {**r, "customer": None} for r in RECORDS
        ]
    answers = [
        {"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
        {"prediction": "no", "probabilities": {"no": 0.5, "yes": 0.5}},
    ]
    assert protocols.oip_outputs(answers, SPEC, None) == [
        {"name": "prediction", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]},
        {"name": "probability_no", "datatype": "FP64", "shape": [2], "data": [0.25, 0.5]},
        {"name": "probability_yes", "datatype": "FP64", "shape": [2], "data": [0.75, 0.5]},
    ]
    only = protocols.oip_outputs(answers, SPEC, [{"name": "probability_yes"}])
    assert [t["name"] for t in only] == ["probability_yes"]


def test_oip_metadata_types_each_declared_column():
    meta = protocols.oip_metadata("credit", [3, 4], SPEC)
    assert meta["versions"] == ["3", "4"] and meta["platform"] == "relay-gbdt"
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
        ("age", "INT64"), ("income", "FP64"), ("member", "BOOL"), ("region", "BYTES"),
    ]  # fmt: skip
    assert [t["name"] for t in meta["outputs"]] == [
        "prediction",
        "probability_no",
        "probability_yes",
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"inputs": []}, '"inputs"'),
        ({"inputs": [*tensors(), COLOUR]}, "'colour' is not one of"),
        ({"inputs": tensors(age={"datatype": "BYTES"})}, "'age' is INT64, not BYTES"),
        ({"inputs": tensors(income={"datatype": "BOOL"})}, "'income' is FP64, not BOOL"),
        ({"inputs": tensors(age={"shape": [2, 2]})}, "shape [n] or [n, 1]"),
        ({"inputs": tensors(age={"shape": [3]})}, "has 2 values for shape [3]"),
        ({"inputs": tensors(age={"data": 31})}, 'values in "data"'),
        ({"inputs": tensors(age={"shape": [1], "data": [31]})}, "all one length"),
        ({"inputs": tensors()[:1] * 2}, "given twice"),
        ({"inputs": tensors(age={"name": []})}, "[] is not one of"),
        ({"inputs": tensors(age={"datatype": {}})}, "'age' is INT64, not {}"),
        ({"inputs": tensors(age={"data": [31, 3]})}, "record 1: age: Input should be greater"),
    ],
)  # fmt: skip
def test_bad_oip_requests_get_oips_400_naming_the_fault(body, says):
    with pytest.raises(ProtocolError) as refused:
        records = protocols.oip_records(body, SPEC, "customer")
        protocols.checked(records, ADAPTER, 10, protocols.oip_error)
    assert refused.value.status == 400 and says in refused.value.body["error"]


@pytest.mark.parametrize(
    ("requested", "says"),
    [
        ([{"name": "score"}], "unknown output(s) ['score']"),
        ("prediction", '"outputs" must be a list'),
        ([{"name": ["prediction"]}], 'needs a "name"'),
    ],
)
def test_an_unknown_output_is_refused(requested, says):
    answers = [{"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}]
    with pytest.raises(ProtocolError) as refused:
        protocols.oip_outputs(answers, SPEC, requested)
    assert says in refused.value.body["error"]
