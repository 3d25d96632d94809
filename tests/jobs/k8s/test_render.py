"""`relay k8s render`: one config drives the manifests, and kubectl kustomize agrees."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cluster.configfile import parse_config
from cluster.errors import ConfigError
from jobs.cli.app import app
from jobs.k8s import images, kustomize
from jobs.k8s.render import CLUSTERS, render, serve_config
from jobs.k8s.validate import check_manifests
from tests.conftest import CI_CONFIG, ci_raw, merge
from tests.jobs.k8s.helpers import by_kind, kuberay_crds

SIZES = {
    "kubernetes": {
        "image": "registry.example/relay:1.2.3",
        "gpu_image": "registry.example/relay:1.2.3-gpu",
        "head": {"cpu": "3", "memory": "6Gi"},
        "cpu_workers": {"cpu": "1500m", "memory": "5Gi", "min_replicas": 2, "max_replicas": 7},
        "gpu_workers": {"cpu": "6", "memory": "40Gi", "gpus": 2, "max_replicas": 3},
        "job_ttl_seconds": 120,
        "job_deadline_seconds": 900,
    },
    "serve": {"autoscaling": {"min_replicas": 1, "max_replicas": 5}},
}


def rendered(tmp_path: Path, overlay: str, raw: dict[str, Any] | None = None) -> list[dict]:
    raw = raw or merge(ci_raw(), SIZES)
    text = yaml.safe_dump(raw)
    return render(parse_config(raw), text, overlay, tmp_path / overlay)


def canonical(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(o, sort_keys=True) for o in objects)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_kubectl_kustomize_builds_the_same_objects(tmp_path: Path, overlay: str) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot compare with kubectl kustomize")
    rendered(tmp_path, overlay)
    ours = kustomize.build(tmp_path / overlay)  # relay's offline builder, kubectl aside
    built = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = [d for d in yaml.safe_load_all(built) if d]
    assert len(ours) == 23
    assert canonical(ours) == canonical(theirs)
    written = yaml.safe_load_all((tmp_path / overlay / "manifests.yaml").read_text())
    assert canonical(list(written)) == canonical(ours)


def test_the_config_decides_images_sizes_replicas_and_job_limits(tmp_path: Path) -> None:
    objects = rendered(tmp_path, "gpu")
    cluster = by_kind(objects, "RayCluster")["spec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "registry.example/relay:1.2.3"
    assert head["resources"] == {
        "limits": {"cpu": "3", "memory": "6Gi"},
        "requests": {"cpu": "3", "memory": "6Gi"},
    }
    cpu, gpu = cluster["workerGroupSpecs"]
    assert (cpu["groupName"], cpu["replicas"], cpu["minReplicas"], cpu["maxReplicas"]) == (
        "cpu",
        2,
        2,
        7,
    )
    assert cpu["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "1500m",
        "memory": "5Gi",
    }
    gpu_container = gpu["template"]["spec"]["containers"][0]
    assert gpu_container["image"] == "registry.example/relay:1.2.3-gpu"
    assert gpu_container["resources"]["requests"] == {
        "cpu": "6",
        "memory": "40Gi",
        "nvidia.com/gpu": 2,
    }
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 3)
    job = by_kind(objects, "RayJob")["spec"]
    assert job["rayClusterSpec"]["workerGroupSpecs"][1]["maxReplicas"] == 3
    assert (job["ttlSecondsAfterFinished"], job["activeDeadlineSeconds"]) == (120, 900)
    assert job["shutdownAfterJobFinishes"] is True
    assert job["entrypoint"] == (
        "cd /var/lib/relay && python -m jobs.pipeline --config /etc/relay/config.yaml "
        "--until register"
    )  # the RayService serves: no endpoint on the job's short-lived cluster
    service = by_kind(objects, "RayService")["spec"]["rayClusterConfig"]
    assert [g["groupName"] for g in service["workerGroupSpecs"]] == ["cpu"]
    mlflow = by_kind(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]
    assert mlflow["containers"][0]["image"] == "registry.example/relay:1.2.3"


def config_maps_mounted(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Kind/name -> the ConfigMaps its pod templates mount, wherever the kind nests them."""
    mounted: dict[str, set[str]] = {}

    def walk(node: Any, into: set[str]) -> None:
        if isinstance(node, dict):
            if "configMap" in node and "name" in node:  # a volume
                into.add(node["configMap"]["name"])
            for value in node.values():
                walk(value, into)
        elif isinstance(node, list):
            for item in node:
                walk(item, into)

    for obj in objects:
        walk(obj, mounted.setdefault(f"{obj['kind']}/{obj['metadata']['name']}", set()))
    return {k: v for k, v in mounted.items() if v}


def test_the_config_itself_is_a_generated_configmap_every_pod_mounts(tmp_path: Path) -> None:
    """configMapGenerator: the config is relay-config-<hash>, mounted under that name by
    every Ray pod and the monitor; another config is another name in the RayJob's and
    RayService's specs, so KubeRay rolls their pods (issue #21)."""
    raw = merge(ci_raw(), SIZES)
    objects = rendered(tmp_path, "cpu", raw)
    (config,) = [o for o in objects if o["metadata"]["name"].startswith("relay-config-")]
    assert parse_config(yaml.safe_load(config["data"]["config.yaml"])) == parse_config(raw)
    name = config["metadata"]["name"]
    mounted = config_maps_mounted(objects)
    for user in ("RayCluster/relay", "RayJob/relay-pipeline", "RayService/relay-serve",
                 "CronJob/relay-monitor"):  # fmt: skip
        assert name in mounted[user] and "relay-config" not in mounted[user], user
    existing = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    assert set().union(*mounted.values()) <= existing  # no mount of a missing ConfigMap
    changed = rendered(tmp_path / "changed", "cpu", merge(raw, {"train": {"epochs": 4}}))
    (other,) = [o for o in changed if o["metadata"]["name"].startswith("relay-config-")]
    assert other["metadata"]["name"] != name
    assert other["metadata"]["name"] in config_maps_mounted(changed)["RayService/relay-serve"]


def test_the_generated_names_and_images_equal_kubectl_kustomizes(tmp_path: Path) -> None:
    """The hash suffix over text Go's JSON escapes (<, >, &, tabs, control and non-ASCII
    characters), literals, an unhashed generator with labels, and image references with a
    registry port, a tag or a digest: relay's offline build equals kubectl's."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot compare with kubectl kustomize")
    (tmp_path / "odd.txt").write_text('a <b> & "c"\t\\ d\x08\x0c é ✓ \u2028\n')
    (tmp_path / "pods.yaml").write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n}, "spec": {
                    "containers": [{"name": "c", "image": image}],
                    "volumes": [{"name": "v", "configMap": {"name": "odd"}}]}}
                for n, image in [("a", "relay"), ("b", "relay-gpu:old"), ("c", "other:1")]
            ]
        )
    )  # fmt: skip
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["pods.yaml"],
                "configMapGenerator": [
                    {"name": "odd", "files": ["odd.txt", "renamed.txt=odd.txt"]},
                    {"name": "lit", "literals": ["k=v=w", "empty="]},
                    {"name": "plain", "literals": ["k=v"],
                     "options": {"disableNameSuffixHash": True, "labels": {"a": "b"}}},
                ],
                "images": [
                    images.entry("relay", "registry.example:5000/team/relay:1.2.3"),
                    images.entry("relay-gpu", "registry.example/relay@sha256:" + "ab" * 32),
                ],
            }
        )
    )  # fmt: skip
    built = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    theirs = [d for d in yaml.safe_load_all(built) if d]
    ours = kustomize.build(tmp_path)
    assert canonical(ours) == canonical(theirs)
    pods = {o["metadata"]["name"]: o["spec"] for o in ours if o["kind"] == "Pod"}
    assert pods["a"]["containers"][0]["image"] == "registry.example:5000/team/relay:1.2.3"
    assert pods["b"]["containers"][0]["image"] == "registry.example/relay@sha256:" + "ab" * 32
    assert pods["c"]["containers"][0]["image"] == "other:1"
    assert pods["a"]["volumes"][0]["configMap"]["name"].startswith("odd-")


def test_cpu_overlay_has_no_gpu_anywhere(tmp_path: Path) -> None:
    rendered(tmp_path, "cpu")
    assert "nvidia.com/gpu" not in (tmp_path / "cpu" / "manifests.yaml").read_text()


def test_serve_config_v2_passes_serves_schema_and_its_import_path_imports(
    tmp_path: Path,
) -> None:
    from ray.serve.schema import ServeDeploySchema

    objects = rendered(tmp_path, "cpu")
    text = by_kind(objects, "RayService")["spec"]["serveConfigV2"]
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    (application,) = schema.applications
    assert application.route_prefix == "/credit"
    assert application.name == "credit-default-ci"
    assert (schema.http_options.host, schema.http_options.port) == ("0.0.0.0", 8000)
    module, _, attr = application.import_path.partition(":")
    served = importlib.import_module(module)
    assert callable(getattr(served, attr))
    args = served.AppArgs.model_validate(application.args)  # the builder accepts the args
    assert args.autoscaling is not None and args.autoscaling.max_replicas == 5
    assert (args.tracking_uri, args.auth, args.token_env) == (
        "http://mlflow:5000",
        "token",
        "RELAY_SERVE_TOKEN",
    )


def ray_groups(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(kind, environment of the Ray container) for every group of every Ray object."""
    found = []
    for kind, (name, at) in CLUSTERS.items():
        cluster = by_kind(objects, kind, name)
        for key in at.strip("/").split("/"):
            cluster = cluster[key]
        for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
            env = group["template"]["spec"]["containers"][0]["env"]
            found.append((kind, {e["name"]: e.get("value") for e in env}))
    return found


def test_every_ray_container_gets_the_configs_serve_flags(tmp_path: Path) -> None:
    """Serve reads its ingress/preset flags from the environment at start, on every node."""
    serve = {"ingress": "haproxy", "throughput_optimized": True, "proxy_health_check_s": 3}
    groups = ray_groups(rendered(tmp_path, "gpu", merge(ci_raw(), {**SIZES, "serve": serve})))
    assert len(groups) == 8  # head, CPU and GPU workers of RayCluster and RayJob; 2 RayService
    wanted = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "3.0",
    }
    for kind, env in groups:
        assert env.items() >= wanted.items(), (kind, env)
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"  # the base's env is kept
    for _, env in ray_groups(rendered(tmp_path / "default", "cpu")):  # the default: HAProxy
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert "RAY_SERVE_HAPROXY_STATS_PORT" not in env  # a pod has its own ports
    proxy = merge(ci_raw(), {"serve": {"ingress": "proxy"}})
    for _, env in ray_groups(rendered(tmp_path / "proxy", "cpu", proxy)):
        assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_rendered_manifests_pass_the_strict_validator_and_policy(tmp_path: Path) -> None:
    kuberay_crds()
    for overlay in ("cpu", "gpu"):
        assert [str(p) for p in check_manifests(rendered(tmp_path, overlay))] == []


@pytest.mark.parametrize(
    ("override", "overlay", "message"),
    [
        (
            {"serve": {"auth": "none", "ingress": "proxy"}},
            "cpu",
            "serve.auth none is not allowed on Kubernetes",
        ),
        ({"tracking": {"uri": "sqlite:///x.db"}}, "cpu", "is not reachable from pods"),
        ({}, "tpu", "unknown overlay 'tpu'"),
    ],
)
def test_render_refuses_what_cannot_work_in_a_cluster(
    tmp_path: Path, override: dict[str, Any], overlay: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        rendered(tmp_path, overlay, merge(ci_raw(), override))


def test_cli_render_then_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["k8s", "render", str(CI_CONFIG), "--overlay", "gpu", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "23 objects" in result.output
    assert (out / "kustomization.yaml").is_file() and (out / "overlays/gpu").is_dir()
    kuberay_crds()
    result = runner.invoke(app, ["k8s", "validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "23 objects valid" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "dash"},
                "spec": {"type": "NodePort", "ports": [{"port": 8265}]},
            }
        )
    )
    result = runner.invoke(app, ["k8s", "validate", str(bad)])
    assert result.exit_code == 2
    assert "NodePort exposes Ray ports [8265] outside" in result.output


def test_the_monitor_cronjob_reads_the_log_the_replicas_write(tmp_path: Path) -> None:
    """The RayService's replicas write the inference log under the shared state volume; the
    CronJob runs `relay monitor` on the same config with that volume mounted, on the
    configured schedule, with the configured image, and a failed check is not retried."""
    raw = merge(
        ci_raw(), {**SIZES, "kubernetes": {**SIZES["kubernetes"], "monitor_schedule": "@daily"}}
    )
    objects = rendered(tmp_path, "cpu", raw)
    cron = by_kind(objects, "CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert cron["spec"]["schedule"] == "@daily" and job["backoffLimit"] == 0
    assert container["image"] == "registry.example/relay:1.2.3"
    assert container["command"][-2:] == ["monitor", "/etc/relay/config.yaml"]
    service = yaml.safe_load(by_kind(objects, "RayService")["spec"]["serveConfigV2"])
    log_path = service["applications"][0]["args"]["log_path"]
    assert service["applications"][0]["args"]["poll_alias_seconds"] == 30.0  # follows the job
    assert log_path == f"/var/lib/relay/{ci_raw()['runtime']['state_dir']}/inference"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert log_path.startswith(mounts["relay-state"] + "/")
    assert container["workingDir"] == mounts["relay-state"]  # the relative state_dir resolves there
    # its pods may reach MLflow: the monitor policy lets them out, MLflow's lets them in
    labels = job["template"]["metadata"]["labels"]
    assert labels["relay.dev/mlflow-client"] == "true"
    (egress,) = [
        p
        for p in objects
        if p["kind"] == "NetworkPolicy" and p["metadata"]["name"] == "relay-monitor"
    ]
    assert egress["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_base_serve_config_is_what_demo_renders() -> None:
    from cluster.configfile import load_config
    from jobs.k8s.render import K8S_DIR

    base = yaml.safe_load((K8S_DIR / "base/rayservice.yaml").read_text())
    demo = serve_config(load_config(K8S_DIR.parent / "configs/demo.yaml"))
    assert yaml.safe_load(base["spec"]["serveConfigV2"]) == demo


def test_kubernetes_section_errors_name_the_field() -> None:
    bad = {
        "kubernetes": {
            "head": {"cpu": "2 cores", "memory": "8Gi"},
            "gpu_workers": {"cpu": "8", "memory": "32Gi", "min_replicas": 3, "max_replicas": 2},
        }
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(merge(ci_raw(), bad))
    lines = str(caught.value).splitlines()[1:]
    assert lines[0].startswith("  - kubernetes.head.cpu: String should match pattern")
    assert lines[1] == "  - kubernetes.gpu_workers: min_replicas (3) must be <= max_replicas (2)"
