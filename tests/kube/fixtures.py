"""What one session shares across tests/kube and tests/e2e: the Docker engine and the test
registry, the real cluster (the control plane of tests/kube/cluster.py and the node of
tests/kube/node.py), and the serving image its pods run — built once per session by
`mlship image build` from examples/taxi (XGBoost: the image carries the model's extra
dependency from the lock) and pushed to the registry. A plugin (tests/conftest.py's
pytest_plugins), not conftest fixtures imported twice: those would be two definitions, so
two clusters running side by side for the rest of the session."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from mlship.errors import ServiceError
from mlship.pipeline import signatures
from mlship.ship import image, supply_chain
from tests.integration.conftest import BIN
from tests.keys import key_pair
from tests.kube import gateway
from tests.kube import node as nodes
from tests.kube.cluster import Cluster, ensure_built, start
from tests.kube.images import Reference, retag, with_files
from tests.tools import unavailable

# a throw-away registry for test images; never the deployment's MLSHIP_REGISTRY
REGISTRY = os.environ.get("MLSHIP_TEST_REGISTRY", "127.0.0.1:5001")


def docker_unavailable(why: str) -> NoReturn:
    if os.environ.get("MLSHIP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"required here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def engine() -> Any:
    try:
        return image.engine()
    except ServiceError as error:  # a Docker CLI without an engine is no engine
        docker_unavailable(str(error))


@pytest.fixture(scope="session")
def registry(engine: Any) -> str:
    """The test registry (MLSHIP_TEST_REGISTRY, default 127.0.0.1:5001), answering."""
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        docker_unavailable(f"no registry answers at {REGISTRY} (MLSHIP_TEST_REGISTRY): {error}")
    return REGISTRY


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The control plane and its node, Ready."""
    try:
        ensure_built()
    except (OSError, subprocess.CalledProcessError) as error:
        unavailable(f"the Kubernetes binaries cannot be built (tests/kube/build.sh): {error}")
    if os.geteuid() != 0:
        unavailable("the node (containerd, a CNI bridge) needs root")
    missing = nodes.host_tools()
    if missing:
        unavailable(f"the node needs {', '.join(missing)} (.ci/run installs them)")
    folder = tmp_path_factory.mktemp("kube")
    started = start(folder / "control-plane")
    try:
        started.node = nodes.start(started, folder / "node")
        try:
            yield started
        finally:
            started.node.stop()
    finally:
        started.stop()


@dataclass(frozen=True)
class ServedImage:
    """The session's serving image: examples/taxi's model as the pipeline makes it — trained,
    gated, registered as version 1 in the checkout's MLflow store (signed there with the
    session's CI key) — built and pushed."""

    reference: Reference
    card: dict[str, Any]  # the model card baked in
    project: Path  # the checkout it was built in: params, splits, MLflow store
    signing_key: Path  # the CI's private key (PEM)
    trusted_keys: Path  # its public key: what the deployer and the servers trust

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.project / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def served_image(tmp_path_factory: pytest.TempPathFactory, registry: str) -> ServedImage:
    from tests.e2e.conftest import checkout, commit, run

    keys = tmp_path_factory.mktemp("signing-keys")
    _, trusted_keys = key_pair(keys, "ci")
    root = tmp_path_factory.mktemp("served-image") / "repo"
    env = checkout(root, example="taxi")
    env |= {"MLSHIP_SIGNING_KEY": str(keys / "ci.pem"), "MLSHIP_TRUSTED_KEYS": str(trusted_keys)}
    commit(root, env)
    run(root, env, "dvc", "repro")
    for stage in (("gate",), ("register",), ("image", "build"), ("image", "push")):
        run(root, env, str(BIN / "mlship"), *stage)
    built = json.loads((root / "reports/image.json").read_text())
    card = json.loads((root / "models/model_card.json").read_text())
    reference = Reference.parse(built["references"][0])
    return ServedImage(reference, card, root, keys / "ci.pem", trusted_keys)


@dataclass(frozen=True)
class Images:
    """The session's serving image and the images made from it (tests/kube/images.py)."""

    running: Reference  # what each app starts on: the built image, version 1
    next: Reference  # the same model, a new build
    wrong_version: Reference  # tagged as version 2; its server says version 1
    missing: Reference  # a tag the registry does not have
    refused: Reference  # its model card trusts none of XGBoost's types: the server exits
    never_ready: Reference  # its card leaves out a feature: the model fails its warm-up
    second: Reference  # the same model registered as version 2 (a field the signature leaves out)
    slow: Reference  # version 2 whose server takes 300 ms more per scoring call
    forged: Reference  # a byte of its model file flipped, the signature left as it was
    unsigned: Reference  # its signature and provenance deleted (whiteouts in a layer on top)
    signing_key: Path  # the CI's private key they were signed with (PEM)
    trusted_keys: Path  # its public key


@pytest.fixture(scope="session")
def images(served_image: ServedImage, tmp_path_factory: pytest.TempPathFactory) -> Images:
    built = served_image.reference
    version = built.tag.rsplit("-m", 1)[1]
    # the model as the image holds it: the card with the registered version, signed
    baked = supply_chain.model_in_image(str(built), tmp_path_factory.mktemp("baked"))
    card = json.loads((baked / "model_card.json").read_text())
    features = card["features"]
    fewer = {**features, "numeric": [c for c in features["numeric"] if c != "hour"]}
    model = bytearray((baked / "model.skops").read_bytes())
    model[len(model) // 2] ^= 0xFF
    model_dir = "opt/model/"

    def signed_card(changed: dict[str, Any]) -> dict[str, bytes]:
        """The card changed and the model signed anew with the CI's key: a server that
        refuses it does so for the change, not for a signature."""
        (baked / "model_card.json").write_text(json.dumps({**card, **changed}))
        signature, provenance = resigned(baked, served_image.signing_key)
        return {
            f"{model_dir}model_card.json": (baked / "model_card.json").read_bytes(),
            f"{model_dir}{signatures.SIGNATURE_FILE}": signature,
            f"{model_dir}{signatures.PROVENANCE_FILE}": provenance,
        }

    second = {**card, "registry": {**card["registry"], "version": "2"}}
    second_card = {f"{model_dir}model_card.json": json.dumps(second).encode()}
    return Images(
        signing_key=served_image.signing_key,
        trusted_keys=served_image.trusted_keys,
        running=built,
        next=retag(built, f"fedcba987654-m{version}"),
        wrong_version=retag(built, f"fedcba987654-m{int(version) + 1}"),
        missing=built.tagged(f"000000000000-m{version}"),
        refused=with_files(built, f"0badca4d0000-m{version}", signed_card({"trusted_types": []})),
        never_ready=with_files(built, f"0badfea70000-m{version}", signed_card({"features": fewer})),
        second=with_files(built, "5ec0d0000000-m2", second_card),
        slow=with_files(built, "510e00000000-m2", second_card | SLOW_SERVER),
        forged=with_files(built, f"f0f9ed000000-m{version}", {f"{model_dir}model.skops": model}),
        unsigned=with_files(
            built,
            f"a05194ed0000-m{version}",
            {
                f"{model_dir}.wh.{name}": b""
                for name in (signatures.SIGNATURE_FILE, signatures.PROVENANCE_FILE)
            },
        ),
    )


# a module every Python process of the image loads at start (a .pth line that imports it),
# making each scoring call 300 ms slower: a model that answers right, but late
SITE_PACKAGES = "opt/venv/lib/python3.11/site-packages/"
SLOW_SERVER = {
    f"{SITE_PACKAGES}mlship_slow_for_tests.pth": b"import mlship_slow_for_tests\n",
    f"{SITE_PACKAGES}mlship_slow_for_tests.py": b"""
import time

from mlship.serving import model

_predict = model.ServedModel.predict


def _slow(self, columns):
    time.sleep(0.3)
    return _predict(self, columns)


model.ServedModel.predict = _slow
""",
}


def resigned(folder: Path, signing_key: Path) -> tuple[bytes, bytes]:
    """A new signature over the model in `folder`, and its provenance (the old one's
    predicate) for it."""
    key = signatures.load_private_key(str(signing_key), signing_key.read_bytes())
    statement = signatures.model_statement(signatures.directory_files(folder).digests())
    root = statement["subject"][0]["digest"]["sha256"]
    old = signatures.open_bundle(
        (folder / signatures.PROVENANCE_FILE).read_bytes(), [key.public_key()], str(folder)
    )
    provenance = signatures.provenance_statement(root, old["predicate"])
    return signatures.sign_statement(statement, key), signatures.sign_statement(provenance, key)


@pytest.fixture(scope="session")
def gateway_api(cluster: Cluster) -> None:
    """The Gateway API's CRDs and Traefik's GatewayClass (tests/kube/gateway.py)."""
    gateway.install(cluster)
