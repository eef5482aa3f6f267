"""The report's SVG charts: well-formed XML, the Pareto front by definition, labels escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from thresher import svg


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (0.5, 0.2)]
    assert svg.pareto_front(pts) == [(0.5, 0.2), (1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]
    rng = np.random.default_rng(0)
    many = [tuple(x) for x in rng.random((50, 2))]
    front = svg.pareto_front(many)
    for x, y in many:  # every point is dominated by (or is) a front point
        assert any(fx <= x and fy >= y for fx, fy in front)
    for fx, fy in front:  # no front point is strictly dominated
        assert not any(x <= fx and y >= fy and (x, y) != (fx, fy) for x, y in many)


def test_charts_are_well_formed_and_escape_labels():
    charts = [
        svg.line_chart({"a<b": ([1, 2, 3], [3.0, 2.0, 1.5]), "c": ([1, 2], [1.0, float("nan")])}, "t&t", "x", "y"),
        svg.scatter([(0.1, 0.5, "random"), (0.3, 0.7, "knn & co")], "acc", "cost", "top-1"),
        svg.histograms({"m": [0.0, 0.1, 0.1, 2.0], "empty": []}, "h", "score"),
        svg.bars(["class <1>", "b"], [0.3, 0.7], "bars", "share"),
        svg.scatter([], "nothing", "x", "y"),
    ]
    for c in charts:
        root = ET.fromstring(c)
        assert root.tag.endswith("svg")
    assert "a&lt;b" in charts[0] and "knn &amp; co" in charts[1]
