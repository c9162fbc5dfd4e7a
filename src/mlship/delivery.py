"""The delivery stages, in order: the one list GitHub Actions, Jenkins and Cloud Build run.

Each stage is one command a developer can also run locally. The approval has no command:
each CI system holds the run there with its own mechanism (a GitHub environment with
required reviewers, a Jenkins `input`, a Cloud Build trigger with approvalConfig).
tests/ci checks that every CI file runs exactly these stages in this order.

The scheduled path (continuous training) runs `monitor` first: the drift of the live
model's sampled inputs and its live accuracy from feedback. When it says retrain, it hands
over to the delivery above (`retrain`: each CI starts its main pipeline), so a retrained
model reaches production only through the gate and a release manager's approval.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    command: str | None  # None: the approval, done natively by each CI system
    on_pull_request: bool  # pull requests stop after the gate; main runs every stage


APPROVE = "approve"

STAGES: tuple[Stage, ...] = (
    Stage("test", "make check", on_pull_request=True),
    Stage("train", "make train", on_pull_request=True),
    Stage("gate", "make gate", on_pull_request=True),
    Stage("register", "make register", on_pull_request=False),
    Stage("build", "make image", on_pull_request=False),
    Stage("push", "make push", on_pull_request=False),
    Stage("loadtest", "make loadtest", on_pull_request=False),
    Stage("deploy-staging", "make deploy ENV=staging", on_pull_request=False),
    Stage(APPROVE, None, on_pull_request=False),
    Stage("deploy-production", "make deploy ENV=production", on_pull_request=False),
    Stage("promote", "make promote", on_pull_request=False),
)


MONITOR = Stage("monitor", "make monitor", on_pull_request=False)
RETRAIN = Stage("retrain", None, on_pull_request=False)  # starts the delivery: STAGES


def scheduled_stages() -> tuple[Stage, ...]:
    return (MONITOR, RETRAIN)


def pull_request_stages() -> tuple[Stage, ...]:
    return tuple(stage for stage in STAGES if stage.on_pull_request)


def before_approval() -> tuple[Stage, ...]:
    return STAGES[: [s.name for s in STAGES].index(APPROVE)]


def after_approval() -> tuple[Stage, ...]:
    return STAGES[[s.name for s in STAGES].index(APPROVE) + 1 :]
