"""What the rollout reads from an image tag. The rollout itself runs against the real control
plane: tests/kube/test_deploy.py."""

from __future__ import annotations

from mlship.ship.rollout import expected_version


def test_versions_come_from_image_tags() -> None:
    assert expected_version("127.0.0.1:5001/mlship:0123456789ab-m7") == "7"
    assert expected_version("r/mlship:abcdef123456-mlocal") == "local"
    assert expected_version("r/mlship:latest") is None
