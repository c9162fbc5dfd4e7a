"""Where the pipeline runs: the environment (MLSHIP_* variables and MLflow's standard one)
read into Settings, frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlship.config.params import MODEL_NAME_PATTERN, Params
from mlship.errors import InputError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


class Settings(BaseSettings):
    """Where the pipeline runs. Read from MLSHIP_* variables (and MLflow's standard one)."""

    # env_ignore_empty: CI systems export unset secrets and variables as empty strings
    model_config = SettingsConfigDict(
        env_prefix="MLSHIP_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
    )

    tracking_uri: str = Field(
        default=DEFAULT_TRACKING_URI,
        description="the MLflow store; mlship's own name wins when both are set",
        validation_alias=AliasChoices("MLSHIP_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    experiment: str = Field(default="mlship", description="the MLflow experiment")
    model_name: str | None = Field(
        default=None, pattern=MODEL_NAME_PATTERN, description="overrides params.yaml's `name`"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG also shows the libraries' own notes"
    )
    # images
    registry: str = Field(default="127.0.0.1:5001", description="where images are pushed")
    image_name: str | None = Field(default=None, description="default: the model's name")
    base_image: str = Field(
        default="python:3.11-slim-bookworm", description="the Dockerfile's BASE_IMAGE"
    )
    scan_vulnerabilities: bool = Field(
        default=False,
        description="`mlship image push` fails on fixable vulnerabilities "
        "(trivy's database must be reachable: the cloud CIs turn it on)",
    )
    scan_severity: str = Field(
        default="HIGH,CRITICAL",
        pattern=r"^(LOW|MEDIUM|HIGH|CRITICAL)(,(LOW|MEDIUM|HIGH|CRITICAL))*$",
    )
    kubectl_timeout_seconds: float = Field(
        default=120.0,
        gt=0.0,
        le=3600.0,
        description="`mlship deploy`: a kubectl call that takes longer is cut off (a hung API "
        "server cannot hang a deploy); rollout status gets its --timeout on top",
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus query API for canary checks"
    )
    canary_settle_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description="`mlship deploy --canary`: the least time a step runs before it may be "
        "promoted (an abort comes as soon as the evidence shows it)",
    )
    canary_load_url: str | None = Field(
        default=None,
        description="`mlship deploy --canary`: drive the canary with the load test (the "
        "loadtest users, rows of the test split) through this URL — the Gateway's — while it "
        "is analysed, for when real traffic is too thin to judge",
    )
    # signed models (docs/security.md)
    signing_key: SecretStr | None = Field(
        default=None,
        description="`mlship register` signs the model and its provenance with this "
        "elliptic-curve private key: a PEM file's path, or the PEM itself (a CI secret)",
    )
    trusted_keys: str | None = Field(
        default=None,
        description="the public keys whose signatures every hop accepts (the registry "
        "loader, the image build, the deploy, the server): comma-separated PEM files' "
        "paths, or PEM text",
    )
    signatures: Literal["off", "checked", "required"] = Field(
        default="checked",
        description="checked: a signed model must verify, an unsigned one passes; required: "
        "only a signed model with the provenance of a passed gate (`mlship deploy --env "
        "production` requires it whatever this says); off: nothing is checked",
    )
    # Google Cloud Build (`mlship cloudbuild`)
    gcp_project: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLSHIP_GCP_PROJECT", "GOOGLE_CLOUD_PROJECT", "PROJECT_ID"),
    )
    gcp_region: str = Field(default="global", description="the Cloud Build region")
    cloudbuild_endpoint: str | None = Field(
        default=None, description="another Cloud Build API endpoint, e.g. a private one"
    )
    # serving
    api_token: SecretStr | None = Field(
        default=None, description="when set, prediction routes need `Authorization: Bearer`"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, GET /metrics needs `Authorization: Bearer` with it (a scrape-only "
        "token that cannot predict) or an API token; unset: /metrics is open",
    )
    api_tokens_file: str | None = Field(
        default=None,
        description="a file of `<client name> <token>` lines: several clients, each with its "
        "own token and its own rate limit (with or instead of MLSHIP_API_TOKEN)",
    )
    rate_limit_requests: float | None = Field(
        default=None, gt=0.0, description="requests per second per client; beyond: 429"
    )
    rate_limit_rows: float | None = Field(
        default=None, gt=0.0, description="rows scored per second per client; beyond: 429"
    )
    rate_limit_burst_seconds: float = Field(
        default=2.0, gt=0.0, description="how many seconds of a client's rate it may save up"
    )
    trusted_proxies: str | None = Field(
        default=None,
        description="comma-separated addresses or networks (e.g. 10.0.0.0/8) of the proxies "
        "whose X-Forwarded-For names the client (the Gateway's or Ingress's); unset: the "
        "header is ignored and a client is the address it connects from",
    )
    trust_model_code: bool = Field(
        default=False,
        description="serve registry versions that ship the team's code (checked against "
        "the code the gate judged); off: such versions are refused",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="a larger request body is 413"
    )
    max_request_rows: int = Field(default=2000, ge=1, description="more rows in a request is 413")
    batch_max_rows: int = Field(default=2048, ge=1, description="rows in one merged model call")
    batch_wait_ms: float = Field(
        default=0.0, ge=0.0, le=100.0, description="how long a batch waits for more requests"
    )
    batch_chunk_rows: int = Field(
        default=256, ge=1, description="larger requests are scored in chunks of this many rows"
    )
    reload_seconds: float = Field(
        default=30.0,
        ge=0.5,
        description="how often a server on a registry alias looks for a new version",
    )
    # slow clients: a request head, a body, an idle kept-alive connection each get this long
    head_timeout_seconds: float = Field(
        default=10.0, gt=0.0, le=300.0, description="a request head must arrive within this"
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=600.0,
        description="a request body must arrive within this (else 408)",
    )
    keep_alive_seconds: float = Field(
        default=5.0, gt=0.0, le=300.0, description="an idle kept-alive connection closes after this"
    )
    # after deployment (serving/monitor.py)
    monitor_sample_rate: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="share of requests whose rows feed the drift gauges and the sink",
    )
    monitor_window_rows: int = Field(default=2000, ge=10, description="sampled rows kept")
    monitor_interval_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="how often the drift and live gauges are computed",
    )
    monitor_sink: str | None = Field(
        default=None,
        description="a folder (path or fsspec URL) for JSONL files of the "
        "sampled rows and the feedback, which `mlship monitor` reads",
    )
    monitor_seed: int | None = Field(default=None, description="fixes sampling and the bandit")
    feedback_seconds: float = Field(
        default=3600.0, ge=0.0, description="answers are kept this long for POST /feedback; 0: off"
    )
    feedback_max_answers: int = Field(
        default=200_000, ge=1, description="most answers kept for feedback"
    )
    feedback_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="most bytes of answers kept for feedback; the oldest go first",
    )
    feedback_window: int = Field(
        default=1000, ge=1, description="the latest feedbacks the live gauges and bandit use"
    )
    feedback_db: str | None = Field(
        default=None, description="the SQLite file the workers share; default: a temporary one"
    )
    bandit_floor: float = Field(default=0.05, ge=0.0, le=0.5, description="least share per arm")
    bandit_cap: float = Field(
        default=0.95, ge=0.0, le=1.0, description="most share the challenger can get"
    )
    bandit_tolerance: float | None = Field(
        default=None, gt=0.0, description="regression: an error within it is a bandit success"
    )
    max_connections: int = Field(
        default=1000, ge=1, description="per process; beyond it new requests get 503"
    )

    def named(self, params: Params) -> Settings:
        """These settings with params.yaml's model name, unless MLSHIP_MODEL_NAME set one."""
        return self if self.model_name else self.model_copy(update={"model_name": params.name})

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import ipaddress

        for item in value.split(","):
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as error:
                raise ValueError(f"{item.strip()!r} is not an address or a network") from error
        return value

    @property
    def trusted_key_pems(self) -> list[tuple[str, bytes]]:
        """(where it came from, the PEM) of each trusted key."""
        given = self.trusted_keys or ""
        if "-----BEGIN" in given:
            blocks = given.split("-----END PUBLIC KEY-----")
            return [
                (
                    f"MLSHIP_TRUSTED_KEYS key {i + 1}",
                    (block.strip() + "\n-----END PUBLIC KEY-----\n").encode(),
                )
                for i, block in enumerate(blocks)
                if "-----BEGIN" in block
            ]
        found = []
        for item in (part.strip() for part in given.split(",")):
            if item:
                try:
                    found.append((item, Path(item).read_bytes()))
                except OSError as error:
                    raise InputError(f"MLSHIP_TRUSTED_KEYS: {item}: {error.strerror}") from error
        return found

    def trust_environment(self) -> dict[str, str]:
        """The signature policy for a server this process starts where its paths do not
        reach (a container): the mode, and the trusted keys as PEM text."""
        keys = "".join(pem.decode() for _, pem in self.trusted_key_pems)
        return {"MLSHIP_SIGNATURES": self.signatures} | (
            {"MLSHIP_TRUSTED_KEYS": keys} if keys else {}
        )

    @property
    def signing_key_pem(self) -> tuple[str, bytes] | None:
        """(where it came from, the PEM) of the signing key."""
        if self.signing_key is None:
            return None
        given = self.signing_key.get_secret_value()
        if "-----BEGIN" in given:
            return "MLSHIP_SIGNING_KEY", given.encode()
        try:
            return given, Path(given).read_bytes()
        except OSError as error:
            raise InputError(f"MLSHIP_SIGNING_KEY: {given}: {error.strerror}") from error

    @property
    def proxies(self) -> list[str]:
        """The trusted proxies, one address or network each."""
        return [item.strip() for item in (self.trusted_proxies or "").split(",") if item.strip()]

    def per_worker(self, workers: int) -> Settings:
        """These settings for one of `workers` server processes: each keeps its own rate
        buckets, so each gets its share of the rates."""
        shares = {
            name: value / workers
            for name in ("rate_limit_requests", "rate_limit_rows")
            if (value := getattr(self, name)) is not None
        }
        return self.model_copy(update=shares)

    @property
    def registered_name(self) -> str:
        """The model's name in the registry (params.yaml's `name`, or MLSHIP_MODEL_NAME)."""
        if self.model_name is None:
            raise InputError("no model name: set `name` in params.yaml (or MLSHIP_MODEL_NAME)")
        return self.model_name

    @property
    def image_repository(self) -> str:
        return self.image_name or self.registered_name
