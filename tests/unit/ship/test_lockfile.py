"""What an image adds for a model beyond the server's lock: pinned, hashed, version-checked."""

from pathlib import Path

import pytest

from mlship.card import Features, ModelCard
from mlship.errors import InputError
from mlship.ship.lockfile import extra_requirements, read_lock
from tests.conftest import REPO

CARD = ModelCard(features=Features(numeric=("x",)), target="y")


def test_the_repositorys_locks_parse_with_their_hashes() -> None:
    served = read_lock(REPO / "requirements-serve.lock")
    assert "scikit-learn" in served and "lightgbm" not in served
    pinned = read_lock(REPO / "requirements.lock")
    assert pinned["lightgbm"].text.count("--hash=sha256:") >= 1
    assert pinned["lightgbm"].text.startswith(f"lightgbm=={pinned['lightgbm'].version} \\")


def test_a_lightgbm_model_adds_lightgbm_at_the_trained_version_only() -> None:
    version = read_lock(REPO / "requirements.lock")["lightgbm"].version
    card = CARD.updated(requirements={"lightgbm": version, "scikit-learn": "any"})
    extra = extra_requirements(card, REPO / "requirements-serve.lock", REPO / "requirements.lock")
    # numpy and scipy, which LightGBM needs, are in the server's lock already
    assert [pin.name for pin in extra] == ["lightgbm"]
    assert (
        extra_requirements(CARD, REPO / "requirements-serve.lock", REPO / "requirements.lock") == []
    )


def test_an_unpinned_or_other_version_is_refused() -> None:
    serve, full = REPO / "requirements-serve.lock", REPO / "requirements.lock"
    with pytest.raises(InputError, match=r"trained with lightgbm 0\.1, but"):
        extra_requirements(CARD.updated(requirements={"lightgbm": "0.1"}), serve, full)
    with pytest.raises(InputError, match=r"needs xgboost, which .* does not pin"):
        extra_requirements(CARD.updated(requirements={"xgboost": "3.0"}), serve, full)


def test_a_wheel_linking_openmp_asks_the_image_for_libgomp1(tmp_path: Path) -> None:
    import zipfile

    from mlship.ship.image import system_packages
    from mlship.ship.lockfile import Pin

    with zipfile.ZipFile(tmp_path / "fastboost-1.0-py3-none-manylinux_2_28_x86_64.whl", "w") as w:
        w.writestr("fastboost/lib.so", b"\x7fELF...libgomp.so.1\x00...")
    with zipfile.ZipFile(tmp_path / "plain-2.0-py3-none-any.whl", "w") as w:
        w.writestr("plain/__init__.py", b"")
    pins = [Pin("fastboost", "1.0", ""), Pin("plain", "2.0", "")]
    assert system_packages(pins, tmp_path) == ["libgomp1"]
    assert system_packages(pins[1:], tmp_path) == []


def test_only_the_wheels_the_locks_pin_are_staged(tmp_path: Path) -> None:
    from mlship.errors import CheckError
    from mlship.ship.image import locked_wheels

    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==6.0.2 \\\n    --hash=sha256:ab\nnumpy==2.0 \\\n    --hash=sha256:cd\n")
    cache = tmp_path / "wheels"
    cache.mkdir()
    names = [
        "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl",  # the name as published
        "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # 2.0 == 2.0.0
        "numpy-1.26.4-cp311-cp311-manylinux_2_28_x86_64.whl",  # another model's
        "lightgbm-4.6.0-py3-none-manylinux_2_28_x86_64.whl",
        "not-a-wheel.whl",
    ]
    for name in names:
        (cache / name).touch()
    extra = tmp_path / "requirements-extra.lock"
    extra.write_text("# nothing beyond the server\n")
    staged = locked_wheels([lock, extra], cache)
    assert [wheel.name for wheel in staged] == names[:2]
    (cache / names[0]).unlink()
    with pytest.raises(CheckError, match=r"no wheel in .* for pyyaml==6\.0\.2"):
        locked_wheels([lock], cache)
