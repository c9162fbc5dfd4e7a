"""The canary's manifest (its verdict: test_canary_verdict.py). The canary itself runs
against the real control plane: tests/kube/test_canary.py and, with a real Prometheus,
tests/kube/test_canary_prometheus.py."""

from __future__ import annotations

from mlship.ship.rollout import canary_manifest

IMAGE = "127.0.0.1:5001/mlship:0123456789ab-m7"


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
