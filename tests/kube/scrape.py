"""Prometheus discovering the app's pods through the test cluster's API server
(`kubernetes_sd_configs`, role pod) and scraping each server container's /metrics at its
pod address, every second — as GKE's Managed Prometheus does with the app's PodMonitoring:
every series labelled with its namespace, pod and track (stable or canary). Debian's
Prometheus is built without Kubernetes discovery: this one is Prometheus 3 built from its
Go module with that discovery alone (tests/kube/build.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mlship.ship.launch import free_port
from tests.kube.cluster import PROMETHEUS, TOKENS, Cluster
from tests.processes import running
from tests.prometheus.conftest import RealPrometheus


def config(cluster: Cluster, namespace: str, token_file: Path) -> dict[str, object]:
    relabel = [
        # the server pods' container port named http, as the PodMonitoring selects them
        {
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "regex": "server",
            "action": "keep",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": "http",
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_label_track"], "target_label": "track"},
    ]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "mlship",
                "metrics_path": "/metrics",
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "api_server": cluster.server,
                        "namespaces": {"names": [namespace]},
                        "tls_config": {"ca_file": str(cluster.ca)},
                        "authorization": {"credentials_file": str(token_file)},
                    }
                ],
                "relabel_configs": relabel,
            }
        ],
    }


@contextmanager
def scraping(cluster: Cluster, namespace: str, folder: Path) -> Iterator[RealPrometheus]:
    """Prometheus scraping `namespace`'s server pods until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    token = folder / "token"
    token.write_text(TOKENS["admin"][0])
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config(cluster, namespace, token)))
    port = free_port()
    command = [
        str(PROMETHEUS),
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/-/ready", ready_timeout=60, log=folder / "prometheus.log"):
        yield RealPrometheus(url)
