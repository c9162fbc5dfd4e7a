"""The bandit: Thompson sampling converges to the better version on a simulated stream of
feedback, keeps its exploration floor and cap, and is reproducible under a seed."""

from __future__ import annotations

import numpy as np

from mlship.serving.bandit import Bandit
from mlship.serving.feedback import Quality


def _quality(successes: int, rows: int) -> Quality:
    return Quality(rows, successes, successes / rows if rows else None, None)


def _simulate(
    bandit: Bandit, champion_rate: float, challenger_rate: float, seed: int
) -> list[float]:
    """Rounds of 200 requests routed by the bandit's share, each answer right with its
    version's rate; the posteriors are updated after each round."""
    rng = np.random.default_rng(seed)
    won = {"champion": [0, 0], "challenger": [0, 0]}  # successes, rows
    shares = []
    for _ in range(40):
        for _ in range(200):
            arm = "challenger" if rng.random() < bandit.share else "champion"
            rate = challenger_rate if arm == "challenger" else champion_rate
            won[arm][0] += int(rng.random() < rate)
            won[arm][1] += 1
        bandit.update(_quality(*won["champion"]), _quality(*won["challenger"]))
        shares.append(bandit.share)
    return shares


def test_it_converges_to_a_better_challenger() -> None:
    shares = _simulate(Bandit(floor=0.05, cap=0.95, seed=1), 0.70, 0.80, seed=2)
    assert shares[-1] == 0.95  # at the cap: the champion keeps its floor of 5%


def test_it_backs_away_from_a_worse_challenger_but_keeps_exploring() -> None:
    shares = _simulate(Bandit(floor=0.05, cap=0.95, seed=1), 0.80, 0.70, seed=3)
    assert shares[-1] == 0.05  # the floor: the challenger still gets 5% to learn from


def test_the_cap_limits_a_challenger_however_good() -> None:
    shares = _simulate(Bandit(floor=0.05, cap=0.3, seed=1), 0.5, 0.9, seed=4)
    assert max(shares) == 0.3


def test_a_seed_reproduces_the_run_and_equal_versions_share_on_average() -> None:
    first = _simulate(Bandit(floor=0.05, cap=0.95, seed=7), 0.75, 0.75, seed=5)
    assert first == _simulate(Bandit(floor=0.05, cap=0.95, seed=7), 0.75, 0.75, seed=5)
    # one run may settle on either version; over runs neither is favoured
    runs = [
        np.mean(_simulate(Bandit(floor=0.05, cap=0.95, seed=7), 0.75, 0.75, seed=s))
        for s in range(5, 12)
    ]
    assert 0.35 < float(np.mean(runs)) < 0.65


def test_with_no_feedback_both_start_even() -> None:
    bandit = Bandit(floor=0.05, cap=0.95, seed=0)
    assert bandit.share == 0.5
    assert abs(bandit.update(None, None) - 0.5) < 0.02
    assert bandit.describe()["posteriors"]["challenger"] == {"alpha": 1.0, "beta": 1.0, "mean": 0.5}
