import numpy as np
import pytest

from mlship.config.params import Params
from mlship.pipeline.evaluate import curve_points, evaluate_model, measure_latency, quality_metrics
from mlship.pipeline.train import fit
from tests.conftest import make_params, text_frame


def test_metrics_on_known_predictions(params: Params) -> None:
    # given 4 rows: 3 right, one "other" predicted as "great"
    actual = np.array(["great", "great", "other", "other"])
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    # when scored
    metrics = quality_metrics(actual, probabilities, ["great", "other"], params.data)
    # then the figures are the hand-computed ones
    assert metrics["accuracy"] == 0.75
    assert metrics["balanced_accuracy"] == 0.75
    assert metrics["per_class"]["great"] == {
        "precision": pytest.approx(2 / 3, abs=1e-6),
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert metrics["per_class"]["other"]["recall"] == 0.5
    assert metrics["confusion_matrix"]["matrix"] == [[2, 0], [1, 1]]
    assert metrics["roc_auc"] == 1.0  # every "great" scores above every "other"
    expected_loss = -np.mean(np.log([0.9, 0.8, 0.4, 0.9]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_multiclass_auc_is_one_vs_rest(params: Params) -> None:
    actual = np.array(["a", "b", "c"])
    probabilities = np.eye(3)
    metrics = quality_metrics(actual, probabilities, ["a", "b", "c"], params.data)
    assert metrics["roc_auc"] == 1.0
    assert metrics["macro_f1"] == 1.0


def test_curves_score_the_positive_class(params: Params) -> None:
    actual = np.array(["great", "other", "great", "other"])
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    roc, pr = curve_points(actual, probabilities, ["great", "other"], params.data)
    assert {point["class"] for point in roc + pr} == {"great"}
    assert roc[-1]["fpr"] == 1.0 and roc[-1]["tpr"] == 1.0


def test_unknown_positive_label_is_named() -> None:
    params = make_params(data={"positive_label": "superb"})
    with pytest.raises(ValueError, match="'superb' is not a class"):
        quality_metrics(np.array(["great", "other"]), np.eye(2), ["great", "other"], params.data)


def test_evaluate_writes_one_prediction_per_test_row(params: Params) -> None:
    pipeline = fit(params, text_frame(15))
    test = text_frame(4).assign(review=lambda f: f.review + " indeed")
    result = evaluate_model(pipeline, test, params.data)
    assert len(result.predictions) == len(test)
    assert list(result.predictions.columns) == [
        "row",
        "actual",
        "predicted",
        "proba_great",
        "proba_other",
    ]
    assert result.metrics["rows"] == len(test)
    latency = measure_latency(pipeline, test, params.data)
    assert latency["batch_rows"] == len(test)
    assert latency["single_row_ms_median"] > 0


def test_regression_metrics_on_known_errors() -> None:
    from mlship.pipeline.evaluate import regression_metrics

    actual = np.array([10.0, 20.0, 0.0, 40.0])
    predicted = np.array([12.0, 18.0, 1.0, 40.0])
    found = regression_metrics(actual, predicted)
    assert found["rmse"] == pytest.approx(np.sqrt((4 + 4 + 1 + 0) / 4))
    assert found["mae"] == pytest.approx(5 / 4)
    # MAPE leaves out the zero target instead of dividing by it
    assert found["mape_rows"] == 3
    assert found["mape"] == pytest.approx((0.2 + 0.1 + 0.0) / 3)
    assert found["r2"] == pytest.approx(1 - 9 / np.sum((actual - actual.mean()) ** 2))
    assert found["max_error"] == 2.0
