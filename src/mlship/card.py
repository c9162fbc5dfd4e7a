"""ModelCard: what a model directory and a registry version carry besides the model itself.

Written by `mlship train` beside the model file, logged with the MLflow run, baked into the
image; read by evaluate, the gate, register, the image build, the server and the reports.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mlship.config.params import Task, UnknownCategory
from mlship.errors import InputError
from mlship.files import read_json, write_json

MODEL_FILE = "model.skops"
CARD_FILE = "model_card.json"
PROFILE_FILE = "profile.json"  # the training data's profile, drift's reference (drift.py)
METRICS_FILE = "metrics.json"  # the evaluation, baked in beside the model by the image build


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Frozen):
    """What a request may send for one categorical column: the categories the training
    data had (as text), the JSON type they came as, and what to do with another."""

    values: tuple[str, ...]
    coded_as: Literal["text", "integer", "boolean"] = "text"
    unknown: UnknownCategory = "flag"

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset(self.values)


class Features(_Frozen):
    """The declared feature columns by kind: text, categorical, numeric; which of them a
    request may leave out (the model then sees a missing value); and, from the data contract
    and the training data, which may hold a missing value and what each categorical column
    takes. A card from before the contract was kept (nullable None) checks types only."""

    text: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    nullable: tuple[str, ...] | None = None  # None: every categorical and numeric column
    categories: dict[str, Category] = {}

    def takes_missing(self, column: str) -> bool:
        if column in self.text:
            return False
        return self.nullable is None or column in self.nullable or column in self.optional

    @property
    def columns(self) -> tuple[str, ...]:
        return self.text + self.categorical + self.numeric


class GitInfo(_Frozen):
    sha: str = "unknown"
    dirty: bool = False


class DataInfo(_Frozen):
    train_rows: int
    train_digest: str


class MlflowInfo(_Frozen):
    run_id: str
    experiment_id: str | None = None
    model_uri: str | None = None
    tracking_uri: str | None = None


class RegistryInfo(_Frozen):
    name: str
    version: str
    alias: str | None = None


class ModelCard(_Frozen):
    name: str | None = None  # params.yaml's `name` (or MLSHIP_MODEL_NAME) at training
    task: Task = "classification"
    features: Features
    dtypes: dict[str, str] = {}
    target: str
    classes: tuple[str, ...] = ()  # classification only
    probabilities: bool = True  # classification: the model answers class probabilities
    estimator: str = ""  # import path of the final estimator, for people
    trusted_types: tuple[str, ...] = ()  # beyond the built-in trust list, from params.yaml
    code: tuple[str, ...] = ()  # the team's packages the model needs, copied under code/
    requirements: dict[str, str] = {}  # distribution -> version the model's types come from
    params: dict[str, Any] = {}  # params.yaml as trained
    # one real row of the training data (as MLflow's input example): the model page's and
    # the OpenAPI document's example values
    example: dict[str, Any] = {}
    data: DataInfo | None = None
    git: GitInfo = GitInfo()
    libraries: dict[str, str] = {}
    trained_at: str | None = None
    fit_seconds: float | None = None
    mlflow: MlflowInfo | None = None
    registry: RegistryInfo | None = None
    metrics: dict[str, Any] = {}  # set where a served model learns its evaluation
    # the trivial model every candidate must beat: the training data's most frequent class
    # (classification) or its mean (regression); None on cards from before it was kept
    baseline: str | float | None = None

    @property
    def run_id(self) -> str | None:
        return None if self.mlflow is None else self.mlflow.run_id

    @property
    def served_name(self) -> str:
        """The name a server answers under: the registered model's, else the trained one's."""
        return self.registry.name if self.registry else (self.name or "model")

    @property
    def version(self) -> str:
        """The registry version, or "local" for a model that was never registered."""
        return "local" if self.registry is None else self.registry.version

    @property
    def model_kind(self) -> str:
        model = self.params.get("train", {}).get("model", {})
        return str(model.get("kind", "unknown")) if isinstance(model, dict) else "unknown"

    def require_run_id(self, where: Path | str) -> str:
        if self.run_id is None:
            raise InputError(f"{where}: the model card has no MLflow run id")
        return self.run_id

    def updated(self, **changes: Any) -> ModelCard:
        """A copy with `changes`, validated like a card read from a file."""
        return ModelCard.model_validate({**self.model_dump(), **changes})

    @classmethod
    def parse(cls, raw: Any, source: str) -> ModelCard:
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, item['loc'])) or '(top level)'}: {item['msg']}"
                for item in error.errors()
            )
            raise InputError(f"{source}: not a valid model card: {problems}") from error

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        path = model_dir / CARD_FILE
        return cls.parse(read_json(path), str(path))

    def save(self, model_dir: Path) -> None:
        write_json(model_dir / CARD_FILE, self.as_json())

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
