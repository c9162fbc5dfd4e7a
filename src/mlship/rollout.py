"""Roll a new image out with kubectl: set image, wait for the rollout, smoke-test through
the Service from inside the cluster, and undo the rollout on any failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
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

    def __call__(
        self, *args: str, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, "--namespace", self.namespace, *args],
                capture_output=True, text=True, timeout=timeout, check=False, input=stdin,
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
    prediction = answer.get("prediction", {})
    said = prediction.get("label", prediction.get("prediction"))  # classification | regression
    if not answer.get("ready"):
        return Step("smoke", False, "/ready did not answer 200")
    if said is None:
        return Step("smoke", False, f"/predict gave no label or prediction: {prediction}")
    if served != version:
        return Step("smoke", False, f"/model serves version {served}, expected {version}")
    return Step("smoke", True, f"/ready ok, /predict -> {said}, /model version {served}")


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


# --- canary: Istio weights 10 -> 50 -> 100, Prometheus checks between steps ----------------

CANARY_STEPS = (10, 50, 100)


@dataclass(frozen=True)
class CanaryBudget:
    max_error_ratio: float
    max_p99_ms: float
    settle_seconds: float


class Prometheus:
    """The query API of Prometheus (GKE Managed Prometheus exposes the same one)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def value(self, query: str) -> float | None:
        import httpx

        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=10)
            answer.raise_for_status()
            result = answer.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            raise InputError(f"Prometheus at {self.url}: {error}") from error
        if not result:
            return None
        number = float(result[0]["value"][1])
        return None if number != number else number  # NaN: no traffic to judge


def canary_queries(namespace: str, deployment: str) -> tuple[str, str]:
    pods = f'namespace="{namespace}",pod=~"{deployment}-canary-.*"'
    errors = (
        f'sum(rate(http_requests_total{{{pods},status=~"5.."}}[2m]))'
        f" / sum(rate(http_requests_total{{{pods}}}[2m]))"
    )
    p99 = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(prediction_latency_seconds_bucket{{{pods}}}[2m])))"
    )
    return errors, p99


def canary_manifest(stable: dict[str, Any], image: str, container: str) -> dict[str, Any]:
    """A one-replica copy of the stable Deployment, labelled track=canary, on the new image."""
    name = f"{stable['metadata']['name']}-canary"
    spec = json.loads(json.dumps(stable["spec"]))
    spec["replicas"] = 1
    spec["selector"]["matchLabels"]["track"] = "canary"
    spec["template"]["metadata"]["labels"]["track"] = "canary"
    for item in spec["template"]["spec"]["containers"]:
        if item["name"] == container:
            item["image"] = image
    labels = {**stable["metadata"].get("labels", {}), "track": "canary"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels}, "spec": spec}  # fmt: skip


def _weights(kubectl: Kubectl, target: Target, canary: int) -> subprocess.CompletedProcess[str]:
    route = [
        {"destination": {"host": target.service, "subset": "stable"}, "weight": 100 - canary},
        {"destination": {"host": target.service, "subset": "canary"}, "weight": canary},
    ]
    patch = {"spec": {"http": [{"name": "primary", "route": route}]}}
    return kubectl("patch", f"virtualservice/{target.service}", "--type=merge",
                   "-p", json.dumps(patch))  # fmt: skip


def _rollout_status(
    kubectl: Kubectl, deployment: str, timeout_s: int
) -> subprocess.CompletedProcess[str]:
    return kubectl("rollout", "status", f"deployment/{deployment}", f"--timeout={timeout_s}s",
                   timeout=timeout_s + 30)  # fmt: skip


def canary_deploy(
    kubectl: Kubectl, target: Target, environment: str, image: str, version: str,
    prometheus: Prometheus, budget: CanaryBudget, rollout_timeout_s: int,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployReport:  # fmt: skip
    """Canary first; the stable Deployment takes the image only after every step passed.
    On a breach all traffic returns to stable and the canary Deployment is deleted."""
    report = DeployReport(environment, image, version)
    canary = f"{target.deployment}-canary"
    got = kubectl("get", f"deployment/{target.deployment}", "-o", "json")
    if got.returncode != 0:
        report.steps.append(Step("read stable deployment", False, _output(got)))
        return report
    manifest = canary_manifest(json.loads(got.stdout), image, target.container)
    done = kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    report.steps.append(Step("create canary", done.returncode == 0, _output(done)))
    if done.returncode == 0:
        done = _rollout_status(kubectl, canary, rollout_timeout_s)
        report.steps.append(Step("canary rollout", done.returncode == 0, _output(done)))
    errors_query, p99_query = canary_queries(target.namespace, target.deployment)
    for weight in CANARY_STEPS if report.steps[-1].ok else ():
        done = _weights(kubectl, target, weight)
        if done.returncode != 0:
            report.steps.append(Step(f"canary {weight}%", False, _output(done)))
            break
        sleep(budget.settle_seconds)
        errors, p99 = prometheus.value(errors_query), prometheus.value(p99_query)
        if errors is None or p99 is None:
            report.steps.append(Step(f"canary {weight}%", False,
                                     "no canary traffic in Prometheus: cannot judge"))  # fmt: skip
            break
        ok = errors <= budget.max_error_ratio and p99 * 1000 <= budget.max_p99_ms
        detail = (f"error ratio {errors:.4f} (max {budget.max_error_ratio}), "
                  f"p99 {p99 * 1000:.0f} ms (max {budget.max_p99_ms:.0f})")  # fmt: skip
        report.steps.append(Step(f"canary {weight}%", ok, detail))
        if not ok:
            break
    if report.ok:  # every step passed: the stable Deployment takes the new image
        stable = f"deployment/{target.deployment}"
        done = kubectl("set", "image", stable, f"{target.container}={image}")
        settled = _rollout_status(kubectl, target.deployment, rollout_timeout_s)
        ok = done.returncode == 0 and settled.returncode == 0
        report.steps.append(Step("promote to stable", ok, _output(settled)))
        if not ok and done.returncode == 0:
            undone = kubectl("rollout", "undo", stable)
            report.steps.append(
                Step("stable rollout undo", undone.returncode == 0, _output(undone))
            )
    back = _weights(kubectl, target, 0)
    removed = kubectl("delete", f"deployment/{canary}", "--ignore-not-found")
    cleaned = back.returncode == 0 and removed.returncode == 0
    if not report.ok:
        report.rolled_back = cleaned
    report.steps.append(Step("all traffic to stable, canary removed", cleaned,
                             f"{_output(back)}; {_output(removed)}"))  # fmt: skip
    return report
