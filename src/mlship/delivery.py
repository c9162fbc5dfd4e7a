"""The delivery stages, in order: the one list GitHub Actions, Jenkins and Cloud Build run.

Each stage is one command a developer can also run locally. The approval has no command:
each CI system holds the run there with its own mechanism (a GitHub environment with
required reviewers, a Jenkins `input`, a Cloud Build trigger with approvalConfig).
tests/ci checks that every CI file runs exactly these stages in this order.
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
    Stage("test", "make test", on_pull_request=True),
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


def pull_request_stages() -> tuple[Stage, ...]:
    return tuple(stage for stage in STAGES if stage.on_pull_request)


def before_approval() -> tuple[Stage, ...]:
    return STAGES[: [s.name for s in STAGES].index(APPROVE)]


def after_approval() -> tuple[Stage, ...]:
    return STAGES[[s.name for s in STAGES].index(APPROVE) + 1 :]
