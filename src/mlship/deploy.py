"""Roll a new image out with kubectl: set image, wait for the rollout, smoke-test through
the Service from inside the cluster, and undo the rollout on any failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from mlship.errors import InputError

# Runs inside a pod of the same image (python3, no curl): ready, one known request, /model.
SMOKE_SCRIPT = """
import json, sys, urllib.request
base, row = sys.argv[1], json.loads(sys.argv[2])
def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as answer:
        return answer.status, json.loads(answer.read())
ready = get("/ready")[0] == 200
request = urllib.request.Request(base + "/predict", data=json.dumps(row).encode(),
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as answer:
    prediction = json.loads(answer.read())
print(json.dumps({"ready": ready, "prediction": prediction, "model": get("/model")[1]}))
"""


@dataclass(frozen=True)
class Target:
    namespace: str
    deployment: str = "mlship"
    container: str = "server"
    service: str = "mlship"


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class DeployReport:
    environment: str
    image: str
    expected_version: str
    steps: list[Step] = field(default_factory=list)
    rolled_back: bool = False

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and not self.rolled_back

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def markdown(self) -> str:
        verdict = "deployed" if self.ok else ("ROLLED BACK" if self.rolled_back else "FAILED")
        lines = [f"## mlship deploy to {self.environment}: {verdict}", "",
                 f"Image `{self.image}`, expected model version {self.expected_version}.", "",
                 "| | step | detail |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {'✅' if s.ok else '❌'} | {s.name} | {s.detail} |" for s in self.steps]
        return "\n".join(lines) + "\n"


class Kubectl:
    def __init__(self, namespace: str, binary: str = "kubectl") -> None:
        self.namespace = namespace
        self.binary = binary

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, "--namespace", self.namespace, *args],
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except FileNotFoundError as error:
            raise InputError(f"{self.binary}: not found on PATH") from error
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"kubectl {args[0]} timed out")


def expected_version(image: str) -> str | None:
    """The model version in an image tag made by `mlship image build` (<sha>-m<version>)."""
    match = re.search(r":[0-9a-f]+-m([0-9]+|local)$", image)
    return match.group(1) if match else None


def _output(done: subprocess.CompletedProcess[str]) -> str:
    """The last line kubectl printed, for the report."""
    text = done.stdout.strip() or done.stderr.strip()
    return text.splitlines()[-1] if text else f"exit {done.returncode}"


def smoke(kubectl: Kubectl, target: Target, image: str, row: dict[str, Any],
          version: str) -> Step:  # fmt: skip
    """One short-lived pod of the same image calls the Service: /ready, /predict, /model."""
    pod = f"{target.deployment}-smoke-{uuid.uuid4().hex[:8]}"
    security = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    overrides = {"spec": {"securityContext": security}}
    done = kubectl(
        "run", pod, f"--image={image}", "--restart=Never", "--rm", "-i", "--quiet",
        f"--overrides={json.dumps(overrides)}", "--command", "--",
        "python3", "-c", SMOKE_SCRIPT, f"http://{target.service}", json.dumps(row),
        timeout=180,
    )  # fmt: skip
    if done.returncode != 0:
        return Step("smoke", False, f"smoke pod failed: {_output(done)}")
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return Step("smoke", False, f"smoke pod printed no result: {_output(done)}")
    served = str(answer.get("model", {}).get("version"))
    label = answer.get("prediction", {}).get("label")
    if not answer.get("ready"):
        return Step("smoke", False, "/ready did not answer 200")
    if label is None:
        return Step("smoke", False, f"/predict gave no label: {answer.get('prediction')}")
    if served != version:
        return Step("smoke", False, f"/model serves version {served}, expected {version}")
    return Step("smoke", True, f"/ready ok, /predict -> {label}, /model version {served}")


def deploy(
    kubectl: Kubectl, target: Target, environment: str, image: str, version: str,
    row: dict[str, Any], rollout_timeout_s: int,
) -> DeployReport:  # fmt: skip
    report = DeployReport(environment, image, version)
    resource = f"deployment/{target.deployment}"
    done = kubectl("set", "image", resource, f"{target.container}={image}")
    report.steps.append(Step("set image", done.returncode == 0, _output(done)))
    if done.returncode != 0:
        return report  # nothing changed: nothing to undo
    done = kubectl("rollout", "status", resource, f"--timeout={rollout_timeout_s}s",
                   timeout=rollout_timeout_s + 30)  # fmt: skip
    report.steps.append(Step("rollout status", done.returncode == 0, _output(done)))
    if done.returncode == 0:
        report.steps.append(smoke(kubectl, target, image, row, version))
    if report.steps[-1].ok:
        return report
    undone = kubectl("rollout", "undo", resource)
    settled = kubectl("rollout", "status", resource, f"--timeout={rollout_timeout_s}s",
                      timeout=rollout_timeout_s + 30)  # fmt: skip
    report.rolled_back = undone.returncode == 0 and settled.returncode == 0
    report.steps.append(Step("rollout undo", report.rolled_back,
                             f"{_output(undone)}; {_output(settled)}"))  # fmt: skip
    return report
