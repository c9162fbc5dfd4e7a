"""Roll a new image out with kubectl: set image, wait for the rollout, smoke-test through
the Service and each new pod, and put the recorded image back on any failure. A rollout that
does not finish is explained as the cluster sees it (an image that cannot be pulled, a
server that exits at start, a readiness probe that never passes, a pod no node can take),
and one that does gives each new pod's time to Ready.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mlship.errors import InputError, ServiceError
from mlship.ship.canary import Verdict


@dataclass(frozen=True)
class Target:
    namespace: str
    deployment: str = "mlship"
    container: str = "server"
    service: str = "mlship"  # stable's; the canary's is <service>-canary
    port: str = "http"  # the Services' port name
    route: str = "mlship"  # the HTTPRoute that splits traffic between the two

    @property
    def canary_service(self) -> str:
        return f"{self.service}-canary"

    @property
    def canary(self) -> Target:
        """The canary Deployment and its Service, as a target of its own."""
        return Target(
            self.namespace,
            f"{self.deployment}-canary",
            self.container,
            self.canary_service,
            self.port,
            self.route,
        )


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class DeployReport:
    """What a deploy did. `rolled_back` is true only when the cluster was verified back on
    `previous_image`, the image recorded before anything was changed."""

    environment: str
    image: str
    expected_version: str
    previous_image: str | None = None
    previous_revision: str | None = None
    steps: list[Step] = field(default_factory=list)
    rolled_back: bool = False

    def step(self, name: str, done: subprocess.CompletedProcess[str]) -> bool:
        self.steps.append(Step(name, done.returncode == 0, _output(done)))
        return done.returncode == 0

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and not self.rolled_back

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def markdown(self) -> str:
        verdict = "deployed" if self.ok else ("ROLLED BACK" if self.rolled_back else "FAILED")
        lines = [
            f"## mlship deploy to {self.environment}: {verdict}",
            "",
            f"Image `{self.image}`, expected model version {self.expected_version}; "
            f"before: `{self.previous_image}` (revision {self.previous_revision}).",
            "",
            "| | step | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {'✅' if s.ok else '❌'} | {s.name} | {s.detail} |" for s in self.steps]
        return "\n".join(lines) + "\n"


class Kubectl:
    def __init__(self, namespace: str, binary: str = "kubectl", timeout: float = 120) -> None:
        self.namespace = namespace
        self.binary = binary
        self.timeout = timeout  # seconds for a call that does not say; a hung call ends here

    def __call__(
        self, *args: str, timeout: float | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, "--namespace", self.namespace, *args],
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
                check=False,
                input=stdin,
            )
        except FileNotFoundError as error:
            raise InputError(f"{self.binary}: not found on PATH") from error
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"kubectl {args[0]} timed out")


def expected_version(image: str) -> str | None:
    """The model version in an image tag made by `mlship image build` (<sha>-m<version>)."""
    match = re.search(r":[0-9a-f]+-m([0-9]+|local)$", image)
    return match.group(1) if match else None


def _output(done: subprocess.CompletedProcess[str]) -> str:
    """The last line kubectl printed, for the report: its error when it failed."""
    first, second = (done.stderr, done.stdout) if done.returncode else (done.stdout, done.stderr)
    text = first.strip() or second.strip()
    return text.splitlines()[-1] if text else f"exit {done.returncode}"


def _call(
    kubectl: Kubectl, base: str, path: str, body: dict[str, Any] | None = None
) -> tuple[Any, str | None]:
    """GET (or POST `body`) through the API server's proxy at `base`: the JSON answer, or
    what went wrong."""
    if body is None:
        done = kubectl("get", "--raw", f"{base}{path}", timeout=30)
    else:
        done = kubectl(
            "create", "--raw", f"{base}{path}", "-f", "-", timeout=30, stdin=json.dumps(body)
        )
    if done.returncode != 0:
        return None, f"{path}: {_output(done)}"
    try:
        return json.loads(done.stdout), None
    except json.JSONDecodeError:
        return None, f"{path}: not JSON: {done.stdout[:200]}"


def smoke(
    kubectl: Kubectl,
    target: Target,
    row: dict[str, Any],
    version: str,
    pods: list[PodState] | None = None,
) -> Step:
    """Through the API server's proxy to the Service — so through its endpoints, to the pods
    that are Ready — /ready, one known request to /predict, and /model's version; then
    /model on each of `pods` (the new ReplicaSet's), so an old pod cannot answer for them."""
    base = f"/api/v1/namespaces/{kubectl.namespace}/services/{target.service}:{target.port}/proxy"

    def call(path: str, body: dict[str, Any] | None = None) -> tuple[Any, str | None]:
        return _call(kubectl, base, path, body)

    _, failed = call("/ready")
    if failed:
        return Step("smoke", False, f"not ready: {failed}")
    prediction, failed = call("/predict", row)
    if failed:
        return Step("smoke", False, failed)
    said = prediction.get("label", prediction.get("prediction"))  # classification | regression
    if said is None:
        return Step("smoke", False, f"/predict gave no label or prediction: {prediction}")
    described, failed = call("/model")
    if failed:
        return Step("smoke", False, failed)
    served = str(described.get("version"))
    if served != version:
        return Step("smoke", False, f"/model serves version {served}, expected {version}")
    for pod in pods or []:
        pod_base = f"/api/v1/namespaces/{kubectl.namespace}/pods/{pod.name}:{pod.port}/proxy"
        own, failed = _call(kubectl, pod_base, "/model")
        if failed:
            return Step("smoke", False, f"pod {pod.name}: {failed}")
        if str(own.get("version")) != version:
            return Step(
                "smoke",
                False,
                f"pod {pod.name} serves version {own.get('version')}, expected {version}",
            )
    checked = f"; /model on each new pod ({len(pods)})" if pods else ""
    return Step("smoke", True, f"/ready ok, /predict -> {said}, /model version {served}{checked}")


@dataclass(frozen=True)
class Running:
    """What a Deployment runs: its container's image and its revision."""

    image: str
    revision: str


def running(kubectl: Kubectl, target: Target, deployment: str | None = None) -> Running | str:
    """The Deployment's image and revision, or what kubectl said when it could not tell."""
    done = kubectl("get", f"deployment/{deployment or target.deployment}", "-o", "json")
    if done.returncode != 0:
        return _output(done)
    try:
        found = json.loads(done.stdout)
        containers = found["spec"]["template"]["spec"]["containers"]
        image = next(c["image"] for c in containers if c["name"] == target.container)
        revision = (
            found["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "?")
        )
    except (ValueError, KeyError, TypeError, StopIteration):
        return f"no container {target.container!r} in deployment/{target.deployment}"
    return Running(str(image), str(revision))


def restore(kubectl: Kubectl, target: Target, report: DeployReport, rollout_timeout_s: int) -> None:
    """Put the recorded image back (not "one revision back": a re-deploy of the running
    image makes no revision, so undo would go further back) and verify it runs."""
    resource = f"deployment/{target.deployment}"
    assert report.previous_image is not None
    now = running(kubectl, target)
    if not isinstance(now, Running) or now.image != report.previous_image:
        put_back = kubectl("set", "image", resource, f"{target.container}={report.previous_image}")
        if not report.step("restore recorded image", put_back):
            return
    settled = kubectl(
        "rollout",
        "status",
        resource,
        f"--timeout={rollout_timeout_s}s",
        timeout=rollout_timeout_s + 30,
    )
    after = running(kubectl, target)
    back = (
        settled.returncode == 0
        and isinstance(after, Running)
        and (after.image == report.previous_image)
    )
    report.rolled_back = back
    seen = after.image if isinstance(after, Running) else after
    report.steps.append(Step("verify recorded image", back, f"{_output(settled)}; running {seen}"))


def deploy(
    kubectl: Kubectl,
    target: Target,
    environment: str,
    image: str,
    version: str,
    row: dict[str, Any],
    rollout_timeout_s: int,
) -> DeployReport:
    """Record what runs, set the image, wait for the rollout, smoke-test; on any failure
    (an error, a timeout, an exception) put the recorded image back and verify it."""
    report = DeployReport(environment, image, version)
    before = running(kubectl, target)
    if not isinstance(before, Running):
        report.steps.append(Step("read deployment", False, before))
        return report  # nothing changed: nothing to undo
    report.previous_image, report.previous_revision = before.image, before.revision
    resource = f"deployment/{target.deployment}"
    wait = ("rollout", "status", resource, f"--timeout={rollout_timeout_s}s")
    try:
        changed = report.step(
            "set image", kubectl("set", "image", resource, f"{target.container}={image}")
        )
        if changed and report.step(
            "rollout status", kubectl(*wait, timeout=rollout_timeout_s + 30)
        ):
            pods = new_pods(kubectl, target)
            if isinstance(pods, str):
                report.steps.append(Step("new pods", False, pods))
            else:
                report.steps.append(ready_times(pods))
                report.steps.append(smoke(kubectl, target, row, version, pods))
        elif changed:  # why it did not finish, as the cluster tells it
            report.steps.append(diagnose(kubectl, target))
    except Exception as error:  # whatever went wrong, the cluster must end where it began
        report.steps.append(Step("deploy", False, f"{type(error).__name__}: {error}"))
    if all(step.ok for step in report.steps):
        return report
    restore(kubectl, target, report, rollout_timeout_s)
    return report


# --- what the new pods say ---------------------------------------------------------------


@dataclass(frozen=True)
class PodState:
    """One pod of a rollout, as the cluster reports it."""

    name: str
    port: int  # the server's container port
    ready: bool
    seconds_to_ready: float | None  # from creation to the Ready condition, in whole seconds
    problem: str | None  # why it is not Ready: waiting reason, last exit, probe, scheduling


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    if done.returncode != 0:
        raise InputError(_output(done))
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise InputError(f"kubectl answered no JSON: {done.stdout[:200]}") from error


def _time(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def new_pods(kubectl: Kubectl, target: Target) -> list[PodState] | str:
    """The pods of the Deployment's current revision (its newest ReplicaSet), or why they
    cannot be read."""
    try:
        deployment = _json(kubectl("get", f"deployment/{target.deployment}", "-o", "json"))
        revision = deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        sets = _json(kubectl("get", "replicasets", "-l", selector, "-o", "json"))["items"]
        current = [
            rs
            for rs in sets
            if rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
            == revision
        ]
        if not current:
            return f"no ReplicaSet of revision {revision}"
        template = current[0]["metadata"]["labels"]["pod-template-hash"]
        found = _json(
            kubectl("get", "pods", "-l", f"{selector},pod-template-hash={template}", "-o", "json")
        )["items"]
    except (InputError, KeyError, TypeError) as error:
        return f"cannot read the rollout's pods: {error}"
    return [_pod_state(kubectl, pod, target) for pod in found]


def _pod_state(kubectl: Kubectl, pod: dict[str, Any], target: Target) -> PodState:
    name = pod["metadata"]["name"]
    containers = pod["spec"]["containers"]
    server = next((c for c in containers if c["name"] == target.container), containers[0])
    port = next((int(p["containerPort"]) for p in server.get("ports", [])), 8000)
    conditions = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {}).get("status") == "True"
    seconds = None
    if ready and "lastTransitionTime" in conditions["Ready"]:
        created = pod["metadata"]["creationTimestamp"]
        seconds = _time(conditions["Ready"]["lastTransitionTime"]) - _time(created)
    problem = None if ready else _problem(kubectl, pod, conditions, target)
    return PodState(name, port, ready, seconds, problem)


def _problem(
    kubectl: Kubectl, pod: dict[str, Any], conditions: dict[str, Any], target: Target
) -> str:
    """Why a pod is not Ready, in the cluster's words: not scheduled (and why), a container
    waiting (ImagePullBackOff, CrashLoopBackOff: with its last exit and log line), or
    running with its readiness probe failing (the probe's last message and log line)."""
    name = pod["metadata"]["name"]
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False":
        return f"Pending: {scheduled.get('reason', '')}: {scheduled.get('message', '')}".strip()
    statuses = pod.get("status", {}).get("containerStatuses", [])
    status = next((c for c in statuses if c["name"] == target.container), None)
    if status is None:
        return f"{pod.get('status', {}).get('phase', 'Pending')}: no container started yet"
    waiting = status.get("state", {}).get("waiting")
    last = status.get("lastState", {}).get("terminated")
    said = ""
    if last is not None:
        said = f"last exit {last.get('exitCode')} ({last.get('reason', '')}), "
        said += f"restarted {status.get('restartCount', 0)} times"
        line = _last_log_line(kubectl, name, previous=True)
        if line:
            said += f"; its last log line: {line}"
    if waiting is not None:
        reason = f"{waiting.get('reason', 'Waiting')}: {waiting.get('message', '')}".rstrip(": ")
        return f"{reason}; {said}" if said else reason
    probe = _last_event(kubectl, name, "Unhealthy")
    line = _last_log_line(kubectl, name, previous=False)
    found = "running, not Ready"
    if probe:
        found += f": {probe}"
    if line:
        found += f"; its last log line: {line}"
    return f"{found}; before this start: {said}" if said else found


def _last_event(kubectl: Kubectl, pod: str, reason: str) -> str | None:
    done = kubectl(
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={pod},reason={reason}",
        "-o",
        "json",
    )
    try:
        events = _json(done)["items"]
    except (InputError, KeyError, TypeError):
        return None
    if not events:
        return None
    latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return str(latest.get("message", "")).strip() or None


def _last_log_line(kubectl: Kubectl, pod: str, previous: bool) -> str | None:
    """The container's last line that names an error, else its last line."""
    args = ["logs", pod, "--tail=20"] + (["--previous"] if previous else [])
    done = kubectl(*args, timeout=30)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return None
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines)[-1][:300]


def ready_times(pods: list[PodState]) -> Step:
    """Each new pod's time from creation to Ready."""
    times = [
        f"{pod.name} {pod.seconds_to_ready:.0f} s"
        for pod in pods
        if pod.seconds_to_ready is not None
    ]
    return Step("pods ready", bool(pods), "; ".join(times) or "no new pod")


def diagnose(kubectl: Kubectl, target: Target) -> Step:
    """Why the rollout did not finish: each new pod that is not Ready, and why."""
    pods = new_pods(kubectl, target)
    if isinstance(pods, str):
        return Step("diagnose", False, pods)
    stuck = [f"{pod.name}: {pod.problem}" for pod in pods if not pod.ready]
    return Step("diagnose", False, "; ".join(stuck) or "every new pod is Ready")


# --- canary: the HTTPRoute's weights 10 -> 50, each step judged (ship/canary.py), then stable
# promoted ---------------------------------------------------------------------------------

# the canary's shares of traffic, each judged before the next; after the last, the stable
# Deployment takes the image at its full size and all traffic goes back to it: the one
# canary replica never takes all of it
CANARY_STEPS = (10, 50)


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
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def _weights(kubectl: Kubectl, target: Target, canary: int) -> subprocess.CompletedProcess[str]:
    """The HTTPRoute's split set to 100 - canary / canary. A JSON patch whose tests check
    that the first rule's backends are stable's Service then the canary's: a route edited
    into another shape is refused, never re-weighted blindly."""
    rule = "/spec/rules/0/backendRefs"
    patch = [
        {"op": "test", "path": f"{rule}/0/name", "value": target.service},
        {"op": "test", "path": f"{rule}/1/name", "value": target.canary_service},
        {"op": "replace", "path": f"{rule}/0/weight", "value": 100 - canary},
        {"op": "replace", "path": f"{rule}/1/weight", "value": canary},
    ]
    return kubectl("patch", f"httproute/{target.route}", "--type=json", "-p", json.dumps(patch))


def _rollout_status(
    kubectl: Kubectl, deployment: str, timeout_s: int
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "rollout",
        "status",
        f"deployment/{deployment}",
        f"--timeout={timeout_s}s",
        timeout=timeout_s + 30,
    )


def canary_deploy(
    kubectl: Kubectl,
    target: Target,
    environment: str,
    image: str,
    version: str,
    row: dict[str, Any],
    analyse: Callable[[], Verdict],
    rollout_timeout_s: int,
) -> DeployReport:
    """Canary first, smoke-tested (its Service and each pod's /model version); the stable
    Deployment takes the image, at its full size, only after every step passed. Whatever
    happens — a breach, Prometheus failing, an exception — all traffic returns to stable, and
    stable is verified on its recorded image unless the new one was promoted and settled.
    The canary Deployment is deleted only once the HTTPRoute is read back at 100/0: while
    traffic may still reach it, it keeps its pods, and no rollback is claimed."""
    report = DeployReport(environment, image, version)
    got = kubectl("get", f"deployment/{target.deployment}", "-o", "json")
    before = running(kubectl, target) if got.returncode == 0 else _output(got)
    if not isinstance(before, Running):
        report.steps.append(Step("read stable deployment", False, before))
        return report
    report.previous_image, report.previous_revision = before.image, before.revision
    promoted = False
    try:
        if _canary_steps(
            kubectl,
            target,
            image,
            version,
            row,
            analyse,
            rollout_timeout_s,
            json.loads(got.stdout),
            report,
        ):
            stable = f"deployment/{target.deployment}"
            promoted = report.step(
                "promote to stable", kubectl("set", "image", stable, f"{target.container}={image}")
            ) and report.step(
                "stable rollout", _rollout_status(kubectl, target.deployment, rollout_timeout_s)
            )
            if promoted:
                checked = _smoke_new_pods(kubectl, target, row, version)
                report.steps.append(checked)
                promoted = checked.ok
    except Exception as error:  # the cluster must end in a known state whatever happened
        report.steps.append(Step("canary", False, f"{type(error).__name__}: {error}"))
    finally:
        traffic_back = _traffic_to_stable(kubectl, target, report)
    if not promoted:
        restore(kubectl, target, report, rollout_timeout_s)
    report.rolled_back = report.rolled_back and traffic_back
    return report


def _smoke_new_pods(kubectl: Kubectl, target: Target, row: dict[str, Any], version: str) -> Step:
    """The smoke test on the pods of the Deployment's current revision."""
    pods = new_pods(kubectl, target)
    return (
        Step("new pods", False, pods)
        if isinstance(pods, str)
        else smoke(kubectl, target, row, version, pods)
    )


def _traffic_to_stable(kubectl: Kubectl, target: Target, report: DeployReport) -> bool:
    """Weights back to 100/0, read back from the HTTPRoute; only then the canary goes."""
    patched = _weights(kubectl, target, 0)
    now = read_weights(kubectl, target)
    if patched.returncode != 0 or now != (100, 0):
        seen = f"weights now {now[0]}/{now[1]}" if isinstance(now, tuple) else now
        report.steps.append(
            Step(
                "all traffic to stable",
                False,
                f"{_output(patched)}; {seen}; the canary is kept: it may still take traffic",
            )
        )
        return False
    removed = kubectl("delete", f"deployment/{target.deployment}-canary", "--ignore-not-found")
    report.step("all traffic to stable, canary removed", removed)
    return removed.returncode == 0


def read_weights(kubectl: Kubectl, target: Target) -> tuple[int, int] | str:
    """(stable, canary) weights of the HTTPRoute's split, or why not known. A backend with
    no weight has the Gateway API's default, 1."""
    done = kubectl("get", f"httproute/{target.route}", "-o", "json")
    if done.returncode != 0:
        return _output(done)
    try:
        backends = json.loads(done.stdout)["spec"]["rules"][0]["backendRefs"]
        weights = {b["name"]: int(b.get("weight", 1)) for b in backends}
        return weights[target.service], weights.get(target.canary_service, 0)
    except (ValueError, KeyError, IndexError, TypeError):
        return f"httproute/{target.route} has no rule to {target.service}"


def _canary_steps(
    kubectl: Kubectl,
    target: Target,
    image: str,
    version: str,
    row: dict[str, Any],
    analyse: Callable[[], Verdict],
    rollout_timeout_s: int,
    stable: dict[str, Any],
    report: DeployReport,
) -> bool:
    """Create the canary, smoke-test it and step its traffic share; True when every step
    passed."""
    manifest = canary_manifest(stable, image, target.container)
    if not report.step("create canary", kubectl("apply", "-f", "-", stdin=json.dumps(manifest))):
        return False
    canary = target.canary
    if not report.step(
        "canary rollout", _rollout_status(kubectl, canary.deployment, rollout_timeout_s)
    ):
        report.steps.append(diagnose(kubectl, canary))
        return False
    checked = _smoke_new_pods(kubectl, canary, row, version)
    report.steps.append(Step(f"canary {checked.name}", checked.ok, checked.detail))
    if not checked.ok:
        return False
    for weight in CANARY_STEPS:
        name = f"canary {weight}%"
        if not report.step(name, _weights(kubectl, target, weight)):
            return False
        try:
            verdict = analyse()
        except (InputError, ServiceError) as error:
            report.steps[-1] = Step(name, False, f"cannot judge: {error}")
            return False
        report.steps[-1] = Step(name, verdict.decision == "promote", str(verdict))
        if verdict.decision != "promote":
            return False
    return True
