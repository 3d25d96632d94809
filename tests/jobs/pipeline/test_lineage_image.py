"""The lineage graph as the SVG image MLflow's artifact viewer draws (no Ray: a chain's dict)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from jobs.pipeline.lineage import mermaid, svg

CHAIN = {
    "raw_files": [
        {"path": "/data/a&b.csv", "sha256": "1" * 64},
        {"path": "/data/c.csv", "sha256": "2" * 64},
    ],
    "etl": {"run_id": "e" * 32},
    "dataset": {"digest": "d" * 64},
    "tune": {"run_id": "t" * 32},
    "best_trial": {"run_id": "b" * 32},
    "model": {"name": "credit", "version": 3},
    "deployments": [
        {"stage": "deploy", "run_id": "p" * 32},
        {"stage": "rollout", "run_id": "r" * 32},
    ],
}
NS = {"s": "http://www.w3.org/2000/svg"}


def test_the_svg_draws_every_node_and_edge_of_the_mermaid_graph_left_to_right():
    root = ET.fromstring(svg(CHAIN))  # well-formed: the file name's & is escaped
    nodes = {g.get("id"): g for g in root.iterfind("s:g[@class='node']", NS)}
    labels = {k: g.find("s:text", NS).text for k, g in nodes.items()}
    assert labels["raw0"] == f"a&b.csv sha256 {'1' * 12}"
    assert labels["model"] == "credit v3" and labels["deploy1"] == f"rollout {'r' * 8}"
    arrows = [line for line in mermaid(CHAIN).splitlines() if "-->" in line]
    edges = root.findall("s:line[@class='edge']", NS)
    assert len(edges) == len(arrows) == 8  # 2 raw files -> etl, 4 links, 2 deployments

    def x(node: str) -> float:
        return float(nodes[node].find("s:rect", NS).get("x"))

    order = ["raw0", "etl", "dataset", "tune", "trial", "model", "deploy0"]
    assert [x(n) for n in order] == sorted(x(n) for n in order)  # one column per step
    assert x("raw0") == x("raw1") and x("deploy0") == x("deploy1")
    for edge in edges:  # each edge ends where a box starts: on some node's left side
        assert any(float(edge.get("x2")) == x(n) for n in nodes)
