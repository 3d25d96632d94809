"""The offline validator: KubeRay's own samples pass, planted mistakes fail with their path."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cluster.errors import ConfigError
from jobs.k8s.crds import CRD_ENV, cel_rule_counts, crd_dir, load_crds, schema_for
from jobs.k8s.validate import StructuralValidator, load_manifests, validate_objects
from tests.jobs.k8s.helpers import kuberay_crds, mutated


@pytest.fixture(scope="module")
def crds() -> Any:
    return kuberay_crds()


def sample(name: str) -> dict[str, Any]:
    docs = load_manifests(crd_dir() / "samples" / name)
    return next(d for d in docs if d["apiVersion"] == "ray.io/v1")


def problems(obj: dict[str, Any], crds: Any) -> list[str]:
    return [f"{p.path}: {p.message}" for p in validate_objects([obj], crds)]


def test_every_kuberay_sample_is_accepted(crds: Any) -> None:
    files = sorted((crd_dir() / "samples").glob("*.yaml"))
    assert len(files) == 15
    for path in files:
        objects = load_manifests(path)
        assert objects, path
        assert validate_objects(objects, crds) == [], path.name


def test_cel_rules_all_compile_and_transition_rules_are_the_only_ones_skipped(crds: Any) -> None:
    # 17 rules over the served versions; the 8 `self == oldSelf` immutability rules only apply
    # to updates, the other 9 are evaluated on every object.
    assert cel_rule_counts(crds) == {"rules": 17, "evaluated": 9, "skipped_transition": 8}


CLUSTER = "ray-cluster.auth.yaml"
WORKER = ("spec", "workerGroupSpecs", 0)


def _at(obj: dict[str, Any], *path: Any) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _worker_container(o: dict[str, Any]) -> dict[str, Any]:
    return _at(o, *WORKER, "template", "spec", "containers", 0)


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (lambda o: o["spec"].update(bogus=1), "spec", "'bogus' was unexpected"),
        (
            lambda o: _worker_container(o).update(imagePullPolicyy="Always"),
            "spec.workerGroupSpecs[0].template.spec.containers[0]",
            "'imagePullPolicyy' was unexpected",
        ),
        (
            lambda o: o["spec"]["authOptions"].update(mode="tokens"),
            "spec.authOptions.mode",
            "'tokens' is not one of ['disabled', 'token']",
        ),
        (
            lambda o: _at(o, *WORKER).update(replicas="one"),
            "spec.workerGroupSpecs[0].replicas",
            "'one' is not of type 'integer'",
        ),
        (
            lambda o: _at(o, *WORKER).update(replicas=2**31),
            "spec.workerGroupSpecs[0].replicas",
            "is greater than the maximum of 2147483647",
        ),
        (
            lambda o: _worker_container(o)["resources"]["limits"].update(cpu="4 cores"),
            "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.cpu",
            "'4 cores' does not match",
        ),
        (
            lambda o: _worker_container(o)["resources"]["limits"].update(memory=True),
            "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.memory",
            "is not valid under any of the given schemas",
        ),
        (
            lambda o: o["spec"].update(managedBy="someone-else"),
            "spec.managedBy",
            "the managedBy field value must be either",
        ),
        (
            lambda o: _at(o, *WORKER).pop("groupName"),
            "spec.workerGroupSpecs[0]",
            "'groupName' is a required property",
        ),
        (
            lambda o: _at(o, "spec", "headGroupSpec", "template", "spec", "containers", 0)[
                "ports"
            ].append({"containerPort": 6379}),  # protocol defaults to TCP: same key as gcs
            "spec.headGroupSpec.template.spec.containers[0].ports",
            "duplicate entry with keys {'containerPort': 6379, 'protocol': 'TCP'}",
        ),
    ],
)
def test_planted_mistakes_are_rejected_with_their_path(
    crds: Any, change: Any, path: str, message: str
) -> None:
    found = problems(mutated(sample(CLUSTER), change), crds)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: "), found
    assert message in found[0]


def test_int_or_string_quantities_take_integers_and_quantity_strings(crds: Any) -> None:
    for cpu in (4, "4", "500m", "1.5", "2e3"):
        obj = mutated(
            sample(CLUSTER),
            lambda o, c=cpu: _worker_container(o)["resources"]["limits"].update(cpu=c),
        )
        assert problems(obj, crds) == [], cpu


def test_a_cel_rule_on_a_rayjob_is_evaluated(crds: Any) -> None:
    job = sample("ray-job.deletion-rules.yaml")
    both = mutated(job, lambda o: o["spec"]["deletionStrategy"].update(onSuccess={"policy": "x"}))
    found = problems(both, crds)
    assert any(
        f.startswith(
            "spec.deletionStrategy: legacy policies (onSuccess/onFailure) and "
            "deletionRules cannot be used together"
        )
        for f in found
    ), found
    rule = lambda o: o["spec"]["deletionStrategy"]["deletionRules"][0]["condition"].update(  # noqa: E731
        jobDeploymentStatus="Failed"
    )
    found = problems(mutated(job, rule), crds)
    assert any("JobStatus and JobDeploymentStatus cannot be used together" in f for f in found)


def test_defaults_are_applied_before_required_is_checked(crds: Any) -> None:
    # maxReplicas and minReplicas are required with defaults: the API server accepts a group
    # without them because it defaults first.
    obj = mutated(
        sample(CLUSTER),
        lambda o: [_at(o, *WORKER).pop(k) for k in ("minReplicas", "maxReplicas", "replicas")],
    )
    assert problems(obj, crds) == []
    schema = crds[("ray.io/v1", "RayCluster")].json_schema
    raw = [e.message for e in StructuralValidator(schema).iter_errors(obj)]
    assert "'minReplicas' is a required property" in raw


def test_nullable_allows_null_and_other_fields_do_not() -> None:
    nullable = Draft202012Validator(schema_for({"type": "string", "nullable": True}))
    plain = Draft202012Validator(schema_for({"type": "string"}))
    assert nullable.is_valid(None) and nullable.is_valid("x")
    assert not plain.is_valid(None)


def test_preserve_unknown_fields_is_honoured() -> None:
    node = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert not Draft202012Validator(schema_for(node)).is_valid({"b": 1})
    node["x-kubernetes-preserve-unknown-fields"] = True
    assert Draft202012Validator(schema_for(node)).is_valid({"b": 1})


def test_a_cel_rule_cel_python_cannot_compile_is_an_error() -> None:
    node = {"type": "string", "x-kubernetes-validations": [{"rule": "self.(", "message": "m"}]}
    with pytest.raises(ConfigError, match="does not compile with cel-python"):
        schema_for(node)


@pytest.mark.parametrize(
    ("name", "change", "path", "message"),
    [
        (
            CLUSTER,
            lambda o: o["metadata"].update(name="r" * 54),
            "metadata.name",
            "at most 53 characters",
        ),
        (
            "ray-job.sample.yaml",
            lambda o: o["metadata"].update(name="j" * 48),
            "metadata.name",
            "at most 47 characters",
        ),
        (
            "ray-service.sample.yaml",
            lambda o: o["metadata"].update(name="1abc"),
            "metadata.name",
            "DNS-1035 label",
        ),
        (
            CLUSTER,
            lambda o: _at(o, *WORKER).update(minReplicas=6),
            "spec.workerGroupSpecs[0]",
            "minReplicas (6) must be <= maxReplicas (5)",
        ),
        (
            CLUSTER,
            lambda o: _at(o, *WORKER)["template"]["spec"].update(containers=[]),
            "spec.workerGroupSpecs[0].template.spec.containers",
            "needs at least one container",
        ),
        (
            "ray-job.sample.yaml",
            lambda o: o["spec"].update(submissionMode="K8sJob"),
            "spec.submissionMode",
            "is not one of",
        ),
        (
            CLUSTER,
            lambda o: o["spec"].update(rayVersion="2.51.0"),
            "spec.rayVersion",
            "token needs rayVersion >= 2.52",
        ),
        (
            CLUSTER,
            lambda o: o["spec"]["headGroupSpec"]["rayStartParams"].update(
                **{"num-cpus": "0 && curl x"}
            ),
            "spec.headGroupSpec.rayStartParams.num-cpus",
            "shell metacharacters",
        ),
    ],
)
def test_kuberay_runtime_rules(crds: Any, name: str, change: Any, path: str, message: str) -> None:
    found = problems(mutated(sample(name), change), crds)
    assert len(found) == 1 and found[0].startswith(f"{path}: ") and message in found[0], found


def test_core_kinds_are_strict_and_an_unknown_kind_fails(crds: Any) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "v"},
    }
    assert problems(config_map, crds) == []
    assert problems(dict(config_map, datas={}), crds) == [
        ": Additional properties are not allowed ('datas' was unexpected)"
    ]
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema for example.com/v1 Widget" in problems(widget, crds)[0]
    unknown_ray = {"apiVersion": "ray.io/v2", "kind": "RayCluster", "metadata": {"name": "r"}}
    assert "no CRD schema for ray.io/v2 RayCluster" in problems(unknown_ray, crds)[0]


def test_crds_are_checked_against_their_sha256sums(tmp_path: Path, monkeypatch: Any) -> None:
    kuberay_crds()  # skips where the CRDs are not available
    copy = tmp_path / "crds"
    shutil.copytree(crd_dir(), copy, ignore=shutil.ignore_patterns("samples"))
    first = copy / (copy / "SHA256SUMS").read_text().split()[1]
    first.write_bytes(first.read_bytes() + b"\n# tampered\n")
    monkeypatch.setenv(CRD_ENV, str(copy))
    assert crd_dir() == copy
    with pytest.raises(ConfigError, match="does not match its sha256"):
        load_crds(copy)
    monkeypatch.setenv(CRD_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=CRD_ENV):
        crd_dir()
