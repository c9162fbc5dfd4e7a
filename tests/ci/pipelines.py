"""Read the delivery stages each CI file runs, in order, as (stage name, command) pairs.

The approval is ("approve", None) wherever the CI holds the run for a person. A `make` call
outside a stage is an error unless it is setup (SETUP_COMMANDS): CI files hold no logic of
their own, so a stray `make` is a stage someone forgot to name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlship.ship.delivery import APPROVE, RETRAIN, STEPS, scheduled_steps

STAGE_NAMES = {stage.name for stage in (*STEPS, *scheduled_steps())}
SETUP_COMMANDS = {"make pull"}  # restores a release's pipeline outputs before production
Stages = list[tuple[str, str | None]]


class PipelineError(AssertionError):
    pass


def _check_stray_make(where: str, step_id: str | None, command: str) -> None:
    stray = step_id not in STAGE_NAMES and command not in SETUP_COMMANDS
    if command.startswith("make ") and stray:
        raise PipelineError(f"{where}: `{command}` runs outside a named stage")


# --- GitHub Actions -------------------------------------------------------------------------


def github_jobs_in_order(workflow: dict[str, Any]) -> list[str]:
    jobs: dict[str, Any] = workflow["jobs"]
    ordered: list[str] = []
    while len(ordered) < len(jobs):
        ready = [
            name
            for name, job in jobs.items()
            if name not in ordered and set(_as_list(job.get("needs"))) <= set(ordered)
        ]
        if not ready:
            raise PipelineError("jobs' `needs` form a cycle")
        ordered.append(ready[0])
    return ordered


def _as_list(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def github_stages(path: Path) -> Stages:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: Stages = []
    for job_name in github_jobs_in_order(workflow):
        job = workflow["jobs"][job_name]
        environment = job.get("environment")
        name = environment.get("name") if isinstance(environment, dict) else environment
        if name == "production":  # required reviewers hold the job until one approves
            found.append((APPROVE, None))
        if job_name == RETRAIN.name:  # hands over to the delivery workflow it calls
            found.append((RETRAIN.name, None))
        for step in job.get("steps", []):
            command = " ".join(str(step.get("run", "")).split())
            _check_stray_make(f"{path.name} job {job_name}", step.get("id"), command)
            if step.get("id") in STAGE_NAMES:
                found.append((step["id"], command))
    return found


# --- Cloud Build ----------------------------------------------------------------------------


def cloudbuild_stages(path: Path) -> Stages:
    """Step steps run `make` as their entrypoint; the approval step runs the trigger whose
    approvalConfig holds the production build (checked by the tests)."""
    found: Stages = []
    for step in yaml.safe_load(path.read_text(encoding="utf-8"))["steps"]:
        command = " ".join([step.get("entrypoint", ""), *map(str, step.get("args", []))]).strip()
        _check_stray_make(f"{path.name}", step.get("id"), command)
        if step.get("id") in (APPROVE, RETRAIN.name):  # each runs another trigger
            found.append((step["id"], None))
        elif step.get("id") in STAGE_NAMES:
            found.append((step["id"], command))
    return found


# --- Jenkins --------------------------------------------------------------------------------


@dataclass
class Block:
    """A Groovy call with a closure: `head` is the parser's tokens before `{`."""

    head: list[tuple[str, str]]
    children: list[Block] = field(default_factory=list)

    def walk(self) -> list[Block]:
        return [self, *(b for child in self.children for b in child.walk())]

    def find(self, name: str) -> list[Block]:
        return [block for block in self.walk() if call_name(block) == name]

    def tokens(self) -> list[tuple[str, str]]:
        return [*self.head, *(t for child in self.children for t in child.tokens())]


def call_name(block: Block) -> str | None:
    """`stage('x') {` -> stage; `withCredentials([...]) {` -> withCredentials."""
    if block.head and block.head[0][0].endswith("IDENTIFIER"):
        return block.head[0][1]
    return None


@functools.cache
def groovy_leaves(source: str) -> list[tuple[str, str]]:
    """The Groovy parser's tokens in order (comments dropped, strings unquoted)."""
    from groovy_parser.parser import parse_and_digest_groovy_content

    tree = parse_and_digest_groovy_content(source)
    leaves: list[tuple[str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        if "leaf" in node:
            leaves.append((node["leaf"], node["value"]))
        for child in node.get("children", []):
            walk(child)

    walk(tree)
    return leaves


def groovy_blocks(leaves: list[tuple[str, str]]) -> Block:
    root = Block(head=[])
    stack, head = [root], []
    for kind, value in leaves:
        if kind == "LBRACE":
            start = _statement_start(head)
            if start:  # earlier statements of this block, without closures of their own
                stack[-1].children.append(Block(head=head[:start]))
            block = Block(head=head[start:])
            stack[-1].children.append(block)
            stack.append(block)
            head = []
        elif kind == "RBRACE":
            if head:
                stack[-1].children.append(Block(head=head))
            stack.pop()
            head = []
        else:
            head.append((kind, value))
    return root


def _statement_start(head: list[tuple[str, str]]) -> int:
    """Where the statement that opens `{` starts: statements run together in the token
    stream, so it is the last identifier at depth 0 that does not continue an expression."""
    depth, start = 0, 0
    for i, (kind, _) in enumerate(head):
        if kind in ("LPAREN", "LBRACK"):
            depth += 1
        elif kind in ("RPAREN", "RBRACK"):
            depth -= 1
        elif (
            depth == 0
            and kind.endswith("IDENTIFIER")
            and (i == 0 or head[i - 1][0] not in ("DOT", "ASSIGN", "COLON", "COMMA"))
        ):
            start = i
    return start


def strings(tokens: list[tuple[str, str]]) -> list[str]:
    return [value for kind, value in tokens if kind == "STRING_LITERAL"]


def jenkins_sh_commands(tokens: list[tuple[str, str]]) -> list[str]:
    """`sh 'cmd'`, and `sh(script: 'cmd', ...)` (which returns the exit status)."""
    found = []
    for i, (kind, word) in enumerate(tokens):
        if kind != "IDENTIFIER" or word != "sh":
            continue
        after = tokens[i + 1 : i + 5]
        if after and after[0][0] == "STRING_LITERAL":
            found.append(after[0][1])
        elif [w for _, w in after[:3]] == ["(", "script", ":"] and len(after) == 4:
            found.append(after[3][1])
    return found


def jenkins_leaf_stages(root: Block) -> list[Block]:
    """stage('x') blocks that hold steps, not other stages, in file order."""
    stages = root.find("stage")
    return [s for s in stages if not any(inner is not s for inner in s.find("stage"))]


def jenkins_stage_name(stage: Block) -> str:
    return strings(stage.head)[0]


def jenkins_stages(path: Path) -> Stages:
    root = groovy_blocks(groovy_leaves(path.read_text(encoding="utf-8")))
    found: Stages = []
    for stage in jenkins_leaf_stages(root):
        name = jenkins_stage_name(stage)
        tokens = stage.tokens()
        commands = jenkins_sh_commands(tokens)
        for command in commands:
            _check_stray_make(f"{path.name} stage {name}", name, command)
        if any(word == "input" for _, word in tokens):
            found.append((name, None))
        elif name == RETRAIN.name and any(word == "build" for _, word in tokens):
            found.append((name, None))  # starts the delivery job
        elif name in STAGE_NAMES:
            makes = [c for c in commands if c.startswith("make ") and c not in SETUP_COMMANDS]
            if len(makes) != 1:
                raise PipelineError(f"{path.name} stage {name}: {len(makes)} make calls, not 1")
            found.append((name, makes[0]))
        else:
            raise PipelineError(f"{path.name}: stage {name!r} is not a delivery stage")
    return found
