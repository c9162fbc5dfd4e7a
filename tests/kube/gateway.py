"""The Gateway API's data plane for the test cluster: Traefik (built from source with the
cluster, tests/kube/build.sh) as a process on this host, implementing the app's Gateway and
HTTPRoutes (k8s/base/gateway.yaml) and proxying to the pods on the node's bridge by the
Services' EndpointSlices — as GKE's load balancer does with container-native load
balancing, where the weights of the HTTPRoute decide which Service a request goes to.

One Traefik per app namespace: it watches that namespace alone and serves the Gateway's
listeners on ports of its own, so apps of different tests never share a route. What GKE
does and this cannot (TLS with a certificate, host names in DNS) is patched out of the
rendered Gateway by `gateway_for_traefik`: each listener is plain HTTP on its entry point's
port, with no host name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from tests.kube.cluster import TOKENS, TRAEFIK_CACHE, Cluster, free_port, until
from tests.processes import running

CLASS = "traefik"
CONTROLLER = "traefik.io/gateway-controller"


@dataclass(frozen=True)
class Listeners:
    """The ports Traefik serves the Gateway's listeners on, by listener name."""

    https: int  # the clients' way in (plain HTTP here: no certificate)
    http: int  # the redirect to https

    @classmethod
    def free(cls) -> Listeners:
        return cls(free_port(), free_port())


@dataclass(frozen=True)
class DataPlane:
    url: str  # where clients send requests: the Gateway's https listener
    redirect_url: str  # its http listener


def install(cluster: Cluster) -> None:
    """The Gateway API's CRDs (the standard channel Traefik implements) and Traefik's
    GatewayClass, once per cluster."""
    cluster.kubectl("apply", "--server-side", "-f", str(TRAEFIK_CACHE / "gateway-api-crds.yaml"))
    for crd in ("gateways", "httproutes", "gatewayclasses"):
        until(partial(_established, cluster, crd), f"the {crd} CRD", cluster)
    cluster.apply(
        "apiVersion: gateway.networking.k8s.io/v1\n"
        "kind: GatewayClass\n"
        f"metadata: {{name: {CLASS}}}\n"
        f"spec: {{controllerName: {CONTROLLER}}}\n"
    )


def _established(cluster: Cluster, crd: str) -> bool:
    condition = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    read = cluster.kubectl(
        "get", f"crd/{crd}.gateway.networking.k8s.io", "-o", condition, check=False
    )
    return read.stdout == "True"


def gateway_for_traefik(document: dict[str, Any], listeners: Listeners) -> None:
    """The rendered Gateway or HTTPRoute as this data plane can serve it (the module's
    docstring); other documents are left alone."""
    spec = document.get("spec", {})
    if document["kind"] == "Gateway":
        spec["gatewayClassName"] = CLASS
        for listener in spec["listeners"]:
            listener["protocol"] = "HTTP"
            listener["port"] = getattr(listeners, listener["name"])
            listener.pop("tls", None)
            listener.pop("hostname", None)
    elif document["kind"] == "HTTPRoute":
        spec.pop("hostnames", None)


@contextmanager
def traefik(cluster: Cluster, namespace: str, listeners: Listeners) -> Iterator[DataPlane]:
    """Traefik serving `namespace`'s Gateway, until the block ends; ready once the Gateway
    says it is programmed."""
    ping = free_port()
    command = [
        str(TRAEFIK_CACHE / "traefik"),
        f"--entryPoints.https.address=127.0.0.1:{listeners.https}",
        f"--entryPoints.http.address=127.0.0.1:{listeners.http}",
        f"--entryPoints.ping.address=127.0.0.1:{ping}",
        "--ping.entryPoint=ping",
        "--providers.kubernetesgateway=true",
        # a changed route is taken up within 0.2 s (Traefik's default waits 2 s)
        "--providers.providersThrottleDuration=200ms",
        f"--providers.kubernetesgateway.endpoint={cluster.server}",
        f"--providers.kubernetesgateway.token={TOKENS['admin'][0]}",
        f"--providers.kubernetesgateway.certAuthFilePath={cluster.ca}",
        f"--providers.kubernetesgateway.namespaces={namespace}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
    ]
    log = cluster.folder / f"traefik-{namespace}.log"
    with running(command, f"http://127.0.0.1:{ping}/ping", ready_timeout=30, log=log):
        until(
            lambda: _programmed(cluster, namespace),
            f"Traefik programming the Gateway of {namespace}",
            cluster,
        )
        yield DataPlane(f"http://127.0.0.1:{listeners.https}", f"http://127.0.0.1:{listeners.http}")


def _programmed(cluster: Cluster, namespace: str) -> bool:
    condition = "jsonpath={.status.conditions[?(@.type=='Programmed')].status}"
    read = cluster.kubectl("-n", namespace, "get", "gateway/mlship", "-o", condition, check=False)
    return read.stdout == "True"


def answered_by(url: str, requests: int) -> dict[str, int]:
    """`requests` GETs of /model through the data plane: how many each model version
    answered (stable and canary serve different versions)."""
    counts: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(requests):
            answer = client.get("/model")
            key = str(answer.json()["version"]) if answer.status_code == 200 else "error"
            counts[key] = counts.get(key, 0) + 1
    return counts
