"""Every overlay and component renders with `kubectl kustomize`; core kinds validate
strictly against the stated Kubernetes version; CRDs and wiring are checked structurally."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.33.0"  # GKE's regular channel at the time of writing
CRD_KINDS = {
    "PodMonitoring",
    "Rules",
    "ServiceMonitor",
    "PrometheusRule",
    "Gateway",
    "HTTPRoute",
    "HealthCheckPolicy",
    "SparkApplication",
}


def render(tmp_path: Path, *components: str, base: str = "base") -> list[dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is required (its built-in kustomize renders the manifests)")
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"{rel}/{base}"],
                "components": [f"{rel}/components/{c}" for c in components],
            }
        )
    )
    done = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


VARIANTS = {
    "base": ("base", ()),
    "staging": ("overlays/staging", ()),
    "production": ("overlays/production", ()),
    "gpu": ("base", ("gpu",)),
    "servicemonitor": ("base", ("servicemonitor",)),
    "batch": ("base", ("batch",)),
    "spark": ("base", ("spark",)),
}


@pytest.fixture(params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    base, components = VARIANTS[request.param]
    return request.param, render(tmp_path, *components, base=base)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_core_kinds_validate_strictly(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_selectors_match_the_pods_and_names_line_up(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    deployment = by_kind(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(services["mlship"]["spec"]["selector"])  # stable's Service: stable's pods
    assert services["mlship-canary"]["spec"]["selector"]["track"] == "canary"
    assert not selects(services["mlship-canary"]["spec"]["selector"])
    assert selects(by_kind(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(by_kind(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    target = by_kind(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    monitors = [d for d in docs if d["kind"] in ("PodMonitoring", "ServiceMonitor")]
    assert len(monitors) == 1 and monitors[0]["spec"]["endpoints"][0]["port"] in ports


def test_the_pod_is_locked_down_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    # the only writable paths, each of bounded size: the feedback answers apart from /tmp
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp", "/var/lib/mlship"]
    assert all(v["emptyDir"]["sizeLimit"] for v in pod["volumes"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLSHIP_FEEDBACK_DB"].startswith("/var/lib/mlship/")
    assert pod["topologySpreadConstraints"] and pod["terminationGracePeriodSeconds"] >= 10


def test_autoscaling() -> None:
    hpa = yaml.safe_load((K8S / "base/hpa.yaml").read_text())
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}


@pytest.mark.parametrize("variant", ["base", "overlays/staging", "overlays/production"])
def test_every_client_comes_through_the_gateways_split(variant: str, tmp_path: Path) -> None:
    """No Ingress or Service of another type goes around the HTTPRoute: the Services are
    cluster-internal, the route's first rule splits between stable and canary (all to
    stable between canaries), https only (http redirects), the gateway's front ends let in."""
    docs = render(tmp_path, base=variant)
    assert not [d for d in docs if d["kind"] in ("Ingress", "VirtualService")]
    services = [d for d in docs if d["kind"] == "Service"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    gateway = by_kind(docs, "Gateway")
    assert gateway["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert listeners["https"]["tls"]["certificateRefs"][0]["name"]
    routes = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "HTTPRoute"}
    split = routes["mlship"]
    assert [p["sectionName"] for p in split["parentRefs"]] == ["https"]
    backends = split["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("mlship", 100), ("mlship-canary", 0)]
    redirect = routes["mlship-redirect"]
    assert [p["sectionName"] for p in redirect["parentRefs"]] == ["http"]
    assert "backendRefs" not in redirect["rules"][0]
    assert redirect["rules"][0]["filters"][0]["requestRedirect"]["scheme"] == "https"
    hosts = {listener["hostname"] for listener in listeners.values()}
    assert len(hosts) == 1 and all(r["hostnames"] == sorted(hosts) for r in routes.values())
    checked = {d["spec"]["targetRef"]["name"] for d in docs if d["kind"] == "HealthCheckPolicy"}
    assert checked == {s["metadata"]["name"] for s in services}
    policy = by_kind(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    blocks = {f["ipBlock"]["cidr"] for f in policy if "ipBlock" in f}
    assert {"35.191.0.0/16", "130.211.0.0/22"} <= blocks
    assert not any(f.get("podSelector") == {} for f in policy)  # no same-namespace way around


def test_overlays_set_namespace_and_replicas(tmp_path: Path) -> None:
    staging = render(tmp_path / "staging", base="overlays/staging")
    production = render(tmp_path / "production", base="overlays/production")
    assert {d["metadata"].get("namespace") for d in staging} == {"mlship-staging"}
    assert {d["metadata"].get("namespace") for d in production} == {"mlship-production"}
    assert by_kind(staging, "Deployment")["spec"]["replicas"] == 2
    assert by_kind(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    listeners = by_kind(staging, "Gateway")["spec"]["listeners"]
    assert {item["hostname"] for item in listeners} == {"staging.mlship.example.com"}


def test_gpu_component_requests_a_gpu(tmp_path: Path) -> None:
    pod = by_kind(render(tmp_path, "gpu"), "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "cloud.google.com/gke-accelerator" in pod["nodeSelector"]


def test_both_alert_rule_variants_agree(tmp_path: Path) -> None:
    managed = by_kind(render(tmp_path), "Rules")
    operator = yaml.safe_load((K8S / "components/servicemonitor/prometheusrule.yaml").read_text())
    assert managed["spec"] == operator["spec"]
    alerts = {r["alert"] for g in managed["spec"]["groups"] for r in g["rules"]}
    assert {"MlshipHighErrorRate", "MlshipHighP99Latency"} <= alerts


def test_dashboard_queries_only_metrics_that_exist() -> None:
    from mlship.serving.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    suffixes = ("total", "bucket", "sum", "count")
    exported |= {f"{name}_{suffix}" for name in exported for suffix in suffixes}
    dashboard = json.loads((K8S / "base/grafana-dashboard.json").read_text())
    rules = yaml.safe_load((K8S / "base/rules.yaml").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    for expr in exprs:
        for name in re.findall(r"\b([a-z_]+)(?=[{\[])", expr):
            if name.startswith("container_") or name in ("by", "rate", "sum", "increase", "offset"):
                continue
            assert name in exported, f"{name} in {expr!r} is not exported by the server"


def test_batch_scoring_runs_mlship_score_locked_down(tmp_path: Path) -> None:
    docs = render(tmp_path, "batch")
    job = by_kind(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["command"][:2] == ["mlship", "score"]
    assert (
        container["image"]
        == by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )  # the same image as the server
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    claim = job["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == by_kind(docs, "PersistentVolumeClaim")["metadata"]["name"]


def test_the_spark_application_runs_mlship_score_and_may_start_its_executors(
    tmp_path: Path,
) -> None:
    import typer.main

    from mlship.cli import app as cli

    docs = render(tmp_path, "spark")
    spec = by_kind(docs, "SparkApplication")["spec"]
    assert spec["mainApplicationFile"] == "local:///opt/mlship/score.py"
    assert (
        "COPY score.py entrypoint.sh /opt/mlship/"
        in (REPO / ".ci/spark/operator.Dockerfile").read_text()
    )
    from mlship.ship.lockfile import read_lock

    # the Spark the image is made of: the locked pyspark
    assert spec["sparkVersion"] == read_lock(REPO / "requirements.lock")["pyspark"].version
    # its arguments are `mlship score`'s options, as .ci/spark/score.py hands them on
    score = typer.main.get_command(cli).commands["score"]  # type: ignore[attr-defined]
    argv = ["--engine", "spark", "--model", "/opt/model", *spec["arguments"]]
    params = score.make_context("score", argv).params
    assert params["input_path"].startswith("gs://") and params["output_path"].startswith("gs://")
    assert "gcs-connector" in spec["sparkConf"]["spark.jars.packages"]
    account = spec["driver"]["serviceAccount"]
    assert account in {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    binding = next(
        d for d in docs if d["kind"] == "RoleBinding" and "spark" in d["metadata"]["name"]
    )
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    role = next(
        d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"]
    )
    pods = next(r for r in role["rules"] if "pods" in r["resources"])
    assert {"create", "delete", "watch"} <= set(pods["verbs"])
    for side in ("driver", "executor"):
        assert spec[side]["securityContext"]["runAsNonRoot"] is True
