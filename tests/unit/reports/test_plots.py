"""The run report's pictures say what the numbers say: percentiles in order, both models
visible on the same rows, and a page that stays small however large the test set."""

from __future__ import annotations

import numpy as np

from mlship.reports import plots


def test_latency_percentiles_are_drawn_in_numeric_order() -> None:
    svg = plots.latency({"p100": 9.0, "p50": 1.0, "p99.9": 8.0, "p95": 3.0, "p99": 5.0})
    positions = [svg.index(f">{name}<") for name in ("p50", "p95", "p99", "p99.9", "p100")]
    assert positions == sorted(positions)


def test_a_large_scatter_is_thinned_to_the_same_rows_for_both_models() -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(100, 10, 10_000)
    candidate, champion = actual + rng.normal(0, 1, 10_000), actual + rng.normal(0, 2, 10_000)
    svg = plots.predicted_vs_actual(actual, candidate, champion)
    assert f"{plots.MAX_POINTS:,} of 10,000 rows" in svg
    assert len(svg) < 400_000  # all 10,000 points of both models took 3.2 MB
    both = plots.predicted_vs_actual(actual[:500], candidate[:500], champion[:500])
    assert "of 500 rows" not in both  # a small test set is drawn whole
    assert "champion" in both and "candidate" in both
