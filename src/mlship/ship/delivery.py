"""The delivery's steps, in order: the one list GitHub Actions, Jenkins and Cloud Build run.

A step is one command a developer can also run locally (a `make` target, which may run
several of the vocabulary's stages: `make train` is ingest -> evaluate); each CI file names
it by the step's name (a GitHub step id, a Jenkins stage, a Cloud Build step id). The
approval has no command: each CI system holds the run there with its own mechanism (a
GitHub environment with required reviewers, a Jenkins `input`, a Cloud Build trigger with
approvalConfig). tests/ci checks that every CI file runs exactly these steps in this order.

The scheduled path (continuous training) runs `monitor` first: the drift of the live
model's sampled inputs and its live accuracy from feedback. When it says retrain, it hands
over to the delivery above (`retrain`: each CI starts its main pipeline), so a retrained
model reaches production only through the gate and a release manager's approval.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    command: str | None  # None: the approval, done natively by each CI system
    on_pull_request: bool  # pull requests stop after the gate; main runs every step


APPROVE = "approve"

STEPS: tuple[Step, ...] = (
    Step("test", "make check", on_pull_request=True),
    Step("train", "make train", on_pull_request=True),
    Step("gate", "make gate", on_pull_request=True),
    Step("register", "make register", on_pull_request=False),
    Step("build", "make image", on_pull_request=False),
    Step("push", "make push", on_pull_request=False),
    Step("loadtest", "make loadtest", on_pull_request=False),
    Step("deploy-staging", "make deploy ENV=staging", on_pull_request=False),
    Step(APPROVE, None, on_pull_request=False),
    # a canary: 10 % then 50 % of the Gateway's traffic, judged in Prometheus, then stable
    Step("deploy-production", "make deploy ENV=production CANARY=1", on_pull_request=False),
    Step("promote", "make promote", on_pull_request=False),
)


MONITOR = Step("monitor", "make monitor", on_pull_request=False)
RETRAIN = Step("retrain", None, on_pull_request=False)  # starts the delivery: STEPS


def scheduled_steps() -> tuple[Step, ...]:
    return (MONITOR, RETRAIN)


def pull_request_steps() -> tuple[Step, ...]:
    return tuple(stage for stage in STEPS if stage.on_pull_request)


def before_approval() -> tuple[Step, ...]:
    return STEPS[: [s.name for s in STEPS].index(APPROVE)]


def after_approval() -> tuple[Step, ...]:
    return STEPS[[s.name for s in STEPS].index(APPROVE) + 1 :]
