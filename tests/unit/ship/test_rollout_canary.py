"""The canary's pure parts: its verdict from Prometheus's figures and its manifest. The
canary itself runs against the real control plane: tests/kube/test_canary.py and, with a
real Prometheus, tests/kube/test_canary_prometheus.py."""

from __future__ import annotations

from mlship.ship.rollout import CanaryBudget, canary_manifest, judge_canary

IMAGE = "127.0.0.1:5001/mlship:0123456789ab-m7"
BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=0)


def test_a_canary_failing_every_request_reads_as_errors_not_as_missing_traffic() -> None:
    """Nothing scored means no latency series; the error ratio still decides."""
    assert judge_canary(1.0, None, BUDGET) == (False, "error ratio 1.0000 (max 0.01)")
    passed, why = judge_canary(0.0, None, BUDGET)
    assert not passed and "cannot judge its latency" in why
    no_traffic = (False, "no canary traffic in Prometheus: cannot judge")
    assert judge_canary(None, 0.01, BUDGET) == no_traffic
    assert judge_canary(0.005, 0.02, BUDGET) == (
        True,
        "error ratio 0.0050 (max 0.01), p99 20 ms (max 250)",
    )


def test_the_canary_manifest_never_overlaps_stable() -> None:
    stable = {
        "metadata": {"name": "mlship", "labels": {"a": "b"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"track": "stable"}},
            "template": {
                "metadata": {"labels": {"track": "stable"}},
                "spec": {"containers": [{"name": "server", "image": "old"}]},
            },
        },
    }
    made = canary_manifest(stable, IMAGE, "server")
    assert made["metadata"]["name"] == "mlship-canary" and made["spec"]["replicas"] == 1
    assert made["spec"]["selector"]["matchLabels"]["track"] == "canary"
    assert made["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "old"  # a copy
