import sys
from pathlib import Path

import pytest
import yaml

from mlship.config.params import Params, load_params, parse_params
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.pipeline.importing import check_imports
from tests.conftest import REPO, raw_params


def _error_for(raw: object) -> str:
    """What reading params.yaml says: parsing, then what it names by import path."""
    with pytest.raises(InputError) as caught:
        check_imports(parse_params(raw, Path("params.yaml")), Path("params.yaml"))
    return str(caught.value)


def test_every_example_s_params_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    # given each example as a project (its factory imports from its own folder)
    for path in sorted((REPO / "examples").glob("*/params.yaml")):
        monkeypatch.chdir(path.parent)
        monkeypatch.setattr(sys, "path", list(sys.path))
        # when parsed / then it is valid
        params = load_params(path)
        check_imports(params, path)  # its factory or class imports and fits the task
        assert isinstance(params, Params), path
        for name in [n for n in sys.modules if n == "model" or n.startswith("model.")]:
            monkeypatch.delitem(sys.modules, name)  # the next example has a `model` of its own


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (raw_params(data={"txt_columns": ["review"]}), "data.txt_columns: unknown key"),
        (raw_params(train={"model": {"kind": "logistic_regression", "c": 1}}), "c: unknown key"),
        (raw_params(data={"test_size": "a fifth"}), "data.test_size"),
        (raw_params(data={"test_size": 1.5}), "data.test_size"),
        (raw_params(train={"model": {"kind": "random_forest"}}), "train.model"),
        (raw_params(validate={"max_null_rate": -0.1}), "validate.max_null_rate"),
        (raw_params(train={"text": {"ngram_range": [2, 1]}}), "train.text.ngram_range"),
        (raw_params(data={"categorical_columns": ["review"]}), "declared more than once"),
        (raw_params(data={"text_columns": []}), "at least one feature"),
        (
            raw_params(train={"model": {"kind": "gradient_boosting"}}),
            "takes categorical and numeric columns only",
        ),
        ({"data": {}}, "data.source: Field required"),
        # the membership-inference check cannot be switched off or made toothless
        (raw_params(gate={"attacks": {"membership": None}}), "gate.attacks.membership"),
        (
            raw_params(gate={"attacks": {"membership": {"max_advantage": 1.0}}}),
            "gate.attacks.membership.max_advantage: Input should be less than or equal to 0.5",
        ),
        (raw_params(gate={"attacks": {"membership": {"rows": 20}}}), "membership.rows"),
        # the baseline and the unknown-category policy name their keys
        (raw_params(gate={"baseline": {"metric": "rmse"}}), "gate.baseline.metric: 'rmse'"),
        (
            raw_params(validate={"unknown_categories": {"columns": {"review": "refuse"}}}),
            "'review' is not one of data.categorical_columns",
        ),
        (
            raw_params(validate={"unknown_categories": {"default": "ignore"}}),
            "validate.unknown_categories.default",
        ),
        (["not", "a", "mapping"], "expected a mapping"),
        (None, "expected a mapping"),
    ],
)
def test_bad_params_name_the_key(raw: object, expected: str) -> None:
    # given a params mapping with one mistake / when parsed / then the error names it
    message = _error_for(raw)
    assert "params.yaml" in message
    assert expected in message


def test_params_are_frozen(params: Params) -> None:
    with pytest.raises(ValueError, match="frozen"):
        params.data.seed = 1  # type: ignore[misc]


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_params(broken)


def test_load_params_round_trips_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params()))
    assert load_params(path).data.text_columns == ("review",)


def test_settings_read_mlship_and_mlflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # given only MLflow's standard variable / then it is the tracking URI
    monkeypatch.delenv("MLSHIP_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings().tracking_uri == "http://127.0.0.1:5000"
    # given both / then mlship's own variable wins
    monkeypatch.setenv("MLSHIP_TRACKING_URI", "sqlite:///elsewhere.db")
    assert Settings().tracking_uri == "sqlite:///elsewhere.db"


def test_settings_default_to_the_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSHIP_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert Settings().tracking_uri == "sqlite:///mlruns/mlflow.db"


def test_settings_treat_empty_variables_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a CI that exports an unset repository variable as an empty string
    monkeypatch.delenv("MLSHIP_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("MLSHIP_REGISTRY", "")
    # then the defaults apply, not an empty tracking URI or registry
    settings = Settings()
    assert settings.tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert settings.registry == "127.0.0.1:5001"


REGRESSION = {
    "data": {"task": "regression", "positive_label": None},
    "validate": {"labels": None},
    "train": {"model": {"kind": "estimator", "class": "sklearn.linear_model.Ridge"}},
    "gate": {"min_accuracy": None, "min_macro_f1": None, "max_rmse": 1.0},
}
FOREST = "sklearn.ensemble.RandomForestClassifier"


def _estimator(cls: str, **params: object) -> dict[str, object]:
    return {"model": {"kind": "estimator", "class": cls, "params": params}}


def _regression(**sections: dict[str, object]) -> dict[str, object]:
    merged = {
        name: {**REGRESSION.get(name, {}), **sections.get(name, {})}
        for name in {*REGRESSION, *sections}
    }
    return raw_params(**merged)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            raw_params(train=_estimator("sklearn.ensemble.RandomForestClasifier")),
            "train.model: class 'sklearn.ensemble.RandomForestClasifier' does not import",
        ),
        (raw_params(train=_estimator("nosuchpackage.Model")), "does not import"),
        (raw_params(train=_estimator("json.JSONDecoder")), "not a scikit-learn-compatible"),
        (
            raw_params(train=_estimator(FOREST, n_estimatorz=10)),
            "params.n_estimatorz: not a parameter of RandomForestClassifier",
        ),
        (
            raw_params(train=_estimator("sklearn.ensemble.RandomForestRegressor")),
            "is not a classifier, but data.task is classification",
        ),
        (_regression(train=_estimator(FOREST)), "is not a regressor, but data.task is regression"),
        (
            _regression(train={"model": {"kind": "logistic_regression"}}),
            "'logistic_regression' is a classifier, but data.task is regression",
        ),
        (
            raw_params(train={"model": {"kind": "custom", "factory": "model.nowhere:build"}}),
            "'model.nowhere:build' does not import",
        ),
        (
            raw_params(train={"model": {"kind": "custom", "factory": "model.churn"}}),
            "expected module:function",
        ),
        (_regression(gate={"max_rmse": None}), "gate.max_rmse or gate.max_mae is required"),
        (raw_params(gate={"min_macro_f1": None}), "gate.min_macro_f1 is required"),
        (raw_params(gate={"max_rmse": 3.0}), "gate.max_rmse does not apply to classification"),
        (_regression(gate={"min_class_recall": 0.5}), "does not apply to regression"),
        (
            _regression(gate={"champion": {"metrics": ["accuracy"]}}),
            "'accuracy' does not apply to regression",
        ),
        (_regression(validate={"labels": ["a"]}), "validate.labels lists classes"),
        (_regression(data={"positive_label": "great"}), "positive_label is for classification"),
        ({k: v for k, v in raw_params().items() if k != "name"}, "name: Field required"),
        (raw_params(name="My Model"), "name: String should match pattern"),
        (
            raw_params(data={"optional_columns": ["review"]}),
            "optional_columns: 'review' is not one of the categorical or numeric columns",
        ),
    ],
)
def test_bring_your_own_model_errors_name_the_key(raw: object, expected: str) -> None:
    assert expected in _error_for(raw)


def test_estimators_and_factories_by_import_path_parse() -> None:
    forest = parse_params(raw_params(train=_estimator(FOREST, n_estimators=5)), Path("p.yaml"))
    assert forest.train.model.kind == "estimator"
    regression = parse_params(
        _regression(train=_estimator("sklearn.linear_model.Ridge", alpha=2.0)), Path("p.yaml")
    )
    assert regression.gate.champion.compared("regression") == ("rmse", "mae")
    # a constructor taking **kwargs passes keys it does not declare on itself
    lightgbm = _estimator("lightgbm.LGBMClassifier", n_estimators=5, verbose=-1)
    assert parse_params(raw_params(train=lightgbm), Path("p.yaml")).train.model.kind == "estimator"
