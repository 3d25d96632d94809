"""Starting a config's app on a Ray where Serve already runs: on its address, or a clear refusal."""

from __future__ import annotations

import pytest
from ray import serve

from cluster.errors import ServingError
from serving.launch import serve_app
from tests.conftest import free_port


def test_deploy_refuses_a_serve_instance_that_listens_elsewhere(ray_cluster, make_config):
    """A running Serve keeps its port: the endpoint would not be where the config says."""
    running = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": running})
    try:
        cfg = make_config()  # serve.port: another free port
        assert cfg.serve.port != running
        with pytest.raises(
            ServingError,
            match=rf"already runs .* at 127\.0\.0\.1:{running} .* serve\.port: {running}",
        ):
            serve_app(cfg, cfg.tracking.uri)
    finally:
        serve.shutdown()
