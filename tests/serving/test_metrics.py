"""observe_many counts a regression model's answers as one observe per value would."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from mlship.serving.metrics import VALUE_BUCKETS, observe_many


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_observe_many_matches_observe_one_value_at_a_time() -> None:
    values = np.array(
        [
            -1e7,
            -5.0,
            -0.0,
            0.0,
            0.01,
            2.5,
            2.50001,
            1e6,
            2e6,
            12345.6,
            3.0,
            3.0,
            np.nan,
            np.inf,
            -np.inf,
        ]
    )
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("v", "v", ["m"], buckets=VALUE_BUCKETS, registry=one).labels("a")
    by_many = Histogram("v", "v", ["m"], buckets=VALUE_BUCKETS, registry=many).labels("a")
    for value in values[np.isfinite(values)]:
        by_one.observe(float(value))
    observe_many(by_many, values, VALUE_BUCKETS)
    observe_many(by_many, np.array([np.nan]), VALUE_BUCKETS)  # nothing finite: nothing counted
    assert _exposition(one) == _exposition(many)
    assert 'v_count{m="a"} 12.0' in _exposition(many)
