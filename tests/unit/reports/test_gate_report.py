from pathlib import Path

from junitparser import Failure, JUnitXml

from mlship.gate.criteria import Criterion
from mlship.reports.gate_report import gate_json, gate_junit, gate_markdown, params_diff

CRITERIA = [
    Criterion("threshold", "accuracy >= 0.8", True, "accuracy = 0.8500 >= 0.8", 0.85, 0.8),
    Criterion(
        "champion",
        "macro_f1 non-inferior (margin 0.01) to champion",
        False,
        "macro_f1: candidate 0.7000 vs champion v3 0.7500, difference -0.0500",
        0.70,
        -0.01,
        0.75,
        (-0.08, -0.02),
        None,
    ),
]
CONTEXT = {"candidate_run_id": "abc", "git_sha": "0123456789abcdef", "champion_version": "3"}
METRICS = {"confusion_matrix": {"labels": ["a", "b"], "matrix": [[5, 1], [2, 7]]}}


def test_junit_has_a_case_per_criterion_and_failures_carry_numbers(tmp_path: Path) -> None:
    path = tmp_path / "gate.xml"
    gate_junit(CRITERIA, path)
    xml = JUnitXml.fromfile(str(path))
    suite = next(iter(xml))
    assert (suite.name, suite.tests, suite.failures, suite.errors) == ("mlship.gate", 2, 1, 0)
    cases = {case.name: case for case in suite}
    assert cases["accuracy >= 0.8"].is_passed
    failure = cases["macro_f1 non-inferior (margin 0.01) to champion"].result[0]
    assert isinstance(failure, Failure)
    assert "0.7000" in failure.message and "0.7500" in failure.message
    assert path.read_text().startswith("<?xml")


def test_markdown_is_a_pull_request_comment() -> None:
    text = gate_markdown(CRITERIA, METRICS, [("train.model.C", 1.0, 8.0)], CONTEXT)
    assert text.startswith("<!-- mlship-gate -->")  # lets CI update one comment in place
    assert "❌ FAILED (1 criterion)" in text
    assert "[-0.0800, -0.0200]" in text
    assert "| **b** | 2 | 7 |" in text
    # the params as the champion was trained, against this candidate's
    assert "Params changed from the champion v3's" in text
    assert "| key | champion v3 | this candidate |" in text
    assert "| `train.model.C` | `1.0` | `8.0` |" in text
    assert "Champion: version 3." in text


def test_markdown_shows_the_metrics_beside_the_baseline_and_the_champion() -> None:
    metrics = {
        **METRICS,
        "accuracy": 0.915,
        "per_class": {"no": {"recall": 0.13}, "yes": {"recall": 0.99}},
        "baseline": {"answer": "yes", "accuracy": 0.922},
    }
    champion = {"accuracy": 0.91, "per_class": {"no": {"recall": 0.2}, "yes": {"recall": 0.97}}}
    context = {**CONTEXT, "champion_metrics": champion}
    text = gate_markdown(CRITERIA, metrics, [], context)
    assert (
        "| metric (same test rows) | this candidate | baseline (always 'yes') | champion v3 |"
        in (text)
    )
    assert "| accuracy | 0.9150 | 0.9220 | 0.9100 |" in text
    assert "| recall (no) | 0.1300 | 0.0000 | 0.2000 |" in text
    assert "Params: the same as the champion v3's." in text


def test_markdown_without_champion() -> None:
    text = gate_markdown(CRITERIA[:1], METRICS, None, {**CONTEXT, "champion_version": None})
    assert "✅ PASSED" in text
    assert "No champion of this name yet" in text
    assert "Params: no champion to compare with." in text


def test_a_pass_worse_than_the_champion_and_a_dirty_tree_are_flagged() -> None:
    within_margin = Criterion(
        "champion",
        "accuracy non-inferior (margin 0.02) to champion",
        True,
        "accuracy: candidate 0.8400 vs champion v3 0.8500",
        0.84,
        -0.02,
        0.85,
        (-0.018, -0.002),
        None,
        difference=-0.01,
    )
    context = {**CONTEXT, "git_dirty": True, "model_name": "reviews"}
    text = gate_markdown([CRITERIA[0], within_margin], METRICS, None, context)
    assert "| ⚠️ | accuracy non-inferior" in text and "| ✅ | accuracy >= 0.8" in text
    assert "passed within the margin, but worse than the champion" in text
    assert "`reviews` (its estimator) from MLflow run `abc`, git `0123456789ab` ⚠️ with" in text


def test_json_lists_the_failures() -> None:
    report = gate_json(CRITERIA, CONTEXT)
    assert report["passed"] is False
    assert report["failed"] == ["macro_f1 non-inferior (margin 0.01) to champion"]
    assert report["candidate_run_id"] == "abc"


def test_params_diff_shows_changed_added_and_removed_keys() -> None:
    base = {"train": {"model": {"C": 1.0, "kind": "lr"}}, "old": 1}
    current = {"train": {"model": {"C": 8.0, "kind": "lr"}}, "new": 2}
    assert params_diff(base, current) == [
        ("new", "—", 2),
        ("old", 1, "—"),
        ("train.model.C", 1.0, 8.0),
    ]
