"""Registered versions as MLflow Models: pyfunc "from code", so `mlflow.pyfunc.load_model`,
`mlflow models serve`, MLServer/KServe and the MLflow UI's schema view can use them.

No Python object is pickled: MLflow runs `serving/pyfunc_code.py` (which names `RelayModel`)
and hands it the bundle as an artifact; `load_context` verifies the bundle's sha256 before it
reads a byte of it and scores through the same `Predictor` as the endpoint, so the answers are
the endpoint's. The model directory carries relay's `serving` and `cluster` code
(`code_paths`), and its requirements are the libraries the family needs.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from cluster.config import EPOCH_FORMATS
from cluster.errors import ServingError

CODE = Path(__file__).with_name("pyfunc_code.py")
BUNDLE = "bundle"  # the artifact name, and the folder under artifacts/ it lands in
PACKAGES = [Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "cluster"]
COLUMN_TYPES = {"int": "long", "float": "double", "bool": "boolean", "string": "string"}
REQUIREMENTS = ("numpy", "pyarrow", "pydantic", "safetensors")
FAMILY_LIBRARIES = {"gbdt": "xgboost-cpu"}  # the others score with torch


def column_type(column: dict[str, Any]) -> str:
    """The MLflow type of an input column, as a request carries it."""
    if column["type"] == "timestamp":  # text in the column's format, or whole epoch units
        return "long" if column.get("format") in EPOCH_FORMATS else "string"
    return COLUMN_TYPES.get(column["type"], "string")  # categories are text


def signature(spec: dict[str, Any]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [
        ColSpec(column_type(c), c["name"], required=not c["nullable"]) for c in spec["input_schema"]
    ]
    if spec["task"] == "classification":
        classes = spec["features"]["label"]["classes"]
        outputs = [ColSpec("string", "prediction")]
        outputs += [ColSpec("double", f"probability_{c}") for c in classes]
    else:
        outputs = [ColSpec("double", "prediction")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def requirements(spec: dict[str, Any]) -> list[str]:
    library = FAMILY_LIBRARIES.get(spec.get("family", "mlp"), "torch")
    found = []
    for name in (*REQUIREMENTS, library, "mlflow"):
        try:
            found.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            found.append(name)
    return found


def save(
    folder: Path, bundle: Path, sha256: str, spec: dict[str, Any], example: list[dict]
) -> None:
    """An MLflow Model directory at `folder` around the bundle at `bundle`."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="relay-code-") as tmp:
        code = []
        for package in PACKAGES:  # sources only: each file is one upload to a tracking server
            code.append(Path(tmp) / package.name)
            shutil.copytree(package, code[-1], ignore=shutil.ignore_patterns("__pycache__"))
        mlflow.pyfunc.save_model(
            path=str(folder),
            python_model=str(CODE),
            artifacts={BUNDLE: str(bundle)},
            model_config={"sha256": sha256},
            code_paths=[str(p) for p in code],
            signature=signature(spec),
            input_example=pd.DataFrame(example),
            pip_requirements=requirements(spec),
        )


class RelayModel(PythonModel):
    """The pyfunc model: a verified bundle, scored by relay's Predictor."""

    def load_context(self, context: Any) -> None:
        from cluster.tracking.bundle import read_bundle
        from serving.model import Predictor
        from serving.schema import request_model

        spec, files = read_bundle(Path(context.artifacts[BUNDLE]), context.model_config["sha256"])
        self.predictor = Predictor(spec, files)
        self.request = request_model(spec["input_schema"], spec["features"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        """A DataFrame of records -> a DataFrame: `prediction`, and `probability_<class>`."""
        from pydantic import ValidationError

        records = []
        for i, row in enumerate(model_input.to_dict("records")):
            present = {k: None if _missing(v) else _plain(v) for k, v in row.items()}
            try:
                records.append(self.request(**present).model_dump())
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise ServingError(f"row {i}: {field}: {first['msg']}") from None
        from serving.protocols import flat

        return pd.DataFrame([flat(a) for a in self.predictor.predict_records(records)])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as Python ones, timestamps as the text they arrived as."""
    return value.item() if hasattr(value, "item") else value
