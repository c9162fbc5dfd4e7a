"""Jenkins: the Jenkinsfile's stages read with a Groovy parser (groovy-parser, pure Python;
no Jenkins runs here), and the approver its `input` step exports.

A run is on Jenkins when JENKINS_URL is set; the `input` step's submitter is exported as
APPROVER (or the build user's id, BUILD_USER_ID)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlship.config.settings import Settings
from mlship.ship.ci.system import (
    SETUP_COMMANDS,
    STEP_NAMES,
    PipelineError,
    RunInfo,
    Steps,
    check_stray_make,
)
from mlship.ship.delivery import RETRAIN


class Jenkins:
    name: str = "jenkins"
    docs: str = "docs/ci/jenkins.md"
    pipelines: tuple[str, ...] = ("Jenkinsfile", ".ci/jenkins/*.Jenkinsfile")

    def detect(self, env: Mapping[str, str]) -> bool:
        return bool(env.get("JENKINS_URL"))

    def run_info(self, env: Mapping[str, str]) -> RunInfo:
        return RunInfo(env.get("APPROVER") or env.get("BUILD_USER_ID"), env.get("BUILD_URL", ""))

    def recorded_approver(self, env: Mapping[str, str], settings: Settings) -> str | None:
        return None  # the `input` step's submitter arrives as APPROVER

    def read_steps(self, path: Path) -> Steps:
        return read_jenkins_steps(path)


SYSTEM = Jenkins()


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

    tree: Any = parse_and_digest_groovy_content(source)
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
    stack: list[Block] = [root]
    head: list[tuple[str, str]] = []
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


def read_jenkins_steps(path: Path) -> Steps:
    root = groovy_blocks(groovy_leaves(path.read_text(encoding="utf-8")))
    found: Steps = []
    for stage in jenkins_leaf_stages(root):
        name = jenkins_stage_name(stage)
        tokens = stage.tokens()
        commands = jenkins_sh_commands(tokens)
        for command in commands:
            check_stray_make(f"{path.name} stage {name}", name, command)
        if any(word == "input" for _, word in tokens):
            found.append((name, None))
        elif name == RETRAIN.name and any(word == "build" for _, word in tokens):
            found.append((name, None))  # starts the delivery job
        elif name in STEP_NAMES:
            makes = [c for c in commands if c.startswith("make ") and c not in SETUP_COMMANDS]
            if len(makes) != 1:
                raise PipelineError(f"{path.name} stage {name}: {len(makes)} make calls, not 1")
            found.append((name, makes[0]))
        else:
            raise PipelineError(f"{path.name}: stage {name!r} is not a delivery step")
    return found
