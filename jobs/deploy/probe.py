"""Probing a running endpoint: which versions it serves, waiting until it serves new ones, and
whether its answer is the offline model's."""

from __future__ import annotations

import json
import math
import time
import urllib.error
from typing import TYPE_CHECKING, Any

from cluster.config import RelayConfig
from cluster.errors import ServingError
from jobs.artifacts import Registered
from serving.client import get_json

if TYPE_CHECKING:
    from serving.model import Predictor  # torch: not for `relay rollout`


def served_challenger(cfg: RelayConfig, client: Any) -> int | None:
    """The challenger version the config's endpoint routes a share to, if any."""
    from cluster.tracking.registry import aliased

    if cfg.serve.challenger_share <= 0:
        return None
    found = aliased(client, cfg.model.name, cfg.serve.challenger_alias)
    return found.version if found else None


def wait_for_version(
    endpoint: str, version: int, challenger: int | None = None, timeout: float = 60.0
) -> None:
    """Until the health route says `version` (and `challenger`): swaps go replica by replica.
    A replica being replaced answers nothing meanwhile (HAProxy: a 500 while it has no live
    replica, a 404 while it has no routes yet), so those count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = get_json(f"{endpoint}/healthz")
            served = health["model_version"]
            if served == version and health["challenger_version"] == challenger:
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 404:
                raise
            served = f"nothing (HTTP {exc.code})"
        except OSError as exc:  # refused: the ingress itself is being replaced
            served = f"nothing ({exc})"
        if time.monotonic() > deadline:
            raise ServingError(f"endpoint serves version {served}, expected {version}")
        time.sleep(0.5)


def sample_prediction(
    endpoint: str,
    record: dict[str, Any],
    token: str | None,
    evaluated: Predictor,
    model: Registered,
) -> dict[str, Any]:
    """One real HTTP prediction, checked against the evaluated model: a disagreement is a failed
    deploy (ServingError, exit 6, both predictions in the message).

    Under a champion/challenger split the request is repeated until the evaluated version
    answers (at most as often as makes missing it less likely than 1e-9); where it never
    does (challenger_share 1.0), the version that answered is what the endpoint serves.
    """
    health = get_json(f"{endpoint}/healthz")
    challenger, share = health["challenger_version"], health["challenger_share"]
    odds = share if challenger is not None else 0.0
    tries = math.ceil(math.log(1e-9) / math.log(odds)) if 0 < odds < 1 else 1
    for _ in range(tries):
        response = get_json(f"{endpoint}/predict", record, token=token)
        if response["model_version"] == model.version:
            break
    offline = evaluated.predict_records([record])[0]
    if not predictions_match(response, offline):
        served = {k: response[k] for k in offline}
        routed = (
            f"; {tries} request(s) all went to challenger version {challenger} (share {share:g})"
            if response["model_version"] != model.version
            else ""
        )
        raise ServingError(
            f"the endpoint's prediction for {json.dumps(record)} is {json.dumps(served)} "
            f"(version {response['model_version']}, sha256 {response['model_sha256'][:12]}), "
            f"the evaluated model's is {json.dumps(offline)} (version {model.version}, sha256 "
            f"{model.sha256[:12]}): the endpoint does not serve the evaluated model{routed}. "
            "The deploy failed"
        )
    return {"request": record, "response": response, "matches_offline": True}


def predictions_match(served: dict[str, Any], offline: dict[str, Any], tol: float = 1e-5) -> bool:
    """The same class with probabilities within `tol`, or a value within `tol` relative."""
    if served["prediction"] != offline["prediction"] and "probabilities" in offline:
        return False
    if "probabilities" in offline:
        return all(
            abs(served["probabilities"][k] - v) <= tol for k, v in offline["probabilities"].items()
        )
    return abs(served["prediction"] - offline["prediction"]) <= tol * max(
        1.0, abs(offline["prediction"])
    )
